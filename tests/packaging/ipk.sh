#!/usr/bin/env bash
# tests/packaging/ipk.sh - builds an .ipk with cross/build-ipk.sh and checks its container,
# control fields and contents against OpenWrt's ipkg-build layout.
# Uses the real cross binary when target/cross/out/TARGET/gatecert exists, else a stand-in
# file (fast, no cross toolchain needed).
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

T=${IPK_TARGET:-mipsel-unknown-linux-musl}
case $T in
  mipsel-*) ARCH=mipsel_24kc ;; mips-*) ARCH=mips_24kc ;;
  armv7-*) ARCH=arm_cortex-a7_neon-vfpv4 ;; aarch64-*) ARCH=aarch64_cortex-a53 ;;
  *) echo "not ok - unknown IPK_TARGET $T"; exit 1 ;;
esac
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
BIN=$REPO/target/cross/out/$T/gatecert
if [ ! -f "$BIN" ]; then
  BIN=$W/gatecert-standin
  printf '#!/bin/sh\necho gatecert stand-in\n' > "$BIN"
  echo "# no cross binary for $T; using a stand-in"
fi
IPK=$(GATECERT_BIN=$BIN "$REPO/cross/build-ipk.sh" "$T" "$W/out") || { echo "not ok - build-ipk.sh failed"; exit 1; }
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)-r1

eq "file name" "gatecert_${VERSION}_${ARCH}.ipk" "$(basename "$IPK")"
ok "outer container is gzip" gzip -t "$IPK"
eq "outer members, in ipkg-build order" "./debian-binary ./data.tar.gz ./control.tar.gz" \
  "$(tar tzf "$IPK" | tr '\n' ' ' | sed 's/ $//')"
mkdir -p "$W/x/control" "$W/x/data"
tar xzf "$IPK" -C "$W/x"
eq "debian-binary is 2.0" "$(printf '2.0\nX')" "$(cat "$W/x/debian-binary"; printf X)"
tar xzf "$W/x/control.tar.gz" -C "$W/x/control"
tar xzf "$W/x/data.tar.gz" -C "$W/x/data"
CTRL=$(cat "$W/x/control/control")
field() { sed -n "s/^$1: //p" "$W/x/control/control"; }
eq "Package" gatecert "$(field Package)"
eq "Version" "$VERSION" "$(field Version)"
eq "Architecture" "$ARCH" "$(field Architecture)"
contains "Depends has ca-bundle" ca-bundle "$(field Depends)"
eq "License" Apache-2.0 "$(field License)"
eq "Section" net "$(field Section)"
contains "Source" "net/gatecert" "$(field Source)"
ok "Description present" grep -q '^Description: ' "$W/x/control/control"
eq "Installed-Size is the size of data.tar" "$(zcat "$W/x/data.tar.gz" | wc -c)" "$(field Installed-Size)"
eq "no field is empty" "" "$(echo "$CTRL" | grep -E '^[A-Za-z-]+:[[:space:]]*$' || true)"
eq "conffiles" "/etc/config/gatecert" "$(cat "$W/x/control/conffiles")"
ok "postinst runs default_postinst" grep -q default_postinst "$W/x/control/postinst"
ok "prerm runs default_prerm" grep -q default_prerm "$W/x/control/prerm"

for f in usr/bin/gatecert etc/config/gatecert etc/init.d/gatecert etc/hotplug.d/ntp/25-gatecert \
         etc/uci-defaults/90-gatecert usr/lib/gatecert/deploy-hook usr/lib/gatecert/fw4-port \
         usr/lib/gatecert/acmesh-dnsapi etc/capabilities/gatecert.json lib/upgrade/keep.d/gatecert; do
  ok "data has /$f" test -f "$W/x/data/$f"
done
# The SDK Makefile and build-ipk.sh must install the same files.
mk=$(grep -E '^\s+\$\(INSTALL_(BIN|CONF|DATA)\)' "$REPO/openwrt/gatecert/Makefile" | awk '{print $NF}' |
  sed -e 's|^\$(1)||' -e 's|^/usr/bin/$|/usr/bin/gatecert|' | sort)
data=$(cd "$W/x/data" && find . -type f | sed 's|^\.||' | grep -v '^/lib/upgrade/keep.d/' | sort)
eq "Makefile installs the same files as build-ipk.sh" "$mk" "$data"
eq "Makefile conffiles match" "/etc/config/gatecert /etc/gatecert/" \
  "$(sed -n '/^define Package\/gatecert\/conffiles/,/^endef/p' "$REPO/openwrt/gatecert/Makefile" | sed '1d;$d' | paste -sd' ')"
ok "Makefile uses RustBinPackage" grep -qx '$(eval $(call RustBinPackage,gatecert))' "$REPO/openwrt/gatecert/Makefile"
ok "Makefile depends on RUST_ARCH_DEPENDS and ca-bundle" grep -q 'DEPENDS:=$(RUST_ARCH_DEPENDS) +ca-bundle' "$REPO/openwrt/gatecert/Makefile"
ok "binary is the one given" cmp -s "$BIN" "$W/x/data/usr/bin/gatecert"
eq "binary mode" 755 "$(stat -c %a "$W/x/data/usr/bin/gatecert")"
eq "init script mode" 755 "$(stat -c %a "$W/x/data/etc/init.d/gatecert")"
eq "config mode (INSTALL_CONF)" 600 "$(stat -c %a "$W/x/data/etc/config/gatecert")"
eq "keep.d carries the state dir" "/etc/gatecert/" "$(cat "$W/x/data/lib/upgrade/keep.d/gatecert")"
eq "data owned by root" "" "$(tar tzvf "$W/x/data.tar.gz" | awk '$2 != "0/0"')"
eq "no CONTROL dir in data" "" "$(tar tzf "$W/x/data.tar.gz" | grep CONTROL || true)"
# Same input -> same bytes (reproducible, like ipkg-build with SOURCE_DATE_EPOCH).
IPK2=$(GATECERT_BIN=$BIN "$REPO/cross/build-ipk.sh" "$T" "$W/out2")
ok "reproducible" cmp -s "$IPK" "$IPK2"
if [ "$BIN" = "$REPO/target/cross/out/$T/gatecert" ] && command -v file >/dev/null; then
  contains "real binary is static" "statically linked" "$(file -b "$W/x/data/usr/bin/gatecert")"
fi
done_testing
