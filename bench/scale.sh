#!/bin/bash
# State that scales: for N sensors already in the state directory, what one more enrollment and
# one re-enrollment cost the service (CPU from /proc/PID/stat, bytes written from /proc/PID/io
# write_bytes, durable syncs counted with strace -c), the service's RSS, its start-up time (to
# the first answer, and to the first enrollment, which loads the journals), and the time of
# `token add`, `leaves`, `status` and `leaves revoke` (through the running service, and alone).
#
# The N sensors are written by examples/scale_populate (the library's own Tokens::add /
# Inventory::record, one sync per store): N used-up tokens and N inventory rows; with
# SCALE_TOKENS_UNUSED=1 in the environment, N unused tokens (a fleet provisioned ahead of its
# sensors) instead.
#
# usage: bench/scale.sh [N...]     (default 100 1000 10000 100000; K=20 requests of each kind)
# Only 127.0.0.1. Every loop is bounded in count; each curl in time; the whole run by LIMIT s.
set -eu
ns=${*:-100 1000 10000 100000}
k=${K:-20}
limit=${LIMIT:-900}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
if [ -z "${GATECERT_BIN:-}" ]; then
	cargo build -q --release --bin gatecert
	cargo build -q --release --example scale_populate
fi
bin=${GATECERT_BIN:-$here/target/release/gatecert}
pop=${POPULATE_BIN:-$here/target/release/examples/scale_populate}
start_all=$(date +%s)

work=$(mktemp -d "${TMPDIR:-/tmp}/gatecert-scale.XXXXXX")
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

ms() { date +%s%N; }
# CPU time of every thread of the process, ns (schedstat's first field; /proc/PID/stat counts
# in 10 ms ticks, too coarse for 20 requests of about 1 ms).
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {print s}'; }
wbytes() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

