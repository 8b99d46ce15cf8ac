#!/bin/sh
# Leaf enrollment p50/p99 latency with the broker on and the upstream ACME CA blackholed (a
# listener that accepts and never answers), after its first timeout has marked it down. Goal:
# p99 <= 50 ms (every request is answered at once with an interim certificate). The server is
# pinned to one core (taskset -c 0), the client to another.
#
# usage: bench/broker-bench.sh [COUNT]   (default 200, at most 2000; the client stops after 60 s)
# Runs the debug build unless GATECERT_BIN / BROKER_BENCH_BIN point elsewhere.
set -eu

count=${1:-200}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
if [ -z "${GATECERT_BIN:-}" ] || [ -z "${BROKER_BENCH_BIN:-}" ]; then
	cargo build -q --bin gatecert --example broker_bench
fi
bin=${GATECERT_BIN:-$here/target/debug/gatecert}
bench=${BROKER_BENCH_BIN:-$here/target/debug/examples/broker_bench}

dir=$(mktemp -d "${TMPDIR:-/tmp}/gatecert-broker-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM

echo "server: $bin (pinned to CPU 0); $(nproc) CPUs"
# broker_bench starts (and kills) the server itself; wrap it so the server lands on CPU 0.
cat >"$dir/server.sh" <<EOS
#!/bin/sh
exec taskset -c 0 "$bin" "\$@"
EOS
chmod +x "$dir/server.sh"
if ! timeout 120 taskset -c 1 "$bench" "$dir/server.sh" "$dir" "$count"; then
	echo "bench failed; server log:" >&2
	cat "$dir/server.log" >&2 || true
	exit 1
fi
