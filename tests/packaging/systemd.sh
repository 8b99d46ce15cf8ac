#!/usr/bin/env bash
# tests/packaging/systemd.sh - systemd units (systemd-analyze verify when available, hardening
# keys), the systemd config derived from the OpenWrt one, and the per-device cron line.
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

I=$REPO/init
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
UNITS="gatecert.service gatecert-renew.service gatecert-renew.timer"

if command -v systemd-analyze >/dev/null 2>&1; then
  # verify wants ExecStart to exist: point the units at a stub binary.
  printf '#!/bin/sh\n' > "$W/gatecert"; chmod +x "$W/gatecert"
  for u in $UNITS; do sed "s|/usr/bin/gatecert|$W/gatecert|" "$I/$u" > "$W/$u"; done
  out=$(cd "$W" && systemd-analyze verify --man=no ./gatecert.service ./gatecert-renew.service ./gatecert-renew.timer 2>&1)
  rc=$?
  eq "systemd-analyze verify: exit 0" 0 "$rc"
  eq "systemd-analyze verify: no warnings" "" "$out"
else
  echo "# systemd-analyze not installed; skipping verify"
fi

S=$(cat "$I/gatecert.service")
for kv in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
  StateDirectory=gatecert StateDirectoryMode=0700 AmbientCapabilities=CAP_NET_BIND_SERVICE \
  CapabilityBoundingSet=CAP_NET_BIND_SERVICE "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" \
  SystemCallFilter=@system-service 'ExecReload=/bin/kill -HUP $MAINPID' Restart=on-failure \
  "ExecStart=/usr/bin/gatecert --config /etc/gatecert/gatecert.conf run"; do
  ok "gatecert.service: $kv" grep -qxF "$kv" <(echo "$S")
done
eq "only one capability in the bounding set" 1 "$(grep -c '^CapabilityBoundingSet=' "$I/gatecert.service")"
R=$(cat "$I/gatecert-renew.service")
ok "renew service is oneshot" grep -qx 'Type=oneshot' <(echo "$R")
ok "renew: 'nothing due' (1) is success" grep -qx 'SuccessExitStatus=1' <(echo "$R")
ok "renew service runs renew" grep -q '^ExecStart=.* renew$' <(echo "$R")
eq "renew service has the same hardening" \
  "$(grep -E '^(No|Protect|Private|Restrict|Capab|Ambient|SystemCall|State)' "$I/gatecert.service" | sort)" \
  "$(grep -E '^(No|Protect|Private|Restrict|Capab|Ambient|SystemCall|State)' "$I/gatecert-renew.service" | sort)"
T=$(cat "$I/gatecert-renew.timer")
ok "timer: RandomizedDelaySec" grep -q '^RandomizedDelaySec=' <(echo "$T")
ok "timer: Persistent" grep -qx 'Persistent=true' <(echo "$T")

# init/gatecert.conf is generated from the OpenWrt default.
eq "init/gatecert.conf is up to date (scripts/gen-systemd-conf.sh)" \
  "$("$REPO/scripts/gen-systemd-conf.sh")" "$(cat "$I/gatecert.conf")"
ok "systemd config keeps state in /var/lib/gatecert" grep -q "^	option state_dir '/var/lib/gatecert'" "$I/gatecert.conf"

# cron: per-device minute, stable, in range.
C=$I/gatecert-cron.sh
a1=$(GATECERT_MACHINE_ID=0123456789abcdef0123456789abcdef sh "$C")
a2=$(GATECERT_MACHINE_ID=0123456789abcdef0123456789abcdef sh "$C")
eq "cron line is stable for one device" "$a1" "$a2"
ok "cron line shape (cron.d, with user)" grep -qE '^[0-9]+ [0-9]+,[0-9]+ \* \* \* root /usr/bin/gatecert .* renew' <(echo "$a1")
distinct=$(for i in $(seq 1 40); do GATECERT_MACHINE_ID="device-$i" sh "$C" | cut -d' ' -f1; done | sort -u | wc -l)
ok "40 devices spread over many minutes (got $distinct distinct)" test "$distinct" -ge 15
bad=$(for i in $(seq 1 40); do GATECERT_MACHINE_ID="d$i" sh "$C"; done | awk '{split($2,h,","); if ($1<0||$1>59||h[1]<0||h[1]>11||h[2]!=h[1]+12) print}')
eq "minutes 0-59, hours H and H+12 with H 0-11" "" "$bad"
ct=$(GATECERT_MACHINE_ID=x sh "$C" --crontab)
ok "crontab style has no user field" grep -qE '^[0-9]+ [0-9,]+ \* \* \* /usr/bin/gatecert ' <(echo "$ct")
GATECERT_MACHINE_ID=x sh "$C" --crontab "$W/root"; GATECERT_MACHINE_ID=x sh "$C" --crontab "$W/root"
eq "crontab append is idempotent" 1 "$(wc -l < "$W/root")"
GATECERT_MACHINE_ID=x sh "$C" "$W/cron.d-gatecert"
eq "cron.d file ends with the line" "$(GATECERT_MACHINE_ID=x sh "$C")" "$(tail -1 "$W/cron.d-gatecert")"
eq "cron.d file mode" 644 "$(stat -c %a "$W/cron.d-gatecert")"
done_testing
