#!/bin/sh
# EST simpleenroll throughput and p50/p99 latency, a new TLS connection per request, with the
# server pinned to one core (taskset -c 0) and the client on another; then the raw P-256
# signing speed of this machine for comparison (each enrollment costs one ECDSA signature for
# the certificate plus the TLS handshake's).
#
# usage: bench/est-bench.sh [COUNT]     (default 200, at most 5000; the client stops after 60 s)
# Runs the debug build unless GATECERT_BIN / EST_BENCH_BIN point elsewhere.
set -eu

count=${1:-200}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
if [ -z "${GATECERT_BIN:-}" ] || [ -z "${EST_BENCH_BIN:-}" ]; then
	cargo build -q --bin gatecert --example est_bench
fi
bin=${GATECERT_BIN:-$here/target/debug/gatecert}
bench=${EST_BENCH_BIN:-$here/target/debug/examples/est_bench}

dir=$(mktemp -d "${TMPDIR:-/tmp}/gatecert-bench.XXXXXX")
pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

: > "$dir/gatecert.conf"   # an empty config: the built-in defaults
taskset -c 0 "$bin" --config "$dir/gatecert.conf" run --state-dir "$dir/state" --listen "127.0.0.1:$port" \
	2>"$dir/server.log" &
pid=$!
i=0
until curl -sk -o /dev/null --max-time 1 "https://127.0.0.1:$port/.well-known/est/cacerts"; do
	i=$((i + 1))
	[ "$i" -lt 200 ] || { echo "server did not start:" >&2; cat "$dir/server.log" >&2; exit 2; }
	sleep 0.05
done

echo "server: $bin (pinned to CPU 0); $(nproc) CPUs"
# The server's I/O over the run (/proc/PID/io): rchar/wchar count every read(2)/write(2) byte,
# read_bytes/write_bytes what reached the block layer.
io() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/io"; }
r0=$(io rchar); w0=$(io wchar); wb0=$(io write_bytes)
timeout 90 taskset -c 1 "$bench" "$dir/state" "$port" "$count"
r1=$(io rchar); w1=$(io wchar); wb1=$(io write_bytes)
echo "server I/O per request ($count requests): read $(((r1 - r0) / count)) B (rchar)," \
	"written $(((w1 - w0) / count)) B (wchar), $(((wb1 - wb0) / count)) B to the block layer (write_bytes)"
echo
echo "for comparison, P-256 signing on this machine (one core):"
taskset -c 0 openssl speed -seconds 3 ecdsap256 2>/dev/null | tail -2
