# shellcheck shell=bash
# shellcheck disable=SC2034 # variables are used by the scripts that source this file
# cross/env.sh - shared settings for cross/build.sh, cross/test.sh and cross/sizes.sh.
# Sourced, not run. Everything lives under $CROSS_ROOT (default <repo>/target/cross), so
# `cargo clean` or `rm -rf target/cross` starts from scratch.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CROSS_ROOT=${CROSS_ROOT:-$REPO/target/cross}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CROSS_ROOT/cargo}
LOG=$CROSS_ROOT/logs
mkdir -p "$LOG"

# The four targets gatecert ships for; all static musl.
ALL_TARGETS="mipsel-unknown-linux-musl mips-unknown-linux-musl armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl"

# Debian's musl source (for the soft-float 32-bit MIPS build) and musl-dev:<arch> for ARM.
MUSL_DEB_VERSION=${MUSL_DEB_VERSION:-1.2.3-1}
MUSL_VERSION=${MUSL_DEB_VERSION%%-*}

export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc   # Debian's, not rustup's proxies (first in PATH)
export RUSTC_BOOTSTRAP=1                               # -Zbuild-std on a stable toolchain
CARGO=/usr/bin/cargo                                   # Debian cargo-web

# tinfo TARGET -> "gnu-gcc-prefix qemu musl-gcc-wrapper debian-arch"
# debian-arch is the dpkg arch whose musl-dev we use, or "-" when musl is built from source.
tinfo() {
  case $1 in
    armv7-unknown-linux-musleabihf) echo "arm-linux-gnueabihf qemu-arm-static /usr/bin/arm-linux-musleabihf-gcc armhf" ;;
    aarch64-unknown-linux-musl)     echo "aarch64-linux-gnu qemu-aarch64-static /usr/bin/aarch64-linux-musl-gcc arm64" ;;
    # Rust's 32-bit MIPS musl targets are soft-float; Debian's musl-dev:mipsel is hard-float
    # and Debian has no 'mips' arch, so both use a musl built from source with -msoft-float.
    mipsel-unknown-linux-musl)      echo "mipsel-linux-gnu qemu-mipsel-static $CROSS_ROOT/musl/mipsel/bin/mipsel-linux-musl-gcc -" ;;
    mips-unknown-linux-musl)        echo "mips-linux-gnu qemu-mips-static $CROSS_ROOT/musl/mips/bin/mips-linux-musl-gcc -" ;;
    # The host itself, static musl: runs natively; for measuring RSS as a router would see it.
    x86_64-unknown-linux-musl)      echo "x86_64-linux-gnu - /usr/bin/musl-gcc native" ;;
    *) echo "unknown target $1 (known: $ALL_TARGETS)" >&2; return 1 ;;
  esac
}

# OpenWrt package architecture for a Rust target (the common SoC of each family).
openwrt_arch() {
  case $1 in
    mipsel-unknown-linux-musl)      echo mipsel_24kc ;;
    mips-unknown-linux-musl)        echo mips_24kc ;;
    armv7-unknown-linux-musleabihf) echo arm_cortex-a7_neon-vfpv4 ;;
    aarch64-unknown-linux-musl)     echo aarch64_cortex-a53 ;;
    *) echo "no OpenWrt arch for $1" >&2; return 1 ;;
  esac
}

# cargo_env TARGET: exports linker, rustflags, runner and cc-rs settings for TARGET.
cargo_env() {
  local t=$1 pfx qemu mcc tu tl
  read -r pfx qemu mcc _ <<<"$(tinfo "$t")"
  tu=$(echo "$t" | tr 'a-z-' 'A-Z_'); tl=$(echo "$t" | tr - _)
  export "CC_$tl=$mcc" "AR_$tl=$pfx-ar"                  # ring's C code via cc-rs
  export "CARGO_TARGET_${tu}_LINKER=$mcc"
  # Static musl: the gcc wrapper supplies crt files and libc.a; libunwind.a is ours (shim).
  # -z norelro: static musl never mprotect()s PT_GNU_RELRO (only its dynamic linker does), and
  # aligning the RELRO end to the page (64 KiB on MIPS) costs up to 64 KiB of file padding.
  export "CARGO_TARGET_${tu}_RUSTFLAGS=-C target-feature=+crt-static -C link-self-contained=no -L $CROSS_ROOT/unwind/$t -C link-arg=-Wl,-u,__musl_unwind_shim -C link-arg=-Wl,-z,norelro"
  mkdir -p "$CROSS_ROOT/empty-sysroot"
  # An empty QEMU_LD_PREFIX: no target libc present, so the binary must truly be static.
  export QEMU_LD_PREFIX=$CROSS_ROOT/empty-sysroot
  if [ "$qemu" != - ]; then export "CARGO_TARGET_${tu}_RUNNER=$qemu"; fi
}

# build_std_flags: -Zbuild-std, plus optimize_for_size when this std knows the feature.
build_std_flags() {
  local f="-Zbuild-std=std,panic_abort"
  if grep -qs '^optimize_for_size' /usr/lib/rustlib/src/rust/library/std/Cargo.toml; then
    f="$f -Zbuild-std-features=optimize_for_size"
  fi
  echo "$f"
}

timer_start() { T0=$(date +%s); }
timer_end() { echo "TIME $1 $(( $(date +%s) - T0 ))s" | tee -a "$LOG/times.txt"; }
