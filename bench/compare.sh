#!/usr/bin/env bash
# gatecert beside lego and certbot (Debian packages), in one run against the same local pebble
# (http-01 standalone on 127.0.0.1:80, so run as root): one issuance each with a fresh account,
# N runs per client, median CPU (user+sys), wall time and peak RSS (wait4's rusage, as
# /usr/bin/time reports them, at microsecond resolution: bench/rusage.c). Then
# gatecert's EST enrollment throughput/latency (bench/est-bench.sh), the idle RSS of
# `gatecert run` after 5 s, and the binary sizes; ratios against the references and the goals.
#
# usage: bench/compare.sh [N]      (default 5)
# GATECERT_BIN / EST_BENCH_BIN override the release binaries (built if missing).
set -euo pipefail
n=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bin=${GATECERT_BIN:-$here/target/release/gatecert}
bench=${EST_BENCH_BIN:-$here/target/release/examples/est_bench}
if [ ! -x "$bin" ] || [ ! -x "$bench" ]; then
	nice cargo build -q --release --bin gatecert --example est_bench
fi
for t in lego certbot pebble pebble-challtestsrv python3 bc cc openssl curl; do
	command -v "$t" >/dev/null || { echo "compare: $t is missing (apt-get install lego certbot pebble time)" >&2; exit 2; }
done
logs=$here/target/test-logs/compare
mkdir -p "$logs"
cc -O2 -o "$here/target/rusage" "$here/bench/rusage.c"

w=$(mktemp -d "${TMPDIR:-/tmp}/gatecert-compare.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$w"
}
trap cleanup EXIT INT TERM

# --- pebble + challtestsrv on 127.0.0.1, with their own HTTPS certificate ---------------------
(
	cd "$w"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
		-days 30 -subj "/CN=compare test CA"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out csr.pem -subj /CN=localhost
	echo "subjectAltName=IP:127.0.0.1,DNS:localhost" >ext
	openssl x509 -req -in csr.pem -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 30 -extfile ext
) >/dev/null 2>&1
cat >"$w/pebble.json" <<EOF
{"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
 "certificate": "$w/cert.pem", "privateKey": "$w/key.pem", "httpPort": 80, "tlsPort": 443,
 "ocspResponderURL": "", "externalAccountBindingRequired": false}}
EOF
wait_port() {
	for _ in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "compare: port $1 did not open" >&2
	exit 2
}
for p in 14000 15000 8055 80; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "compare: 127.0.0.1:$p is busy (another pebble test running?)" >&2
		exit 2
	fi
done
pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 127.0.0.1:8053 -http01 "" -https01 "" \
	-tlsalpn01 "" -management 127.0.0.1:8055 >/dev/null 2>&1 &
pids+=($!)
# No badNonce injection: certbot 2.1 crashes retrying one (AttributeError in its nonce retry).
PEBBLE_WFE_NONCEREJECT=0 PEBBLE_VA_NOSLEEP=1 pebble -config "$w/pebble.json" -dnsserver 127.0.0.1:8053 >"$logs/pebble.log" 2>&1 &
pids+=($!)
wait_port 8055
wait_port 14000
dir=https://127.0.0.1:14000/dir

