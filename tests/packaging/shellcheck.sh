#!/usr/bin/env bash
# tests/packaging/shellcheck.sh - shellcheck -S warning over every shell script the packaging
# ships or runs: cross/, scripts/, init/, tests/packaging/, OpenWrt's files (init script,
# hotplug hook, uci-defaults, deploy hook; they carry `# shellcheck shell=sh`) and the Yocto
# layer's (the sysvinit script).
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

if ! command -v shellcheck >/dev/null 2>&1; then
  echo "not ok - shellcheck is not installed (apt-get install shellcheck)"; exit 1
fi
cd "$REPO" || exit 1
files=$(
  for f in cross/*.sh scripts/*.sh init/*.sh tests/packaging/*.sh tests/peers/oelint-venv.sh; do
    [ -f "$f" ] && echo "$f"
  done
  for f in yocto/meta-gatecert/recipes-*/*/files/*; do
    head -1 "$f" | grep -q '^#!.*sh' && echo "$f"
  done
  for f in openwrt/gatecert/files/*; do
    head -1 "$f" | grep -q '^#!.*sh' && echo "$f"
  done
  echo openwrt/luci-app-gatecert/root/usr/libexec/rpcd/gatecert
  echo tests/packaging/luci/jshn.sh
)
for f in $files; do
  # -x follows `source` directives; paths in them are relative to the repo root.
  ok "shellcheck $f" shellcheck -S warning -x -P SCRIPTDIR -P . "$f"
done
eq "every OpenWrt script declares its shell" "" \
  "$(for f in openwrt/gatecert/files/*; do head -1 "$f" | grep -q '^#!' && ! grep -q '^# shellcheck shell=sh' "$f" && echo "$f"; done)"
done_testing
