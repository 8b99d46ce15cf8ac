#!/usr/bin/env bash
# cross/build.sh - static musl release builds of gatecert for MIPS and ARM routers.
#
#   cross/build.sh                              # all four targets
#   cross/build.sh mipsel-unknown-linux-musl armv7-unknown-linux-musleabihf
#   STEPS="build" cross/build.sh TARGET         # skip apt/musl/shim (each is idempotent anyway)
#
# Toolchain: Debian's rustc-web/cargo-web (bookworm-security, 1.96) + rust-web-src (std's
# source) with RUSTC_BOOTSTRAP=1 cargo -Zbuild-std; Debian cross gcc; musl-dev:<arch> for ARM
# and a soft-float musl built from Debian's musl source for 32-bit MIPS; libgcc_eh.a plus a small
# shim as libunwind.a. No rustup targets and no network beyond apt.
#
# Output: target/cross/out/TARGET/gatecert (stripped). The unstripped binary stays at
# target/cross/cargo/TARGET/release/gatecert for cross/sizes.sh and `nm --size-sort`.
# Run as root (apt). Logs and timings: target/cross/logs/.
set -euo pipefail
# shellcheck source=cross/env.sh
. "$(dirname "$0")/env.sh"

STEPS=${STEPS:-"apt musl shim build"}
TARGETS=${*:-$ALL_TARGETS}
RUST_DEB_VERSION=${RUST_DEB_VERSION:-}   # default: apt's candidate
export DEBIAN_FRONTEND=noninteractive
APT="apt-get -o DPkg::Lock::Timeout=600 -q"
has() { [[ " $STEPS " == *" $1 "* ]]; }
for t in $TARGETS; do tinfo "$t" >/dev/null; done

# ---------------------------------------------------------------- 1. apt (idempotent)
# Prints the packages (pkg or pkg=version) that are not installed yet.
missing() {
  local p name want have
  for p in "$@"; do
    name=${p%%=*}; want=${p#*=}; [ "$want" = "$p" ] && want=
    have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
    case $have in
      "install ok installed "*) [ -z "$want" ] || [ "${have##* }" = "$want" ] || echo "$p" ;;
      *) echo "$p" ;;
    esac
  done
}

if has apt; then
  timer_start
  V=${RUST_DEB_VERSION:-$(apt-cache policy rustc-web | awk '/Candidate:/{print $2}')}
  if [ -z "$V" ] || [ "$V" = "(none)" ]; then
    $APT update >"$LOG/apt-update.log" 2>&1 || echo "WARN: apt-get update had errors (see $LOG/apt-update.log)"
    V=$(apt-cache policy rustc-web | awk '/Candidate:/{print $2}')
  fi
  # rustc-web, cargo-web, libstd and rust-web-src must be one version (rust-web-src has no
  # versioned dependency, so all four are pinned).
  PKGS="rustc-web=$V cargo-web=$V libstd-rust-web-dev=$V rust-web-src=$V qemu-user-static musl-tools
        dpkg-dev make xz-utils binutils"
  ARCHES=
  for t in $TARGETS; do
    read -r pfx _ _ arch <<<"$(tinfo "$t")"
    # libc6-dev-*-cross: cross gcc with --no-install-recommends lacks the libc headers
    case $pfx in
      arm-linux-gnueabihf) PKGS="$PKGS gcc-$pfx libc6-dev-armhf-cross" ;;
      aarch64-linux-gnu)   PKGS="$PKGS gcc-$pfx libc6-dev-arm64-cross" ;;
      mipsel-linux-gnu)    PKGS="$PKGS gcc-$pfx libc6-dev-mipsel-cross" ;;
      mips-linux-gnu)      PKGS="$PKGS gcc-$pfx libc6-dev-mips-cross" ;;
    esac
    case $arch in
      -) ;;          # musl built from source below
      native) ;;     # the host's own musl-tools
      *) ARCHES="$ARCHES $arch"; PKGS="$PKGS musl-dev:$arch=$MUSL_DEB_VERSION" ;;
    esac
  done
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  NEED=$(missing $PKGS | sort -u | tr '\n' ' ')
  if [ -n "${NEED// /}" ]; then
    echo "apt: installing $NEED"
    for a in $ARCHES; do
      dpkg --print-foreign-architectures | grep -qx "$a" || dpkg --add-architecture "$a"
    done
    # A foreign-arch index can be mid-sync on the mirror; apt then keeps the old list.
    $APT update >"$LOG/apt-update.log" 2>&1 || echo "WARN: apt-get update had errors (see $LOG/apt-update.log)"
    # shellcheck disable=SC2086
    $APT install -y --no-install-recommends $NEED >"$LOG/apt-install.log" 2>&1 \
      || { tail -20 "$LOG/apt-install.log"; exit 1; }
  fi
  timer_end apt
fi
RV=$($RUSTC -V 2>/dev/null | awk '{print $2}')
[ -d /usr/lib/rustlib/src/rust/library ] || RV=
case $RV in 1.8[89]*|1.9*|1.1[0-9][0-9]*) ;;
  *) echo "need Debian rustc-web >= 1.88 and rust-web-src (got '$RV'); run with STEPS=apt" >&2; exit 1 ;;
esac
echo "toolchain: $($RUSTC -V), $($CARGO -V)"

