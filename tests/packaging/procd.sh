#!/usr/bin/env bash
# tests/packaging/procd.sh - sources the OpenWrt init script with procd's and uci's shell
# helpers stubbed, captures the instance JSON that start_service registers (command line,
# respawn, logging, file triggers, user, capabilities, no_new_privs) and the triggers JSON of
# service_triggers, for several configs: the shipped one (EST on lan's address), `enabled 0`,
# lan without an address yet, no interface, anonymous sections as LuCI writes them.
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

INIT=$REPO/openwrt/gatecert/files/gatecert.init
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
: > "$W/ujail"; chmod +x "$W/ujail"

# network.sh stand-in: lan has $LAN_IP4 (or nothing).
cat > "$W/network.sh" <<'NET'
network_get_ipaddr() { [ "$2" = lan ] && [ -n "${LAN_IP4:-}" ] && eval "$1=\$LAN_IP4"; }
network_get_ipaddr6() { [ "$2" = lan ] && [ -n "${LAN_IP6:-}" ] && eval "$1=\$LAN_IP6"; }
NET

# run CONFIG_SH FUNCTION...: sources the init script in a subshell with the stubs, config from
# CONFIG_SH (CONFIG_SECTIONS, CONFIG_<sec>_TYPE, CONFIG_<sec>_<opt>, as /lib/functions.sh keeps
# them), runs each FUNCTION, and leaves $W/instance.json, $W/triggers.json, $W/log.
run() {
  local config=$1; shift
  rm -f "$W/instance.json" "$W/triggers.json"; : > "$W/log"
  (
    J=$W/instance.json T=$W/triggers.json
    # /lib/functions.sh stand-ins
    # shellcheck source=/dev/null
    config_load() { . "$config"; }
    config_foreach() {
      local fn=$1 type=$2 s t
      for s in $CONFIG_SECTIONS; do eval "t=\${CONFIG_${s}_TYPE}"; [ "$t" = "$type" ] && "$fn" "$s"; done
    }
    config_get() { eval "$1=\${CONFIG_${2}_${3}:-\${4:-}}"; }
    config_get_bool() {
      local v; config_get v "$2" "$3" "${4:-}"
      case "$v" in 1|on|true|yes|enabled) v=1 ;; 0|off|false|no|disabled) v=0 ;; esac
      eval "$1=\$v"
    }
    # /etc/rc.common and /lib/functions/procd.sh stand-ins, building procd's JSON with jq
    extra_command() { echo "extra_command $*" >> "$W/log"; }
    logger() { echo "logger $*" >> "$W/log"; }
    mkdir() { echo "mkdir $*" >> "$W/log"; }
    procd_open_instance() { jq -n --arg n "$1" '{name: $n}' > "$J.new"; }
    arr() { printf '%s\n' "$@" | jq -R . | jq -sc .; }
    procd_set_param() {
      local k=$1; shift
      jq --arg k "$k" --argjson v "$(arr "$@")" '.[$k] = $v' < "$J.new" > "$J.tmp" && mv "$J.tmp" "$J.new"
    }
    procd_append_param() {
      local k=$1; shift
      jq --arg k "$k" --argjson v "$(arr "$@")" '.[$k] += $v' < "$J.new" > "$J.tmp" && mv "$J.tmp" "$J.new"
    }
    procd_close_instance() { mv "$J.new" "$J"; }
    trig() { [ -f "$T" ] || echo '[]' > "$T"; jq --argjson t "$1" '. + [$t]' < "$T" > "$T.tmp" && mv "$T.tmp" "$T"; }
    procd_add_reload_trigger() {
      local c
      for c in "$@"; do
        trig "$(jq -cn --arg c "$c" '["config.change", ["if", ["eq", "package", $c], ["run_script", "/etc/init.d/gatecert", "reload"]]]')"
      done
    }
    procd_add_interface_trigger() {
      local type=$1 iface=$2; shift 2
      trig "$(jq -cn --arg t "$type" --arg i "$iface" --argjson s "$(arr "$@")" '[$t, ["if", ["eq", "interface", $i], (["run_script"] + $s)]]')"
    }
    start() { echo "start" >> "$W/log"; }
    NETWORK_SH=$W/network.sh UJAIL=$W/ujail
    # shellcheck source=openwrt/gatecert/files/gatecert.init
    . "$INIT"
    CAPS=$REPO/openwrt/gatecert/files/gatecert.capabilities
    echo "USE_PROCD=$USE_PROCD START=$START STOP=$STOP" >> "$W/log"
    for f in "$@"; do "$f"; done
  ) >"$W/out" 2>"$W/err"
}
inst() { jq -c "$1" "$W/instance.json" 2>/dev/null; }

