#!/usr/bin/env bash
# Load: IDLE slowloris connections plus CLIENTS concurrent EST enrollments for SECONDS against
# `gatecert run` (release build by default); prints throughput, latency, errors and the
# server's RSS before, peak (VmHWM) and after. Exits non-zero if the service went down or
# served no well-behaved client.
#
# usage: bench/load.sh [SECONDS [IDLE [CLIENTS]]]      (default 60 500 200)
# GATECERT_BIN overrides the binary (default target/release/gatecert, built if missing).
set -eu
seconds=${1:-60}
idle=${2:-500}
clients=${3:-200}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bin=${GATECERT_BIN:-$here/target/release/gatecert}
[ -x "$bin" ] || nice cargo build -q --release --bin gatecert
logs=$here/target/test-logs/load
mkdir -p "$logs"

dir=$(mktemp -d "${TMPDIR:-/tmp}/gatecert-load.XXXXXX")
pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# Enough descriptors for the idle connections on both ends.
ulimit -n 4096 2>/dev/null || true
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf "config gatecert 'main'\n\toption state_dir '%s'\n\toption log 'stderr'\n" "$dir/state" >"$dir/gatecert.conf"

"$bin" --config "$dir/gatecert.conf" run --listen "127.0.0.1:$port" 2>>"$logs/run.log" &
pid=$!
i=0
until [ -s "$dir/state/ca/root.pem" ] && curl -s -o /dev/null --max-time 1 --cacert "$dir/state/ca/root.pem" \
	--resolve "gateway.local:$port:127.0.0.1" "https://gateway.local:$port/.well-known/est/cacerts"; do
	i=$((i + 1))
	[ "$i" -lt 200 ] || { echo "server did not start:" >&2; tail "$logs/run.log" >&2; exit 2; }
	sleep 0.05
done
# The token is printed once, on purpose, by `token add`; it stays out of the scanned logs.
token=$("$bin" --config "$dir/gatecert.conf" token add load --name load.sensors.local --uses 100000 --ttl 1d 2>/dev/null)
[ -n "$token" ] || { echo "token add printed no token" >&2; exit 2; }
# For tests/secrets.sh: the secrets this run used (never in the scanned logs).
mkdir -p "$here/target/test-logs/secrets"
{
	echo "$token"
	sed -n '/PRIVATE KEY/,/END/p' "$dir"/state/ca/*.key "$dir"/state/certs/*/live/key.pem 2>/dev/null |
		grep -v -- '-----' | awk 'length($0) >= 40'
} >>"$here/target/test-logs/secrets/load-$$.list"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/leaf.key" \
	-subj "/CN=load.sensors.local" -addext "subjectAltName=DNS:load.sensors.local" \
	-outform DER -out "$dir/csr.der" 2>/dev/null
base64 -w0 "$dir/csr.der" >"$dir/csr.b64"
echo "token, CSR and state ready in $dir" >>"$logs/run.log"
sleep 5 # idle RSS baseline

echo "load: $bin, $idle idle + $clients concurrent clients for ${seconds}s; $(nproc) CPUs"
python3 "$here/bench/load.py" "$pid" "$port" "$dir/state/ca/root.pem" load "$token" "$dir/csr.b64" \
	"$seconds" "$idle" "$clients"