# ---------------------------------------------------------------- 2. soft-float musl (mips, mipsel)
if has musl; then
  for t in $TARGETS; do
    read -r pfx _ mcc arch <<<"$(tinfo "$t")"
    [ "$arch" = - ] || continue
    a=${pfx%%-*}; P=$CROSS_ROOT/musl/$a
    if [ ! -f "$P/lib/libc.a" ]; then
      timer_start
      S=$CROSS_ROOT/src
      mkdir -p "$S"
      if [ ! -d "$S/musl-$MUSL_VERSION" ]; then
        if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
          cat > /etc/apt/sources.list.d/gatecert-debian-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
          $APT update >"$LOG/apt-update-src.log" 2>&1 || true
        fi
        (cd "$S" && apt-get source -q --download-only "musl=$MUSL_DEB_VERSION" >"$LOG/musl-src.log" 2>&1 \
          && tar xzf "musl_$MUSL_VERSION.orig.tar.gz")
      fi
      rm -rf "$S/build-$a"; cp -r "$S/musl-$MUSL_VERSION" "$S/build-$a"
      (cd "$S/build-$a" && CC=$pfx-gcc CFLAGS="-Os -msoft-float" \
        ./configure --target="$pfx" --prefix="$P" --disable-shared --enable-wrapper=gcc \
        && make -j"$(nproc)" && make install) >"$LOG/musl-$a.log" 2>&1 \
        || { tail -20 "$LOG/musl-$a.log"; exit 1; }
      timer_end "musl-$a"
    fi
    mkdir -p "$(dirname "$mcc")"
    cat > "$mcc" <<WRAP
#!/bin/sh
exec $pfx-gcc -msoft-float "\$@" -specs "$P/lib/musl-gcc.specs"
WRAP
    chmod +x "$mcc"
  done
fi

# ---------------------------------------------------------------- 3. libunwind.a for musl
# Rust's musl std links -lunwind statically (panics unwind in `cargo test`; RUST_BACKTRACE
# walks the stack). Debian's libgcc_eh.a calls glibc-only _dl_find_object (and, on ARM,
# __gnu_Unwind_Find_exidx); cross/unwind-shim.c implements both on musl's dl_iterate_phdr.
# libunwind.a = libgcc_eh.a + the shim; -Wl,-u,__musl_unwind_shim pulls the shim in.
if has shim; then
  for t in $TARGETS; do
    read -r pfx _ mcc _ <<<"$(tinfo "$t")"
    D=$CROSS_ROOT/unwind/$t; mkdir -p "$D"
    if [ ! -f "$D/libunwind.a" ] || [ "$REPO/cross/unwind-shim.c" -nt "$D/libunwind.a" ]; then
      "$mcc" -O2 -fPIC -c "$REPO/cross/unwind-shim.c" -o "$D/dlfo.o"
      cp "$("$pfx-gcc" -print-file-name=libgcc_eh.a)" "$D/libunwind.a"
      "$pfx-ar" rcs "$D/libunwind.a" "$D/dlfo.o"
    fi
  done
fi

# ---------------------------------------------------------------- 4. build
if has build; then
  cd "$REPO"
  read -r -a BSTD <<<"$(build_std_flags)"
  fail=0
  for t in $TARGETS; do
    read -r pfx _ _ _ <<<"$(tinfo "$t")"
    cargo_env "$t"
    # panic=abort: nothing unwinds, so no unwind tables are generated at all (Rust, std and
    # ring's C). Removing .eh_frame only after linking (below) leaves a hole in the file:
    # the read-write segment keeps the file offset its address implies (modulo the 64 KiB
    # MIPS page), so up to 64 KiB of padding stays where the tables were.
    # KEEP_EH_FRAME=1 keeps them.
    if [ "${KEEP_EH_FRAME:-0}" != 1 ]; then
      tu=$(echo "$t" | tr 'a-z-' 'A-Z_'); tl=$(echo "$t" | tr - _)
      rf=CARGO_TARGET_${tu}_RUSTFLAGS
      export "$rf=${!rf} -C force-unwind-tables=no"
      export "CFLAGS_$tl=-fno-asynchronous-unwind-tables -fno-unwind-tables"
    fi
    # 32-bit MIPS: position-dependent code for the static executable ("cpic": the o32 ABI's
    # calls stay abicalls-compatible, but no $gp set-up in every function and no GOT loads
    # for every call and address). PIC buys nothing in a static non-PIE binary, and on MIPS
    # o32 it costs 14% of the file (cross/bloat.sh, doc/size.md).
    case $t in
      mips-*|mipsel-*) tu=$(echo "$t" | tr 'a-z-' 'A-Z_'); rf=CARGO_TARGET_${tu}_RUSTFLAGS
                       export "$rf=${!rf} -C relocation-model=static" ;;
    esac
    timer_start
    # strip=false here so the cargo output keeps symbols for size analysis; out/ gets the
    # stripped copy. What is left of .eh_frame and .eh_frame_hdr (musl's and libgcc's few
    # tables) goes too, as OpenWrt's easytier does.
    if CARGO_PROFILE_RELEASE_STRIP=false $CARGO build --release --locked --target "$t" "${BSTD[@]}" \
         >"$LOG/build-$t.log" 2>&1; then
      timer_end "build $t"
      mkdir -p "$CROSS_ROOT/out/$t"
      eh=(--remove-section=.eh_frame --remove-section=.eh_frame_hdr)
      [ "${KEEP_EH_FRAME:-0}" = 1 ] && eh=()
      "$pfx-strip" "${eh[@]}" -o "$CROSS_ROOT/out/$t/gatecert" "$CARGO_TARGET_DIR/$t/release/gatecert"
      echo "built $CROSS_ROOT/out/$t/gatecert ($(stat -c %s "$CROSS_ROOT/out/$t/gatecert") bytes)"
    else
      timer_end "build $t (FAILED)"
      echo "BUILD FAIL $t: $(grep -m1 -E '^error' "$LOG/build-$t.log" || tail -1 "$LOG/build-$t.log")" >&2
      fail=1
    fi
  done
  exit $fail
fi
