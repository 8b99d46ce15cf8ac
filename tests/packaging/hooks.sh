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
for ev in renew-failed issue-failed; do
  : > "$W/log"
  sh "$F/gatecert.deploy-hook" "$ev" router.example.org
  eq "$ev: hotplug acme only, no ubus event (as acme-common's notify)" \
    "hotplug-call ACTION=$ev CERT_NAME=router.example.org acme" "$(cat "$W/log")"
done

# fw4-port with a stub nft that keeps a rule list in a file.
RULES=$W/rules
cat > "$W/bin/nft" <<'NFT'
#!/bin/sh
R=${RULES:?}
case "$*" in
"-a list chain inet fw4 input")
  echo "table inet fw4 {"; echo "chain input {"
  n=0; while IFS= read -r l; do n=$((n + 1)); [ -n "$l" ] && echo "$l # handle $n"; done < "$R"
  echo "}"; echo "}" ;;
"insert rule inet fw4 input "*)
  shift 5; echo "$*" >> "$R" ;;
"delete rule inet fw4 input handle "*)
  h=$7; awk -v h="$h" 'NR == h { print ""; next } { print }' "$R" > "$R.tmp" && mv "$R.tmp" "$R" ;;
*) echo "nft stub: unexpected: $*" >&2; exit 1 ;;
esac
NFT
chmod +x "$W/bin/nft"
export RULES
: > "$RULES"
sh "$F/gatecert.fw4-port" open 80 router.example.org
eq "open inserts an accept rule for the port, commented" \
  'tcp dport 80 counter accept comment "gatecert router.example.org:80"' "$(grep -v '^$' "$RULES")"
sh "$F/gatecert.fw4-port" open 80 router.example.org
eq "open again replaces the stale rule (crash between open and close)" 1 "$(grep -c accept "$RULES")"
echo 'tcp dport 22 accept comment "ssh"' >> "$RULES"
sh "$F/gatecert.fw4-port" close 80 router.example.org
eq "close deletes only gatecert's rule" 'tcp dport 22 accept comment "ssh"' "$(grep -v '^$' "$RULES")"
sh "$F/gatecert.fw4-port" open 8o x 2>/dev/null
eq "bad port exits 2" 2 "$?"
: > "$W/log"
env -i PATH="$W/bin:/usr/bin:/bin" GATECERT_NFT=no-such-nft sh "$F/gatecert.fw4-port" open 80 x
eq "without nft: exit 0, logged" "0 logger ACTION= CERT_NAME= -t gatecert fw4-port: nft not found; port 80 not opened in the firewall" "$? $(cat "$W/log")"

# acmesh-dnsapi with a fake acme.sh dnsapi script (dns_fake) that records what it is given.
mkdir -p "$W/dnsapi"
cat > "$W/dnsapi/dns_fake.sh" <<'API'
# shellcheck shell=sh
dns_fake_add() {
  FAKE_Token="${FAKE_Token:-$(_readaccountconf_mutable FAKE_Token)}"
  _saveaccountconf_mutable FAKE_Token "$FAKE_Token"
  _info "adding $1"
  echo "add $1 $2 token=$FAKE_Token zone=${FAKE_Zone:-}" >> "$DNSLOG"
}
dns_fake_rm() { echo "rm $1 $2 token=$FAKE_Token" >> "$DNSLOG"; }
API
DNSLOG=$W/dns.log
: > "$DNSLOG"
env -i PATH="$W/bin:/usr/bin:/bin" DNSLOG="$DNSLOG" GATECERT_DNSAPI_DIR="$W/dnsapi" GATECERT_DNSAPI_HELPER="$W/none" \
  GATECERT_DNSAPI=dns_fake FAKE_Token=tok-1 FAKE_Zone=z9 \
  sh "$F/gatecert.acmesh-dnsapi" add _acme-challenge.router.example.org VALUE1
eq "add runs dns_fake_add with FQDN, value and the credentials" \
  "add _acme-challenge.router.example.org VALUE1 token=tok-1 zone=z9" "$(cat "$DNSLOG")"
: > "$DNSLOG"
env -i PATH="$W/bin:/usr/bin:/bin" DNSLOG="$DNSLOG" GATECERT_DNSAPI_DIR="$W/dnsapi" GATECERT_DNSAPI_HELPER="$W/none" \
  GATECERT_DNSAPI=dns_fake FAKE_Token=tok-1 GATECERT_DNS_ALIAS=alias.example.net \
  sh "$F/gatecert.acmesh-dnsapi" del _acme-challenge.router.example.org VALUE1
eq "del runs dns_fake_rm, at the alias when calias/dalias is set" \
  "rm _acme-challenge.alias.example.net VALUE1 token=tok-1" "$(cat "$DNSLOG")"
contains "the helper's _info logs to syslog" "-t gatecert-dnsapi -p daemon.info -- adding _acme-challenge.router.example.org" "$(cat "$W/log")"
env -i PATH="$W/bin:/usr/bin:/bin" GATECERT_DNSAPI_DIR="$W/dnsapi" GATECERT_DNSAPI=dns_nope \
  sh "$F/gatecert.acmesh-dnsapi" add x y 2>"$W/err"
eq "a dnsapi script that is not installed: exit 2" 2 "$?"
contains "... naming the package to install" "opkg install acme-acmesh-dnsapi" "$(cat "$W/err")"
env -i PATH="$W/bin:/usr/bin:/bin" GATECERT_DNSAPI_DIR="$W/dnsapi" 'GATECERT_DNSAPI=dns_x;reboot' \
  sh "$F/gatecert.acmesh-dnsapi" add x y 2>/dev/null
eq "a bad dnsapi name: exit 2" 2 "$?"

# uci-defaults: the /www link to acme-common's challenge dir and the LAN subnet in allow_ip.
mkdir -p "$W/www" "$W/state"
cat > "$W/bin/uci" <<'UCI'
#!/bin/sh
[ "$1" = -q ] && shift
case "$1 $2" in
"get gatecert.main") echo gatecert ;;
"get gatecert.main.state_dir") echo "$STATE" ;;
"get gatecert.local") echo ca ;;
"get gatecert.local.allow_ip") exit 1 ;;
"get network.lan.ipaddr") echo 192.168.7.1 ;;
"get network.lan.netmask") echo 255.255.255.0 ;;
*) echo "uci $*" >> "$UCILOG" ;;
esac
UCI
cat > "$W/bin/ipcalc.sh" <<'IPC'
#!/bin/sh
[ "$1 $2" = "192.168.7.1 255.255.255.0" ] && echo "NETWORK=192.168.7.0; PREFIX=24"
IPC
chmod +x "$W/bin/uci" "$W/bin/ipcalc.sh"
UCILOG=$W/uci.log
env -i PATH="$W/bin:/usr/bin:/bin" STATE="$W/state" UCILOG="$UCILOG" GATECERT_WWW="$W/www" \
  GATECERT_IPCALC="$W/bin/ipcalc.sh" sh "$F/gatecert.uci-defaults"
eq "uci-defaults links /www/.well-known/acme-challenge to acme-common's dir" \
  "/var/run/acme/challenge/.well-known/acme-challenge" "$(readlink "$W/www/.well-known/acme-challenge")"
eq "uci-defaults allows the LAN subnet" \
  "uci add_list gatecert.local.allow_ip=192.168.7.0/24|uci commit gatecert" "$(paste -sd'|' "$UCILOG")"
eq "state dir owner-only" 700 "$(stat -c %a "$W/state")"
done_testing
