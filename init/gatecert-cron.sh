#!/bin/sh
# gatecert-cron.sh - write gatecert's cron line with a per-device random minute.
#
#   gatecert-cron.sh [--crontab] [--config FILE] [OUTPUT]
#
# The minute (0-59) and the first hour (0-11, second run 12 h later) come from a hash of
# /etc/machine-id (or the host name when there is none), so they stay the same on one device
# and spread a fleet over the day, not all at :00. Default: print the /etc/cron.d line.
# --crontab writes the line without the user field (OpenWrt's /etc/crontabs/root).
# --config FILE: the config the line passes to gatecert (default /etc/gatecert/gatecert.conf;
# OpenWrt's is /etc/config/gatecert).
# OUTPUT: a file to write (cron.d style) or to append to once (crontab style).
# Env: GATECERT_MACHINE_ID overrides the seed (tests); TEMPLATE the cron.d template.
set -eu

TEMPLATE=${TEMPLATE:-$(dirname "$0")/gatecert.cron}
mode=crond
conf=
while [ $# -gt 0 ]; do
	case $1 in
		--crontab) mode="crontab"; shift ;;
		--config) [ $# -ge 2 ] || { echo "gatecert-cron.sh: --config needs a file" >&2; exit 2; }
			conf=$2; shift 2 ;;
		*) break ;;
	esac
done
out=${1:-}

seed=${GATECERT_MACHINE_ID:-}
[ -n "$seed" ] || seed=$(cat /etc/machine-id 2>/dev/null || true)
[ -n "$seed" ] || seed=$(cat /proc/sys/kernel/hostname 2>/dev/null || hostname)
if command -v md5sum >/dev/null 2>&1; then
	h=$(printf '%s' "$seed" | md5sum | cut -c1-6)
	n=$((0x$h))
else
	n=$(printf '%s' "$seed" | cksum | cut -d' ' -f1)
fi
minute=$((n % 60))
hour=$((n / 60 % 12))
hours="$hour,$((hour + 12))"

line=$(grep -v '^#' "$TEMPLATE" | sed -e "s/@MINUTE@/$minute/" -e "s/@HOURS@/$hours/")
if [ -n "$conf" ]; then
	case $conf in *[!A-Za-z0-9_./-]*) echo "gatecert-cron.sh: unsafe --config path '$conf'" >&2; exit 2 ;; esac
	line=$(printf '%s\n' "$line" | sed "s|--config [^ ]*|--config $conf|")
fi
if [ "$mode" = crontab ]; then
	# crontab(5) lines have no user field
	line=$(printf '%s\n' "$line" | sed 's/^\([^ ]* [^ ]* [^ ]* [^ ]* [^ ]*\) root /\1 /')
fi

if [ -z "$out" ]; then
	printf '%s\n' "$line"
elif [ "$mode" = crontab ]; then
	touch "$out"
	grep -q '/usr/bin/gatecert .* renew' "$out" || printf '%s\n' "$line" >> "$out"
else
	{ grep '^#' "$TEMPLATE"; printf '%s\n' "$line"; } > "$out.tmp" && chmod 0644 "$out.tmp" && mv "$out.tmp" "$out"
fi
