#!/bin/sh
# scripts/gen-systemd-conf.sh - derive init/gatecert.conf (systemd, Yocto, Debian) from the
# OpenWrt default config, so the option list has one source. The only differences: the path
# in the header and state_dir, which is /var/lib/gatecert (systemd's StateDirectory) there, and
# the OpenWrt-only lines left out: main's `enabled`, `firewall_hook` and `webroot` (procd init
# script, fw4, uhttpd)
# and est's `interface` (resolved by the procd init script).
#   scripts/gen-systemd-conf.sh > init/gatecert.conf
# tests/packaging/systemd.sh fails when the committed file is out of date.
set -eu
src=$(dirname "$0")/../openwrt/gatecert/files/gatecert.config
sed -e '1s|^# /etc/config/gatecert - |# /etc/gatecert/gatecert.conf - |' \
    -e "s|^# After editing: /etc/init.d/gatecert reload.*|# After editing: systemctl reload gatecert|" \
    -e "s|^\t# option state_dir '/etc/gatecert'\t|\toption state_dir '/var/lib/gatecert'\t|" \
    -e "/^\toption enabled '1'\t/d" \
    -e "/^\t# Opens the challenge port in fw4/d" \
    -e "/^\toption firewall_hook /d" \
    -e "/^\t# http-01 beside LuCI/,/^\toption webroot /d" \
    -e "/^\toption interface 'lan'/{N;d;}" \
    "$src"
