#!/usr/bin/env bash
# EST enrollment throughput and connections at the cap: with max_connections 64, CLIENTS
# concurrent clients (default 64, then 128) enroll in a loop for SECONDS (default 20) each, a
# new TCP connection and a full TLS handshake per request. The server is pinned to CPU 0 and
# the load generator (examples/est_load.rs, release build) to CPU 1, so the figures are one
# core's. Every request must succeed: clients beyond the cap wait in the listen backlog, none
# is reset. Prints requests, failures by kind, req/s and p50/p99, and the server's CPU and
# bytes written (/proc/PID/io write_bytes) per enrollment, and the rate that CPU cost allows
# one core (what the server would reach if it had CPU 0 to itself and never waited); then
# `openssl speed ecdsap256` on CPU 0 in the same run, for comparison (on a shared machine both
# figures move together). Exits non-zero on any failure.
#
# With CAP_FLEET=1, a fleet enrolls instead of one device again and again: examples/
# scale_populate.rs adds 3,000 one-use tokens per second of the run (at most 300,000), each for
# its own device, and each request enrolls one of them for the first time (its row is new; with
# one device and a token of many uses, the row keeps 16 earlier certificates and every
# enrollment supersedes one).
#
# usage: bench/cap.sh [SECONDS [CLIENTS...]]      (default 20 64 128)
# CAP_LOAD=python uses bench/conns.py (slower: one core of it manages a few hundred
# handshakes a second) instead of est_load.
set -eu
seconds=${1:-20}
shift || true
[ "$#" -gt 0 ] || set -- 64 128
server_cpu=0
# shellcheck source=bench/serve.sh
. "$(dirname "$0")/serve.sh"
load=${EST_LOAD_BIN:-$here/target/release/examples/est_load}
if [ "${CAP_LOAD:-rust}" != python ] && [ ! -x "$load" ]; then
	(cd "$here" && nice cargo build -q --release --example est_load)
fi
fleet=${CAP_FLEET:-0}
pop=${POPULATE_BIN:-$here/target/release/examples/scale_populate}
if [ "$fleet" = 1 ]; then
	[ "${CAP_LOAD:-rust}" != python ] || { echo "CAP_FLEET=1 needs est_load" >&2; exit 2; }
	[ -x "$pop" ] || (cd "$here" && nice cargo build -q --release --example scale_populate)
fi

echo "cap: $bin; max_connections 64, request_timeout 10s; $(nproc) CPUs; server on CPU 0, load on CPU 1"
fail=0
for clients in "$@"; do
	start_server 64 10
	if [ "$fleet" = 1 ]; then
		devices=$(awk -v s="$seconds" 'BEGIN { n = int(3000 * s); print (n > 300000 ? 300000 : n) }')
		"$pop" "$dir/state" "$devices" --tokens-only "$dir/fleet.tokens" >/dev/null
		echo "  fleet: $devices one-use tokens, one per device"
	else
		token=$("$bin" --config "$dir/gatecert.conf" token add cap --name cap.sensors.local --uses 1000000 --ttl 1d 2>/dev/null)
		[ -n "$token" ] || { echo "token add printed no token" >&2; exit 2; }
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/leaf.key" \
			-subj "/CN=cap.sensors.local" -addext "subjectAltName=DNS:cap.sensors.local" \
			-outform DER -out "$dir/csr.der" 2>/dev/null
		base64 -w0 "$dir/csr.der" >"$dir/csr.b64"
	fi
	w0=$(awk '/^write_bytes/ {print $2}' "/proc/$pid/io")
	c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	# ns on a CPU, ns runnable but waiting for one (other jobs on CPU 0), per schedstat(5).
	read -r r0 q0 _ <"/proc/$pid/schedstat"
	t0=$(date +%s%N)
	if [ "${CAP_LOAD:-rust}" = python ]; then
		out=$(taskset -c 1 python3 "$here/bench/conns.py" cap "$port" "$root" "$seconds" "$clients" cap "$token" "$dir/csr.b64") || fail=1
	else
		if [ "$fleet" = 1 ]; then
			out=$(taskset -c 1 "$load" "$port" "$root" "$seconds" "$clients" "@$dir/fleet.tokens") || fail=1
		else
			out=$(taskset -c 1 "$load" "$port" "$root" "$seconds" "$clients" cap "$token" "$dir/csr.b64") || fail=1
		fi
	fi
	echo "$out"
	w1=$(awk '/^write_bytes/ {print $2}' "/proc/$pid/io")
	c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	read -r r1 q1 _ <"/proc/$pid/schedstat"
	t1=$(date +%s%N)
	ok=$(echo "$out" | grep -Eo '[0-9]+ ok \(' | grep -Eo '^[0-9]+' | head -n1)
	# The server's own CPU and the bytes it caused to be written to storage, per enrollment
	# (the group commit shares each sync among the enrollments that arrived together).
	awk -v w=$((w1 - w0)) -v c=$((c1 - c0)) -v n="${ok:-0}" -v t="$(getconf CLK_TCK)" -v s="$seconds" 'BEGIN {
		if (n > 0 && c > 0) printf "  server: CPU %.2f ms/enrollment (%.0f%% of CPU 0; at 100%% of one core: %.0f/s), written %.0f B/enrollment\n",
			c * 1000 / t / n, c * 100 / t / s, n * t / c, w / n }'
	# Where the loop's thread's wall time went: on CPU 0, waiting for it (runnable: other jobs,
	# or the service's own commit thread, had it), or asleep (poll with nothing to do, flock;
	# fsync only for a group committed on the loop's thread).
	awk -v r=$((r1 - r0)) -v q=$((q1 - q0)) -v wall=$((t1 - t0)) 'BEGIN {
		if (wall > 0) printf "  loop thread wall time: %.0f%% on CPU, %.0f%% runnable waiting for CPU 0, %.0f%% asleep (idle poll)\n",
			100 * r / wall, 100 * q / wall, 100 * (wall - r - q) / wall }'
	stop_server
done
echo "for comparison, P-256 on CPU 0 in this run:"
taskset -c 0 openssl speed -seconds 3 ecdsap256 2>/dev/null | tail -2
exit "$fail"
