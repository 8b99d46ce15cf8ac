#!/usr/bin/env bash
# Slowloris against the EST listener (issue: trickling must not lock real clients out).
# For each attacker shape, ATTACKERS connections (default 66, over the default cap of 64) each
# send one byte every 200 ms and reconnect at once when dropped, while CLIENTS (default 20)
# legitimate clients ask for cacerts in a loop for SECONDS (default 20), a new TLS connection
# each. Prints the legitimate success rate (goal >= 99%) and p50/p99 per shape; exits non-zero
# if a shape misses the goal. 127.0.0.1 only (the attacker's other sources are 127.0.0.2-9,
# which Linux routes over loopback).
#
# usage: bench/slowloris.sh [SECONDS [ATTACKERS [CLIENTS]]]
set -eu
seconds=${1:-20}
attackers=${2:-66}
clients=${3:-20}
# shellcheck source=bench/serve.sh
. "$(dirname "$0")/serve.sh"

echo "slowloris: $bin; max_connections 64, request_timeout 10s; $(nproc) CPUs"
fail=0
for shape in ${SHAPES:-"http same" "http 127.0.0.2" "http 127.0.0.2-9" "hello 127.0.0.2-9"}; do
	set -- $shape
	start_server 64 10
	echo "shape: $1 trickle, attacker sources $2"
	python3 "$here/bench/conns.py" slowloris "$port" "$root" "$seconds" "$attackers" "$clients" "$1" "$2" || fail=1
	stop_server
done
exit "$fail"
