#!/bin/sh
# `gatecert leaves revoke` on an inventory of N devices: wall time per revocation (inventory
# read + lock + token revoke + audit + CRL signed and written), and the CRL's size as revoked
# entries accumulate. The inventory is synthetic (written directly, one unexpired local
# certificate per device, in the leaves.json format of earlier versions, which the first command migrates); the CA is a real `ca init`.
#
# usage: bench/revoke-bench.sh [DEVICES] [REVOCATIONS]   (default 1000 and 50; at most 100000
# and 500). Runs the debug build unless GATECERT_BIN points elsewhere.
set -eu

devices=${1:-1000}
revocations=${2:-50}
[ "$devices" -le 100000 ] || { echo "at most 100000 devices" >&2; exit 2; }
if [ "$revocations" -gt 500 ] || [ "$revocations" -gt "$devices" ]; then
	echo "at most 500 revocations, and no more than devices" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
[ -n "${GATECERT_BIN:-}" ] || cargo build -q --bin gatecert
bin=${GATECERT_BIN:-$here/target/debug/gatecert}

dir=$(mktemp -d "${TMPDIR:-/tmp}/gatecert-revoke-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
state=$dir/state
printf "config gatecert 'main'\n\toption state_dir '%s'\n\toption log 'stderr'\n" "$state" >"$dir/conf"
"$bin" --config "$dir/conf" ca init >/dev/null
python3 - "$state/leaves.json" "$devices" <<'EOF'
import json, sys, time
path, n = sys.argv[1], int(sys.argv[2])
now = int(time.time())
leaves = [{"device": f"dev-{i:06d}", "names": [f"dev-{i:06d}.sensors.local"],
           "serial": f"{0x40000000000000000000000000000000 + i:032X}",
           "not_after": now + 86400, "source": "local", "issued_at": now}
          for i in range(n)]
json.dump({"version": 2, "leaves": leaves}, open(path, "w"), indent=2)
EOF
echo "binary: $bin; $devices devices, $revocations revocations; $(nproc) CPUs"
start=$(date +%s%N)
i=0
while [ "$i" -lt "$revocations" ]; do
	"$bin" --config "$dir/conf" leaves revoke "$(printf 'dev-%06d' "$i")" >/dev/null
	i=$((i + 1))
done
end=$(date +%s%N)
ms=$(( (end - start) / 1000000 ))
crl=$(stat -c %s "$state/crl.der")
entries=$(openssl crl -inform DER -in "$state/crl.der" -noout -text | grep -c 'Serial Number:')
echo "leaves revoke: $revocations in ${ms} ms, $(( ms / revocations )) ms each"
echo "CRL: $crl bytes with $entries entries ($(( crl / entries )) bytes per entry, all told)"
echo "leaves.jnl: $(stat -c %s "$state/leaves.jnl") bytes (the leaves.json above, migrated by the first revoke)"