serve() { # $1 state dir
	taskset -c 0 "$bin" --config "$conf" run --listen "127.0.0.1:$port" 2>>"$work/server.log" &
	pid=$!
	local i=0
	until curl -sk -o /dev/null --max-time 1 "https://127.0.0.1:$port/.well-known/est/cacerts"; do
		i=$((i + 1))
		[ "$i" -lt 400 ] || { echo "server did not start" >&2; tail "$work/server.log" >&2; exit 2; }
		sleep 0.01
	done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# One client key and CSR per request, made before anything is measured.
mkcsr() { # $1 name, $2 key file → base64 DER CSR on stdout
	[ -f "$2" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$2" 2>/dev/null
	openssl req -new -key "$2" -subj "/CN=$1" -addext "subjectAltName=DNS:$1" -outform DER | base64 -w0
}
post() { # $1 path, then curl args; prints the HTTP code, body in $work/body
	local p=$1; shift
	curl -s --max-time 10 -o "$work/body" -w '%{http_code}' --cacert "$state/ca/root.pem" \
		--resolve "gateway.local:$port:127.0.0.1" -H 'Content-Type: application/pkcs10' \
		"$@" "https://gateway.local:$port/.well-known/est/$p"
}
enroll() { # $1 i: enroll device e$i with its token, keep its cert
	local code
	code=$(post simpleenroll -u "e$1:$(cat "$work/c/e$1.tok")" --data-binary @"$work/c/e$1.csr")
	[ "$code" = 200 ] || { echo "enroll e$1: HTTP $code $(head -c 300 "$work/body")" >&2; return 1; }
	tr -d "\r\n" <"$work/body" | base64 -d | openssl pkcs7 -inform DER -print_certs -out "$work/c/e$1.pem"
}
reenroll() {
	local code
	code=$(post simplereenroll --cert "$work/c/e$1.pem" --key "$work/c/e$1.key" \
		--data-binary @"$work/c/e$1.csr")
	[ "$code" = 200 ] || { echo "reenroll e$1: HTTP $code $(head -c 300 "$work/body")" >&2; return 1; }
	tr -d "\r\n" <"$work/body" | base64 -d | openssl pkcs7 -inform DER -print_certs -out "$work/c/e$1.pem"
}
phase() { # $1 label, $2 function, $3 first, $4 last: per-request CPU ms and bytes written
	local c0 w0 c1 w1 n=$(($4 - $3 + 1))
	c0=$(cpu_ns "$pid"); w0=$(wbytes "$pid")
	for i in $(seq "$3" "$4"); do "$2" "$i"; done
	c1=$(cpu_ns "$pid"); w1=$(wbytes "$pid")
	awk -v l="$1" -v c=$((c1 - c0)) -v w=$((w1 - w0)) -v n="$n" \
		'BEGIN { printf "  %-10s CPU %.2f ms/request, written %.0f B/request (%d requests)\n", l, c / 1e6 / n, w / n, n }'
}

printf '%s\n' "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); server pinned to CPU 0"
for n in $ns; do
	[ $(($(date +%s) - start_all)) -lt "$limit" ] || { echo "LIMIT ${limit}s reached; stopping"; break; }
	state=$work/s$n
	rm -rf "$state" "$work/c"
	mkdir -p "$work/c"
	conf=$work/s$n.conf
	printf "config gatecert 'main'\n\toption state_dir '%s'\n\toption log 'stderr'\n" "$state" >"$conf"
	serve; stop # the CA and the listener's certificate
	t0=$(ms); "$pop" "$state" "$n" >/dev/null; t1=$(ms)
	echo "N = $n: populated in $(((t1 - t0) / 1000000)) ms; tokens.jnl $(stat -c %s "$state/tokens.jnl") B, leaves.jnl $(stat -c %s "$state/leaves.jnl") B"
	total=$((3 * k))
	t_add=0
	for i in $(seq 1 "$total"); do
		t0=$(ms)
		"$bin" --config "$conf" token add "e$i" --name "e$i.sensors.local" --uses 1 2>/dev/null |
			grep -Em1 '^[A-Za-z0-9_-]{30,}$' >"$work/c/e$i.tok" || true
		t1=$(ms)
		t_add=$((t_add + t1 - t0))
		[ -s "$work/c/e$i.tok" ] || { echo "token add printed no token" >&2; exit 2; }
		mkcsr "e$i.sensors.local" "$work/c/e$i.key" >"$work/c/e$i.csr"
	done
	echo "  token add  $((t_add / total / 1000)) µs/call (mean of $total)"
	t0=$(ms); serve; t1=$(ms)
	echo "  start-up   $(((t1 - t0) / 1000000)) ms to the first answer (cacerts);$(awk '/VmHWM/ {printf " %s %s %s", $1, $2, $3}' "/proc/$pid/status") then"
	t0=$(ms); enroll 1; t1=$(ms)
	echo "  first enroll after start $(((t1 - t0) / 1000000)) ms (loads tokens.jnl and leaves.jnl)"
	phase enroll enroll 2 $((k + 1))
	phase re-enroll reenroll 2 $((k + 1))
	strace -f -c -e trace=fsync,fdatasync -o "$work/strace" -p "$pid" 2>/dev/null &
	spid=$!
	sleep 0.5
	for i in $(seq $((k + 2)) $((2 * k + 1))); do enroll "$i"; reenroll "$i"; done
	kill -INT "$spid"; wait "$spid" 2>/dev/null || true
	syncs=$(awk '/fsync|fdatasync/ {s += $4} END {print s + 0}' "$work/strace")
	awk -v s="$syncs" -v n=$((2 * k)) 'BEGIN { printf "  syncs      %.2f per request (fsync+fdatasync over %d enroll+re-enroll, strace -c)\n", s / n, n }'
	awk '/VmRSS|VmHWM/ {printf "  %s %s %s", $1, $2, $3} END {print ""}' "/proc/$pid/status"
	for cmd in leaves status; do
		t0=$(ms); "$bin" --config "$conf" "$cmd" >/dev/null 2>&1 || true; t1=$(ms)
		echo "  $cmd $(((t1 - t0) / 1000000)) ms"
	done
	# `leaves revoke` of devices enrolled above: handed to the service (which keeps the
	# inventory open), then with the service stopped (the command reads leaves.jnl itself).
	revoke_ms() { # $1 first device, $2 last: mean ms per call
		local t=0 i
		for i in $(seq "$1" "$2"); do
			t0=$(ms)
			"$bin" --config "$conf" leaves revoke "e$i" >/dev/null 2>>"$work/revoke.err" ||
				{ echo "leaves revoke e$i failed:" >&2; tail -3 "$work/revoke.err" >&2; exit 2; }
			t1=$(ms)
			t=$((t + t1 - t0))
		done
		echo $((t / ($2 - $1 + 1) / 1000000))
	}
	if [ "$k" -ge 8 ]; then # devices e(k+2)..e(2k+1) were enrolled above
		via=$(revoke_ms $((k + 2)) $((k + 6)))
		stop
		alone=$(revoke_ms $((k + 7)) $((k + 9)))
		echo "  leaves revoke $via ms through the service (mean of 5), $alone ms with no service (mean of 3)"
	else
		stop
	fi
	rm -rf "$state"
done
