#!/usr/bin/env bash
# cross/build-ipk.sh - package a cross-built gatecert as an OpenWrt .ipk (opkg, OpenWrt <= 24.10).
#
#   cross/build-ipk.sh TARGET [OUTDIR]
#   GATECERT_BIN=path/to/binary cross/build-ipk.sh TARGET     # package another binary (tests)
#
# TARGET is a Rust target (mipsel-unknown-linux-musl, ...); the OpenWrt architecture follows from
# it (mipsel_24kc, ...; override with OPENWRT_ARCH). The binary defaults to
# target/cross/out/TARGET/gatecert from cross/build.sh.
#
# The layout follows OpenWrt's scripts/ipkg-build and include/package-pack.mk: the .ipk is a
# gzipped *tar* (not an ar archive) holding ./debian-binary ("2.0"), ./data.tar.gz and
# ./control.tar.gz, each tar in GNU format, numeric owners, sorted names, one mtime; gzip -n.
# Installed-Size is the uncompressed size of data.tar; conffiles keeps only real files, and
# conffiles that are directories go to /lib/upgrade/keep.d/gatecert as package-pack.mk does.
# Owners are forced to 0:0 (ipkg-build gets that from fakeroot).
set -euo pipefail
# shellcheck source=cross/env.sh
. "$(dirname "$0")/env.sh"

T=${1:?usage: build-ipk.sh TARGET [OUTDIR]}
OUT=${2:-$CROSS_ROOT/ipk}
ARCH=${OPENWRT_ARCH:-$(openwrt_arch "$T")}
BIN=${GATECERT_BIN:-$CROSS_ROOT/out/$T/gatecert}
PKG_RELEASE=${PKG_RELEASE:-1}
FILES=$REPO/openwrt/gatecert/files
[ -f "$BIN" ] || { echo "build-ipk: no binary at $BIN (run cross/build.sh $T, or set GATECERT_BIN)" >&2; exit 1; }

PKG_VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)
VERSION=$PKG_VERSION-r$PKG_RELEASE
# Reproducible: the commit time when in git, else now (ipkg-build honours SOURCE_DATE_EPOCH too).
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}
TIMESTAMP=$(date -u --date="@$SOURCE_DATE_EPOCH")

W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
P=$W/pkg; C=$P/CONTROL
install -d -m 0755 "$P/usr/bin" "$P/etc/config" "$P/etc/init.d" "$P/etc/hotplug.d/ntp" \
  "$P/etc/uci-defaults" "$P/usr/lib/gatecert" "$P/etc/capabilities" "$P/lib/upgrade/keep.d" "$C"
# Same modes as the Makefile's INSTALL_BIN (0755), INSTALL_CONF (0600), INSTALL_DATA (0644).
install -m 0755 "$BIN" "$P/usr/bin/gatecert"
install -m 0600 "$FILES/gatecert.config" "$P/etc/config/gatecert"
install -m 0755 "$FILES/gatecert.init" "$P/etc/init.d/gatecert"
install -m 0644 "$FILES/gatecert.ntp-hotplug" "$P/etc/hotplug.d/ntp/25-gatecert"
install -m 0755 "$FILES/gatecert.uci-defaults" "$P/etc/uci-defaults/90-gatecert"
install -m 0755 "$FILES/gatecert.deploy-hook" "$P/usr/lib/gatecert/deploy-hook"
install -m 0755 "$FILES/gatecert.fw4-port" "$P/usr/lib/gatecert/fw4-port"
install -m 0755 "$FILES/gatecert.acmesh-dnsapi" "$P/usr/lib/gatecert/acmesh-dnsapi"
install -m 0644 "$FILES/gatecert.capabilities" "$P/etc/capabilities/gatecert.json"
# conffiles as in the Makefile; the state directory is not a file, so keep.d carries it.
CONFFILES="/etc/config/gatecert /etc/gatecert/"
for f in $CONFFILES; do
  if [ -f "$P$f" ]; then echo "$f" >> "$C/conffiles"; else echo "$f" >> "$P/lib/upgrade/keep.d/gatecert"; fi
done
chmod 0644 "$C/conffiles" "$P/lib/upgrade/keep.d/gatecert"

cat > "$C/control" <<CTRL
Package: gatecert
Version: $VERSION
Depends: libc, ca-bundle
Source: feeds/packages/net/gatecert
SourceName: gatecert
License: Apache-2.0
LicenseFiles: LICENSE
Section: net
URL: https://github.com/gatecert/gatecert
Architecture: $ARCH
Installed-Size: 0
Description:  gatecert keeps the gateway's TLS certificates valid over ACME (RFC 8555:
 http-01, tls-alpn-01, dns-01, EAB, ARI) and runs a small issuing CA that
 enrolls leaf sensors over EST (RFC 7030). One static binary, no OpenSSL.
CTRL
chmod 0644 "$C/control"
# The maintainer scripts package-pack.mk generates for every package (enable + start the init
# script, run uci-defaults; stop + disable on removal).
cat > "$C/postinst" <<'SH'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_postinst $0 $@
SH
cat > "$C/prerm" <<'SH'
#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_prerm $0 $@
SH
chmod 0755 "$C/postinst" "$C/prerm"

TAR=(tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name --mtime="$TIMESTAMP")
mkdir -p "$W/ipk"
(cd "$P" && "${TAR[@]}" --exclude=./CONTROL -cpf - . | gzip -n > "$W/ipk/data.tar.gz")
installed_size=$(zcat < "$W/ipk/data.tar.gz" | wc -c)
sed -i -e "s/^Installed-Size: .*/Installed-Size: $installed_size/" "$C/control"
(cd "$C" && "${TAR[@]}" -cf - . | gzip -n > "$W/ipk/control.tar.gz")
echo "2.0" > "$W/ipk/debian-binary"

mkdir -p "$OUT"
IPK=$OUT/gatecert_${VERSION}_${ARCH}.ipk
rm -f "$IPK"
(cd "$W/ipk" && "${TAR[@]}" -cf - ./debian-binary ./data.tar.gz ./control.tar.gz | gzip -n > "$IPK")
echo "$IPK"
