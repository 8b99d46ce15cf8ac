#!/usr/bin/env bash
# tests/packaging/feed-makefile.sh - openwrt/gatecert/Makefile has the fields the packages feed
# expects of a Rust package (codeload tarball + PKG_HASH, maintainer, licences, rust/host), and,
# evaluated by GNU make against a stand-in for lang/rust's rust-package.mk and rust-values.mk
# with their real variable structure, cargo runs with panic=abort although rust-values.mk passes
# panic=unwind (checked the way the shell sees the command line: the last assignment wins).
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

MK=$REPO/openwrt/gatecert/Makefile
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
field() { sed -n "s/^$1:=//p" "$MK"; }

eq "PKG_SOURCE" '$(PKG_NAME)-$(PKG_VERSION).tar.gz' "$(field PKG_SOURCE)"
eq "PKG_SOURCE_URL is the codeload tarball of the tag" \
  'https://codeload.github.com/gatecert/gatecert/tar.gz/v$(PKG_VERSION)?' "$(field PKG_SOURCE_URL)"
ok "PKG_HASH is a SHA-256 (64 hex digits), not skip" grep -qE '^PKG_HASH:=[0-9a-f]{64}$' "$MK"
eq "no git source fields (PKG_SOURCE_PROTO, PKG_SOURCE_VERSION, PKG_MIRROR_HASH)" "" \
  "$(grep -E '^PKG_(SOURCE_PROTO|SOURCE_VERSION|MIRROR_HASH)' "$MK")"
ok "PKG_MAINTAINER is 'Name <email>'" grep -qE '^PKG_MAINTAINER:=[^<>]+ <[^<>@ ]+@[^<>@ ]+\.[a-z]+>$' "$MK"
eq "PKG_BUILD_DEPENDS" rust/host "$(field PKG_BUILD_DEPENDS)"
eq "PKG_BUILD_PARALLEL" 1 "$(field PKG_BUILD_PARALLEL)"
eq "RUST_PKG_FEATURES enables pkcs11 (dynamic musl can dlopen a PKCS#11 module)" pkcs11 "$(field RUST_PKG_FEATURES)"
ok "PKG_LICENSE lists more than the project's own licence" grep -qE '^PKG_LICENSE:=Apache-2.0 .+' "$MK"
contains "DEPENDS has +libgcc (dynamic musl: std's unwinder is in libgcc_s)" "+libgcc" "$(grep 'DEPENDS:=' "$MK")"
eq "no 'static' claim (the feed links musl dynamically)" "" "$(grep -inE '(^|[^-a-z])static' "$MK" || true)"

# GNU make evaluation against stand-ins: rules.mk, package.mk and BuildPackage do nothing;
# rust-package.mk and rust-values.mk define CARGO_PKG_VARS as lang/rust does.
mkdir -p "$W/top/include" "$W/feed/lang/rust" "$W/feed/net/gatecert"
: > "$W/top/rules.mk"
cat > "$W/top/include/package.mk" <<'MK'
PKG_INSTALL_DIR:=/install
BuildPackage=
MK
cat > "$W/feed/lang/rust/rust-values.mk" <<'MK'
CARGO_PKG_CONFIG_VARS= \
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
	CARGO_PROFILE_RELEASE_LTO=true \
	CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
	CARGO_PROFILE_RELEASE_PANIC=unwind \
	RUSTFLAGS="-Ctarget-feature=-crt-static"
RUST_ARCH_DEPENDS:=@(mipsel)
MK
cat > "$W/feed/lang/rust/rust-package.mk" <<'MK'
include $(dir $(lastword $(MAKEFILE_LIST)))/rust-values.mk
CARGO_PKG_VARS= \
	$(CARGO_PKG_CONFIG_VARS) \
	CC=cc
RustBinPackage=
MK
cp "$MK" "$W/feed/net/gatecert/Makefile"
cat >> "$W/feed/net/gatecert/Makefile" <<'MK'
print-cargo-env:
	@env -i $(CARGO_PKG_VARS) sh -c 'echo "$$CARGO_PROFILE_RELEASE_PANIC $$CARGO_PROFILE_RELEASE_LTO"'
MK
got=$(cd "$W/feed/net/gatecert" && make -s TOPDIR="$W/top" INCLUDE_DIR="$W/top/include" print-cargo-env 2>&1)
eq "cargo's environment from CARGO_PKG_VARS: panic=abort (and the feed's lto=true kept)" "abort true" "$got"
# Negative: without the Makefile's override the stand-in gives rust-values.mk's unwind.
sed -i '/^CARGO_PKG_VARS += CARGO_PROFILE_RELEASE_PANIC=abort$/d' "$W/feed/net/gatecert/Makefile"
got=$(cd "$W/feed/net/gatecert" && make -s TOPDIR="$W/top" INCLUDE_DIR="$W/top/include" print-cargo-env 2>&1)
eq "without the override: rust-values.mk's unwind" "unwind true" "$got"
done_testing
