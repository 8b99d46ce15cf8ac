#!/usr/bin/env bash
# cross/feed-style.sh - a release build the way the OpenWrt packages feed builds gatecert
# (openwrt/gatecert/Makefile + lang/rust's rust-package.mk and rust-values.mk), to measure its
# size next to the static musl build of cross/build.sh.
#
#   cross/feed-style.sh                       # x86_64-unknown-linux-musl, panic=abort
#   PANIC=unwind cross/feed-style.sh          # what rust-values.mk alone would give
#   STATIC=1 cross/feed-style.sh              # same toolchain and profile, static musl
#   FEATURES= cross/feed-style.sh             # without the Makefile's cargo features
#
# Cargo features: the Makefile's RUST_PKG_FEATURES (pkcs11: cryptoki dlopen()s the module, so
# dynamic builds only), unless FEATURES is set; STATIC=1 builds without features.
#
# What is the same as the feed:
#   - the release profile variables rust-values.mk passes (CARGO_PKG_CONFIG_VARS): codegen-units 1,
#     debug false, debug-assertions false, lto true, opt-level z, overflow-checks true, rpath false,
#     panic unwind; then the Makefile's own CARGO_PKG_VARS += CARGO_PROFILE_RELEASE_PANIC=abort;
#   - RUSTFLAGS=-Ctarget-feature=-crt-static: musl linked dynamically (NEEDED libc.so), and
#     std's unwinder from libgcc_s.so.1 (OpenWrt's libgcc package, in every default image).
#     Debian has no musl libgcc_s, so the link resolves the _Unwind_* symbols against Debian's
#     (glibc) libgcc_s.so.1 and does not check that library's own symbols: the binary comes out
#     as the feed's does, but it can't run here (no musl libgcc_s), so the dynamic variant is
#     measured, not run; the static one (STATIC=1) is run;
#   - a prebuilt target std (the feed's rust/host builds std once for the target, not per
#     package), cargo --locked;
#   - the install step: strip (Cargo.toml's strip = true) and the Makefile's objcopy of
#     .eh_frame/.eh_frame_hdr.
# What differs: the target. The feed builds for the router's triple with OpenWrt's toolchain;
# this script builds for the host's own musl triple with rustup's std and Debian's musl-gcc, so it
# needs no SDK. The difference between the variants (dynamic vs static, abort vs unwind) is what
# it measures; cross/build.sh gives the absolute mipsel/armv7 figures.
#
# Needs: rustup (its `target add` fetches the prebuilt std), musl-tools (apt). Output:
# target/cross/feed/<variant>/gatecert (installed as the Makefile installs it) and one line:
#   feed-style TARGET dynamic|static panic=P: N bytes (gzip -9: M)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
T=${1:-x86_64-unknown-linux-musl}
PANIC=${PANIC:-abort}
STATIC=${STATIC:-0}
# ${FEATURES-...}: an explicitly empty FEATURES means none.
if [ "$STATIC" = 1 ]; then FEATURES=${FEATURES-}; else
  FEATURES=${FEATURES-$(sed -n 's/^RUST_PKG_FEATURES *:*= *//p' "$REPO/openwrt/gatecert/Makefile")}
fi
case $PANIC in abort|unwind) ;; *) echo "PANIC must be abort or unwind (got '$PANIC')" >&2; exit 2 ;; esac
case $T in
  x86_64-unknown-linux-musl) LINKER=musl-gcc ;;
  *) echo "feed-style.sh builds for the host's musl triple only (x86_64-unknown-linux-musl); got '$T'" >&2; exit 2 ;;
esac
command -v rustup >/dev/null || { echo "needs rustup (for the prebuilt $T std)" >&2; exit 2; }
command -v "$LINKER" >/dev/null || { echo "needs $LINKER (apt-get install musl-tools)" >&2; exit 2; }
rustup target list --installed | grep -qx "$T" || rustup target add "$T" >&2

link=dynamic crt=-crt-static
linkvar=("CARGO_TARGET_$(echo "$T" | tr 'a-z-' 'A-Z_')_LINKER=$LINKER")
# Static: rustc's own self-contained musl (crt objects, libc.a, libunwind.a from the target's
# std), as cross/build.sh's static builds link; musl-gcc's specs can't make a static-pie.
[ "$STATIC" = 1 ] && { link=static; crt=+crt-static; linkvar=(); }
if [ "$STATIC" = 1 ] && [[ ",${FEATURES// /,}," == *,pkcs11,* ]]; then
  echo "the pkcs11 feature needs dlopen(3): a dynamic build only (STATIC=0)" >&2; exit 2
fi
V=$link-$PANIC${FEATURES:+-${FEATURES//[, ]/-}}
# libgcc_s to link against (see above).
GS=$REPO/target/cross/feed/libgcc_s
mkdir -p "$GS"
ln -sf "$(gcc -print-file-name=libgcc_s.so.1)" "$GS/libgcc_s.so"
OUT=$REPO/target/cross/feed/$V
mkdir -p "$OUT"
TU=$(echo "$T" | tr 'a-z-' 'A-Z_')
# The environment of Build/Compile/Cargo: rust-values.mk's variables, then the Makefile's.
env CARGO_TARGET_DIR="$REPO/target/cross/feed/cargo-$V" \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
  CARGO_PROFILE_RELEASE_DEBUG=false \
  CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=false \
  CARGO_PROFILE_RELEASE_LTO=true \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
  CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true \
  CARGO_PROFILE_RELEASE_PANIC="$PANIC" \
  CARGO_PROFILE_RELEASE_RPATH=false \
  "${linkvar[@]}" \
  "CARGO_TARGET_${TU}_RUSTFLAGS=-Ctarget-feature=$crt -L$GS -Clink-arg=-Wl,--allow-shlib-undefined" \
  "CC_$(echo "$T" | tr - _)=$LINKER" \
  cargo build --release --locked --target "$T" --manifest-path "$REPO/Cargo.toml" \
  ${FEATURES:+--features "$FEATURES"} >&2
B=$REPO/target/cross/feed/cargo-$V/$T/release/gatecert
# Package/gatecert/install: INSTALL_BIN, then objcopy of the unwind tables.
install -m 0755 "$B" "$OUT/gatecert"
objcopy --remove-section=.eh_frame --remove-section=.eh_frame_hdr "$OUT/gatecert"
interp=$(readelf -l "$OUT/gatecert" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
needed=$(readelf -d "$OUT/gatecert" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | paste -sd' ')
echo "# interpreter: ${interp:-none}; NEEDED: ${needed:-none}" >&2
if [ "$STATIC" = 1 ]; then
  # The static one must run: `gatecert --version`.
  ver=$("$OUT/gatecert" --version 2>&1) || { echo "the static feed-style binary does not run: $ver" >&2; exit 1; }
  echo "# runs: $ver" >&2
fi
printf 'feed-style %s %s panic=%s%s: %s bytes (gzip -9: %s)\n' "$T" "$link" "$PANIC" \
  "${FEATURES:+ features=$FEATURES}" \
  "$(stat -c %s "$OUT/gatecert")" "$(gzip -9c "$OUT/gatecert" | wc -c)"
