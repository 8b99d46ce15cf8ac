#!/usr/bin/env bash
# Connections at the cap: with max_connections 64, 64 and then 128 concurrent clients enroll
# in a loop for SECONDS (default 20) each, a new TLS connection per request. Every request
# must succeed: clients beyond the cap wait in the listen backlog, none is reset. Prints
# requests, failures by kind, req/s and p50/p99, and the server's CPU and bytes written
# (/proc/PID/io write_bytes) per enrollment; exits non-zero on any failure.
#
# usage: bench/cap.sh [SECONDS [CLIENTS...]]      (default 20 64 128)
set -eu
seconds=${1:-20}
shift || true
[ "$#" -gt 0 ] || set -- 64 128
# shellcheck source=bench/serve.sh
. "$(dirname "$0")/serve.sh"

echo "cap: $bin; max_connections 64, request_timeout 10s; $(nproc) CPUs"
fail=0
for clients in "$@"; do
	start_server 64 10
	token=$("$bin" --config "$dir/gatecert.conf" token add cap --name cap.sensors.local --uses 1000000 --ttl 1d 2>/dev/null)
	[ -n "$token" ] || { echo "token add printed no token" >&2; exit 2; }
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/leaf.key" \
		-subj "/CN=cap.sensors.local" -addext "subjectAltName=DNS:cap.sensors.local" \
		-outform DER -out "$dir/csr.der" 2>/dev/null
	base64 -w0 "$dir/csr.der" >"$dir/csr.b64"
	w0=$(awk '/^write_bytes/ {print $2}' "/proc/$pid/io")
	c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	out=$(python3 "$here/bench/conns.py" cap "$port" "$root" "$seconds" "$clients" cap "$token" "$dir/csr.b64") || fail=1
	echo "$out"
	w1=$(awk '/^write_bytes/ {print $2}' "/proc/$pid/io")
	c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	ok=$(echo "$out" | grep -Eo '[0-9]+ ok \(' | grep -Eo '^[0-9]+' | head -n1)
	# The server's own CPU and the bytes it caused to be written to storage, per enrollment
	# (the group commit shares each sync among the enrollments that arrived together).
	awk -v w=$((w1 - w0)) -v c=$((c1 - c0)) -v n="${ok:-0}" -v t="$(getconf CLK_TCK)" 'BEGIN {
		if (n > 0) printf "  server: CPU %.2f ms/enrollment, written %.0f B/enrollment\n", c * 1000 / t / n, w / n }'
	stop_server
done
exit "$fail"
