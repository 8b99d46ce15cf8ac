#!/usr/bin/env bash
# tests/packaging/procd.sh - sources the OpenWrt init script with procd's helpers stubbed and
# checks what it registers: command line, respawn, logging to logd, triggers, reload signal,
# the extra `renew` command.
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

INIT=$REPO/openwrt/gatecert/files/gatecert.init
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
CALLS=$W/calls

# Run in a subshell so the init script's globals and the stubs stay contained.
(
  # /etc/rc.common and /lib/functions/procd.sh stand-ins: record every call.
  rec() { echo "$*" >> "$CALLS"; }
  extra_command() { rec "extra_command $*"; }
  procd_open_instance() { rec "procd_open_instance $*"; }
  procd_set_param() { rec "procd_set_param $*"; }
  procd_close_instance() { rec "procd_close_instance"; }
  procd_add_reload_trigger() { rec "procd_add_reload_trigger $*"; }
  procd_send_signal() { rec "procd_send_signal $*"; }
  mkdir() { rec "mkdir $*"; }
  # shellcheck source=openwrt/gatecert/files/gatecert.init
  . "$INIT"
  rec "USE_PROCD=$USE_PROCD START=$START STOP=$STOP"
  rec "--start"; start_service
  rec "--triggers"; service_triggers
  rec "--reload"; reload_service
  PROG=$W/fake-gatecert
  printf '#!/bin/sh\necho "ARGS $*" >> "%s"\nexit 1\n' "$CALLS" > "$PROG"; chmod +x "$PROG"
  rec "--renew"; renew --force; rec "renew rc=$?"
) 2>"$W/err"
eq "sourcing prints nothing on stderr" "" "$(cat "$W/err")"
C=$(cat "$CALLS")
section() { sed -n "/^--$1\$/,/^--/p" "$CALLS" | grep -v '^--'; }

contains "USE_PROCD and START/STOP set" "USE_PROCD=1 START=95 STOP=10" "$C"
contains "extra command renew registered" 'extra_command renew Renew certificates now' "$C"
S=$(section start)
contains "run dir for the clock flag" "mkdir -p /var/run/gatecert" "$S"
eq "one instance, opened then closed" "procd_open_instance gatecert|procd_close_instance" \
  "$(echo "$S" | grep -E 'procd_(open|close)_instance' | sed 's/ $//' | paste -sd'|')"
contains "command line" "procd_set_param command /usr/bin/gatecert --config /etc/config/gatecert run" "$S"
contains "respawn with threshold/timeout/retry" "procd_set_param respawn 3600 5 5" "$S"
contains "stdout to logd" "procd_set_param stdout 1" "$S"
contains "stderr to logd" "procd_set_param stderr 1" "$S"
eq "params set inside the instance" "" \
  "$(echo "$S" | awk '/procd_open_instance/{o=1} /procd_close_instance/{o=0} /procd_set_param/ && !o')"
eq "reload trigger on the gatecert config" "procd_add_reload_trigger gatecert" "$(section triggers)"
eq "reload sends SIGHUP to the instance" "procd_send_signal gatecert gatecert HUP" "$(section reload)"
contains "renew runs gatecert renew with the config" "ARGS --config /etc/config/gatecert renew --force" "$C"
contains "renew passes the exit status through" "renew rc=1" "$C"
ok "init script starts with the rc.common shebang" grep -qx '#!/bin/sh /etc/rc.common' <(head -1 "$INIT")
done_testing