# The shipped config: main enabled, est bound to lan.
cat > "$W/shipped.sh" <<'CFG'
CONFIG_SECTIONS="main local est metrics"
CONFIG_main_TYPE=gatecert CONFIG_main_enabled=1 CONFIG_main_firewall_hook=/usr/lib/gatecert/fw4-port
CONFIG_local_TYPE=ca
CONFIG_est_TYPE=est CONFIG_est_interface=lan
CONFIG_metrics_TYPE=metrics
CFG
LAN_IP4=192.168.1.1 run "$W/shipped.sh" start_service service_triggers
eq "sourcing prints nothing on stderr" "" "$(cat "$W/err")"
contains "USE_PROCD and START/STOP set" "USE_PROCD=1 START=95 STOP=10" "$(cat "$W/log")"
contains "extra command renew registered" 'extra_command renew Renew certificates now' "$(cat "$W/log")"
contains "run dir and acme-common's challenge dir" "mkdir -p /var/run/gatecert /var/run/acme/challenge" "$(cat "$W/log")"
eq "instance name" '"gatecert"' "$(inst .name)"
eq "command: EST on lan's address, the est listen port" \
  '["/usr/bin/gatecert","--config","/etc/config/gatecert","run","--listen","192.168.1.1:8443"]' "$(inst .command)"
eq "respawn threshold/timeout/retry" '["3600","5","5"]' "$(inst .respawn)"
eq "stdout and stderr to logd" '[["1"],["1"]]' "$(inst '[.stdout, .stderr]')"
eq "file triggers on both configs" '["/etc/config/gatecert","/etc/config/acme"]' "$(inst .file)"
eq "user" '["root"]' "$(inst .user)"
eq "capabilities file (with ujail)" "[\"$REPO/openwrt/gatecert/files/gatecert.capabilities\"]" "$(inst .capabilities)"
eq "no_new_privs" '["1"]' "$(inst .no_new_privs)"
eq "triggers: reload on gatecert and acme, follow lan" \
  '[["config.change",["if",["eq","package","gatecert"],["run_script","/etc/init.d/gatecert","reload"]]],["config.change",["if",["eq","package","acme"],["run_script","/etc/init.d/gatecert","reload"]]],["interface.*",["if",["eq","interface","lan"],["run_script","/etc/init.d/gatecert","reload"]]]]' \
  "$(jq -c . "$W/triggers.json")"
ok "capabilities JSON is valid and keeps only what gatecert needs" \
  test "$(jq -c '.bounding' "$REPO/openwrt/gatecert/files/gatecert.capabilities")" = \
  '["CAP_NET_BIND_SERVICE","CAP_NET_ADMIN","CAP_CHOWN","CAP_FOWNER","CAP_DAC_OVERRIDE","CAP_KILL"]'

LAN_IP4='' LAN_IP6=fd00::1 run "$W/shipped.sh" start_service
eq "IPv6-only lan: bracketed address" '"[fd00::1]:8443"' "$(inst '.command[5]')"

LAN_IP4='' run "$W/shipped.sh" start_service
ok "lan without an address: no instance yet" test ! -f "$W/instance.json"
contains "... and says why" "logger -t gatecert EST interface 'lan' has no address yet" "$(cat "$W/log")"

cat > "$W/disabled.sh" <<'CFG'
CONFIG_SECTIONS="main est"
CONFIG_main_TYPE=gatecert CONFIG_main_enabled=0
CONFIG_est_TYPE=est CONFIG_est_interface=lan
CFG
LAN_IP4=192.168.1.1 run "$W/disabled.sh" start_service
ok "main.enabled 0: no instance" test ! -f "$W/instance.json"
contains "... and says so" "gatecert is disabled" "$(cat "$W/out")"

# As LuCI / `uci add` write it: anonymous sections, est listen on another port, no interface.
cat > "$W/anon.sh" <<'CFG'
CONFIG_SECTIONS="cfg02a1b2 cfg04c3d4"
CONFIG_cfg02a1b2_TYPE=gatecert
CONFIG_cfg04c3d4_TYPE=est CONFIG_cfg04c3d4_listen='[::]:9443'
CFG
run "$W/anon.sh" start_service service_triggers
eq "no interface: listen as configured (no --listen)" \
  '["/usr/bin/gatecert","--config","/etc/config/gatecert","run"]' "$(inst .command)"
eq "no interface trigger without an interface" 2 "$(jq length "$W/triggers.json")"
cat > "$W/anon-lan.sh" <<'CFG'
CONFIG_SECTIONS="cfg02a1b2 cfg04c3d4"
CONFIG_cfg02a1b2_TYPE=gatecert
CONFIG_cfg04c3d4_TYPE=est CONFIG_cfg04c3d4_listen='[::]:9443' CONFIG_cfg04c3d4_interface=lan
CFG
LAN_IP4=10.0.0.1 run "$W/anon-lan.sh" start_service
eq "anonymous est section: its interface and port" '"10.0.0.1:9443"' "$(inst '.command[5]')"

run "$W/shipped.sh" reload_service
contains "reload re-runs start (procd restarts only on change)" "start" "$(cat "$W/log")"

(
  extra_command() { :; }
  # shellcheck source=openwrt/gatecert/files/gatecert.init
  . "$INIT"
  PROG=$W/fake-gatecert
  printf '#!/bin/sh\necho "ARGS $*" >> "%s"\nexit 1\n' "$W/log" > "$PROG"; chmod +x "$PROG"
  : > "$W/log"; renew --force; echo "renew rc=$?" >> "$W/log"
)
contains "renew runs gatecert renew with the config" "ARGS --config /etc/config/gatecert renew --force" "$(cat "$W/log")"
contains "renew passes the exit status through" "renew rc=1" "$(cat "$W/log")"
ok "init script starts with the rc.common shebang" grep -qx '#!/bin/sh /etc/rc.common' <(head -1 "$INIT")
done_testing