# --- one issuance per run, fresh account and state each time ---------------------------------
# Prints "user sys wall maxrss_kb" for the run, or fails.
measure() {
	local out=$w/time.$$
	if ! "$here/target/rusage" "$out" "$@" >>"$logs/clients.log" 2>&1; then
		echo "compare: failed: $*" >&2
		tail -n 5 "$logs/clients.log" >&2
		exit 2
	fi
	cat "$out"
}
run_gatecert() {
	local d=$w/g$1
	mkdir -p "$d"
	printf "config gatecert 'main'\n\toption state_dir '%s'\n\toption log 'stderr'\n\n" "$d/state" >"$d/conf"
	printf "config certificate 'gw'\n\toption directory '%s'\n\toption ca_bundle '%s'\n" "$dir" "$w/ca.pem" >>"$d/conf"
	printf "\tlist domain 'gw%s.compare.test'\n\toption http_listen '127.0.0.1:80'\n" "$1" >>"$d/conf"
	measure "$bin" --config "$d/conf" renew
}
run_lego() {
	LEGO_CA_CERTIFICATES=$w/ca.pem measure lego --server "$dir" --email ci@example.com --accept-tos \
		--path "$w/l$1" --key-type ec256 --domains "lego$1.compare.test" --http --http.port 127.0.0.1:80 run
}
run_certbot() {
	local d=$w/c$1
	REQUESTS_CA_BUNDLE=$w/ca.pem measure certbot certonly --standalone --non-interactive --agree-tos \
		-m ci@example.com --server "$dir" --key-type ecdsa --elliptic-curve secp256r1 \
		--config-dir "$d/etc" --work-dir "$d/work" --logs-dir "$d/logs" \
		--http-01-address 127.0.0.1 --http-01-port 80 -d "certbot$1.compare.test"
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
declare -A cpu usr sys wall rss
for c in gatecert lego certbot; do
	: >"$w/$c.runs"
	# Interleaved would be fairer to drifting load; the clients are run one after another,
	# each N times, in one go against the same pebble.
	for i in $(seq "$n"); do "run_$c" "$i" >>"$w/$c.runs"; done
	cpu[$c]=$(awk '{printf "%.4f\n", $1 + $2}' "$w/$c.runs" | median)
	usr[$c]=$(awk '{print $1}' "$w/$c.runs" | median)
	sys[$c]=$(awk '{print $2}' "$w/$c.runs" | median)
	wall[$c]=$(awk '{print $3}' "$w/$c.runs" | median)
	rss[$c]=$(awk '{print $4}' "$w/$c.runs" | median)
done

echo "== one issuance (fresh account, http-01 standalone) against the same pebble, median of $n =="
printf '%-10s %10s %8s %8s %10s %12s\n' client "CPU s" "(user" "sys)" "wall s" "peak RSS"
for c in gatecert lego certbot; do
	printf '%-10s %10s %8s %8s %10s %9.1f MiB\n' "$c" "${cpu[$c]}" "${usr[$c]}" "${sys[$c]}" "${wall[$c]}" \
		"$(echo "${rss[$c]} / 1024" | bc -l)"
done
ratio() { echo "scale=3; $1 / $2" | bc -l | sed 's/^\./0./'; }
for r in lego certbot; do
	printf 'gatecert/%-8s CPU %s  wall %s  peak RSS %s\n' "$r" "$(ratio "${cpu[gatecert]}" "${cpu[$r]}")" \
		"$(ratio "${wall[gatecert]}" "${wall[$r]}")" "$(ratio "${rss[gatecert]}" "${rss[$r]}")"
done
fastest=$(printf '%s\n%s\n' "${cpu[lego]}" "${cpu[certbot]}" | sort -g | head -n 1)
goal() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo met; else echo MISSED; fi; }
echo "goal renewal peak RSS <= 4 MiB: $(goal "${rss[gatecert]} <= 4096") (${rss[gatecert]} KiB)"
echo "goal renewal CPU <= 0.5 x fastest reference ($fastest s): $(goal "${cpu[gatecert]} <= 0.5 * $fastest") (${cpu[gatecert]} s)"

# --- EST ------------------------------------------------------------------------------------
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
echo
echo "== EST simpleenroll (bench/est-bench.sh 500, release) =="
GATECERT_BIN=$bin EST_BENCH_BIN=$bench sh bench/est-bench.sh 500 | grep -E 'simpleenroll|server:'

# --- idle RSS of `gatecert run` -------------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
: > "$w/empty.conf"   # an empty config: the built-in defaults
"$bin" --config "$w/empty.conf" run --state-dir "$w/idle" --listen "127.0.0.1:$port" 2>>"$logs/run.log" &
idle=$!
pids+=("$idle")
wait_port "$port"
sleep 5
idle_rss=$(awk '/^VmRSS/ {print $2}' "/proc/$idle/status")
anon=$(awk '/^RssAnon/ {print $2}' "/proc/$idle/status")
file=$(awk '/^RssFile/ {print $2}' "/proc/$idle/status")
self=$(awk -v b="$(readlink -f "$bin")" '/^[0-9a-f]+-/ {n=$6} /^Rss:/ && n==b {r+=$2} END {print r+0}' "/proc/$idle/smaps")
echo
echo "== gatecert run, idle 5 s: VmRSS ${idle_rss} KiB; goal <= 3 MiB: $(goal "$idle_rss <= 3072")"
echo "   of which anonymous (heap, stacks, data) ${anon} KiB, file-backed ${file} KiB (the binary's own pages ${self} KiB, the rest shared libc/ld.so)"

# --- sizes ----------------------------------------------------------------------------------
echo
echo "== binary sizes (bytes) =="
printf '%-40s %10s %10s\n' binary size gzip-9
size_of() { printf '%-40s %10s %10s\n' "$1" "$(stat -c %s "$2")" "$(gzip -9c "$2" | wc -c)"; }
size_of "gatecert (host, release)" "$bin"
for f in target/cross/*/release/gatecert target/*/release/gatecert; do
	[ -f "$f" ] && [ "$f" != target/release/gatecert ] && size_of "$f" "$f"
done
size_of "lego ($(command -v lego))" "$(command -v lego)"
echo "certbot: Python ($(dpkg-query -W -f '${Installed-Size}' python3-certbot 2>/dev/null || echo ?) KiB installed for python3-certbot alone)"
