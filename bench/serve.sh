#!/usr/bin/env bash
# Sourced by bench/slowloris.sh and bench/cap.sh: starts `gatecert run` on a free 127.0.0.1
# port in a temp state dir with the EST limits given, waits until cacerts answers, and leaves
# $bin $dir $port $pid $root set; the EXIT trap stops the server and removes the dir.
# GATECERT_BIN overrides the binary (default target/release/gatecert, built if missing).
# With $server_cpu set (a CPU number), the server runs pinned to that CPU (taskset).
#
# usage (sourced): start_server MAX_CONNECTIONS REQUEST_TIMEOUT
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${GATECERT_BIN:-$here/target/release/gatecert}
logs=$here/target/test-logs/bench
dir=
pid=
server_cpu=${server_cpu:-}

stop_server() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=
	fi
	if [ -n "$dir" ]; then
		rm -rf "$dir"
	fi
}

start_server() {
	local max=$1 timeout=$2 i=0
	[ -x "$bin" ] || (cd "$here" && nice cargo build -q --release --bin gatecert)
	mkdir -p "$logs"
	dir=$(mktemp -d "${TMPDIR:-/tmp}/gatecert-bench.XXXXXX")
	trap stop_server EXIT INT TERM
	# Enough descriptors for every connection on both ends.
	ulimit -n 4096 2>/dev/null || true
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	printf "config gatecert 'main'\n\toption state_dir '%s'\n\toption log 'stderr'\n\toption log_level 'warn'\n" \
		"$dir/state" >"$dir/gatecert.conf"
	printf "config est 'est'\n\toption listen '127.0.0.1:%s'\n\toption max_connections '%s'\n\toption request_timeout '%s'\n" \
		"$port" "$max" "$timeout" >>"$dir/gatecert.conf"
	${server_cpu:+taskset -c "$server_cpu"} "$bin" --config "$dir/gatecert.conf" run 2>>"$logs/run.log" &
	pid=$!
	root=$dir/state/ca/root.pem
	until [ -s "$root" ] && curl -s -o /dev/null --max-time 1 --cacert "$root" \
		--resolve "gateway.local:$port:127.0.0.1" "https://gateway.local:$port/.well-known/est/cacerts"; do
		i=$((i + 1))
		[ "$i" -lt 200 ] || { echo "server did not start:" >&2; tail "$logs/run.log" >&2; exit 2; }
		sleep 0.05
	done
}
