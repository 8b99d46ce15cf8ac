#!/usr/bin/env bash
# lego issuing N certificates in a row from gatecert's local ACME server (issue 16) and the same
# against Debian's Pebble, in the same run on 127.0.0.1: one account per server (EAB for
# gatecert), then N `lego run` for N names, http-01 served by lego and validated by each server.
# Prints the wall time per certificate for each and the ratio (Pebble / gatecert). Run it in a
# private network namespace so its fixed ports collide with nothing:
#   unshare -n sh -c 'ip link set lo up && exec bash bench/acme-server-bench.sh 10'
#
# usage: bench/acme-server-bench.sh [N]   (default 10, at most 200; each lego run is killed
# after 60 s). Runs the debug build unless GATECERT_BIN points elsewhere.
set -euo pipefail
n=${1:-10}
if [ "$n" -lt 1 ] || [ "$n" -gt 200 ]; then
	echo "acme-server-bench: N must be 1..200" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
if [ -z "${GATECERT_BIN:-}" ]; then
	cargo build -q --bin gatecert
fi
bin=${GATECERT_BIN:-$here/target/debug/gatecert}
for t in lego pebble pebble-challtestsrv openssl; do
	command -v "$t" >/dev/null || { echo "acme-server-bench: $t is missing (apt-get install lego pebble)" >&2; exit 2; }
done
logs=$here/target/test-logs/acme-server-bench
mkdir -p "$logs"
w=$(mktemp -d "${TMPDIR:-/tmp}/gatecert-acmed-bench.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$w"
}
trap cleanup EXIT INT TERM

wait_port() {
	for _ in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "acme-server-bench: port $1 did not open" >&2
	exit 2
}
for p in 14100 15100 8155 18443 5402 5403; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "acme-server-bench: 127.0.0.1:$p is busy (run it under unshare -n)" >&2
		exit 2
	fi
done

# --- Pebble, its own HTTPS certificate, names resolving to 127.0.0.1 through challtestsrv ----
(
	cd "$w"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
		-days 30 -subj "/CN=bench test CA"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out csr.pem -subj /CN=localhost
	echo "subjectAltName=IP:127.0.0.1,DNS:localhost" >ext
	openssl x509 -req -in csr.pem -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 30 -extfile ext
) >/dev/null 2>&1
cat >"$w/pebble.json" <<EOF2
{"pebble": {"listenAddress": "127.0.0.1:14100", "managementListenAddress": "127.0.0.1:15100",
 "certificate": "$w/cert.pem", "privateKey": "$w/key.pem", "httpPort": 5402, "tlsPort": 5443,
 "ocspResponderURL": "", "externalAccountBindingRequired": false}}
EOF2
pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 127.0.0.1:8153 -http01 "" -https01 "" \
	-tlsalpn01 "" -management 127.0.0.1:8155 >"$logs/challtestsrv.log" 2>&1 &
pids+=($!)
PEBBLE_WFE_NONCEREJECT=0 PEBBLE_VA_NOSLEEP=1 pebble -config "$w/pebble.json" -dnsserver 127.0.0.1:8153 \
	>"$logs/pebble.log" 2>&1 &
pids+=($!)

# --- gatecert with the ACME server, names mapped to 127.0.0.1, http-01 on lego's port --------
hosts=""
names=()
for i in $(seq "$n"); do
	hosts="$hosts leaf$i.local=127.0.0.1"
	names+=(--name "leaf$i.local")
done
cat >"$w/gatecert.uci" <<EOF2
config gatecert 'main'
	option state_dir '$w/state'
	option log stderr
config certificate 'gateway'
	list domain 'gateway.local'
	list ip '127.0.0.1'
config ca 'local'
	list allow_suffix 'local'
	list allow_ip '127.0.0.1/32'
config acme_server 'acme'
	option enabled '1'
	option http_port '5403'
	option max_orders '1000'
	list static_host '$hosts'
EOF2
"$bin" --config "$w/gatecert.uci" run --listen 127.0.0.1:18443 >"$logs/gatecert.log" 2>&1 &
pids+=($!)
wait_port 14100
wait_port 18443
eab=$("$bin" --config "$w/gatecert.uci" token add bench "${names[@]}" --acme 2>/dev/null)
kid=$(echo "$eab" | sed -n 's/^eab_kid=//p')
hmac=$(echo "$eab" | sed -n 's/^eab_hmac=//p')

# issue NAME_SUFFIX SERVER CA PORT [EAB...]: N lego runs in a row; prints the seconds taken.
issue() {
	local suffix=$1 server=$2 ca=$3 port=$4
	shift 4
	local start end i
	start=$(date +%s.%N)
	for i in $(seq "$n"); do
		if ! LEGO_CA_CERTIFICATES=$ca timeout 60 lego --path "$w/lego-$suffix" --server "$server" \
			--accept-tos --email "bench@sensors.local" "$@" --domains "leaf$i.$suffix" \
			--http --http.port "127.0.0.1:$port" run >>"$logs/lego-$suffix.log" 2>&1; then
			echo "acme-server-bench: lego against $server failed; see $logs/lego-$suffix.log" >&2
			exit 2
		fi
	done
	end=$(date +%s.%N)
	echo "$end - $start" | bc -l
}

gw=$(issue local https://127.0.0.1:18443/acme/directory "$w/state/ca/root.pem" 5403 --eab "--kid=$kid" "--hmac=$hmac")
pb=$(issue example.com https://127.0.0.1:14100/dir "$w/ca.pem" 5402)
got=$(find "$w/lego-local/certificates" -name 'leaf*.local.crt' ! -name '*.issuer.crt' | wc -l)
[ "$got" -eq "$n" ] || { echo "acme-server-bench: $got of $n certificates from gatecert" >&2; exit 2; }
printf 'lego, %d certificates in a row (one account, http-01), %s\n' "$n" "$bin"
printf '  gatecert /acme/  %.2f s total, %.3f s per certificate\n' "$gw" "$(echo "$gw / $n" | bc -l)"
printf '  pebble           %.2f s total, %.3f s per certificate\n' "$pb" "$(echo "$pb / $n" | bc -l)"
printf '  ratio pebble / gatecert: %.2f\n' "$(echo "$pb / $gw" | bc -l)"
