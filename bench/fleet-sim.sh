#!/bin/sh
# fleet-sim.sh - the fleet simulation table of doc/fleet-sim.md: 10,000 and 1,000,000 gateways
# (one leaf each) × 90-day and 6-day certificates × without / with a 3-day upstream outage.
# Builds examples/fleet_sim.rs (release) and runs each case, bounded by the example's own
# horizon and event cap. usage: bench/fleet-sim.sh [OUT_DIR] [GATEWAYS...]
set -eu
out=${1:-target/fleet-sim}
shift 2>/dev/null || true
sizes=${*:-10000 1000000}
cargo build --release --example fleet_sim >&2
bin=target/release/examples/fleet_sim
for n in $sizes; do
  for days in 90 6; do
    for outage in 0 3; do
      dir=$out/n$n-d$days-o$outage
      echo "== $n gateways, $days-day certificates, outage $outage d"
      /usr/bin/time -f "(%e s wall, %M KiB max RSS)" \
        "$bin" --gateways "$n" --leaves 1 --lifetime-days "$days" --outage-days "$outage" --out "$dir"
    done
  done
done
# The example writes stored (uncompressed) deflate to stay tiny; recompress for keeping.
for png in "$out"/*/orders-per-hour.png; do
  python3 - "$png" <<'PY'
import struct, sys, zlib
path = sys.argv[1]
data = open(path, 'rb').read()
pos, chunks, idat = 8, [], b''
while pos < len(data):
    n, = struct.unpack('>I', data[pos:pos + 4])
    kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
    pos += 12 + n
    if kind == b'IDAT':
        idat += body
    else:
        chunks.append((kind, body))
def chunk(kind, body):
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
out = data[:8] + chunk(*chunks[0]) + chunk(b'IDAT', zlib.compress(zlib.decompress(idat), 9))
out += b''.join(chunk(k, b) for k, b in chunks[1:])
open(path, 'wb').write(out)
PY
done
echo "PNGs recompressed in $out"
