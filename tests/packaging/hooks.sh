#!/usr/bin/env bash
# tests/packaging/hooks.sh - the NTP hotplug hook (clock-trusted flag) and the deploy hook
# (acme-common style hotplug + ubus event), with logger/hotplug-call/ubus stubbed on PATH.
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

F=$REPO/openwrt/gatecert/files
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
mkdir -p "$W/bin"
for c in logger hotplug-call ubus; do
  printf '#!/bin/sh\necho "%s ACTION=${ACTION:-} CERT_NAME=${CERT_NAME:-} $*" >> "%s/log"\n' "$c" "$W" > "$W/bin/$c"
  chmod +x "$W/bin/$c"
done
export PATH=$W/bin:$PATH
FLAG=$W/run/gatecert/clock-trusted

ntp() { env -i PATH="$PATH" GATECERT_CLOCK_FLAG="$FLAG" "$@" sh "$F/gatecert.ntp-hotplug"; }
ntp ACTION=periodic stratum=2
ok "periodic does not set the flag" test ! -e "$FLAG"
ntp ACTION=stratum stratum=16
ok "stratum 16 (unsynchronised) does not set the flag" test ! -e "$FLAG"
ntp ACTION=unsync
ok "unsync does not set the flag" test ! -e "$FLAG"
ntp ACTION=stratum stratum=3
ok "stratum 3 sets the flag (and creates its directory)" test -f "$FLAG"
contains "first sync is logged" "-t gatecert clock synchronised (ntp stratum, stratum 3)" "$(cat "$W/log" 2>/dev/null)"
: > "$W/log"; ntp ACTION=step
ok "step keeps the flag" test -f "$FLAG"
eq "later syncs are not logged again" "" "$(cat "$W/log")"
ntp ACTION=stratum stratum=junk; ok "bad stratum exits 0" test $? -eq 0

: > "$W/log"
env -i PATH="$PATH" GATECERT_CERT_NAME=gateway sh "$F/gatecert.deploy-hook"
L=$(cat "$W/log")
contains "hotplug-call acme with ACTION=renewed" "hotplug-call ACTION=renewed CERT_NAME=gateway acme" "$L"
contains "ubus acme.renew event" 'ubus ACTION= CERT_NAME= call service event {"type":"acme.renew","data":{"name":"gateway"}}' "$L"
eq "hotplug runs before the ubus event" "hotplug-call ubus" "$(awk '{print $1}' "$W/log" | paste -sd' ')"
: > "$W/log"
sh "$F/gatecert.deploy-hook" issued 'we"ird' 
contains "issued -> acme.issue, name sanitised" '{"type":"acme.issue","data":{"name":"weird"}}' "$(cat "$W/log")"
sh "$F/gatecert.deploy-hook" bogus 2>/dev/null
eq "unknown event exits 2" 2 "$?"
done_testing
