#!/usr/bin/env bash
# cross/test.sh - run gatecert's unit tests and an end-to-end smoke test under qemu-user.
#
#   cross/test.sh TARGET            # e.g. mipsel-unknown-linux-musl
#   SMOKE_ONLY=1 cross/test.sh TARGET
#
# 1. `cargo test --lib` for TARGET (dev profile: the release profile's panic=abort clashes with
#    build-std's test harness), run through qemu-<arch>-static. Skipped here, run natively by
#    `cargo test`: the month-long audit retention test (610,000 appends: about 35 minutes under
#    qemu).
# 2. The release binary from cross/build.sh: must be static (no PT_INTERP), and must run with an
#    empty QEMU_LD_PREFIX (no target libc anywhere, as on a musl OpenWrt box): `gatecert demo`
#    (the whole ACME + CA + EST flow in a temp dir), or `gatecert --version` while the binary has
#    no demo command yet.
# Needs cross/build.sh to have run for TARGET (toolchain, musl, unwind shim).
set -euo pipefail
# shellcheck source=cross/env.sh
. "$(dirname "$0")/env.sh"

T=${1:?usage: cross/test.sh TARGET}
read -r PFX QEMU _ _ <<<"$(tinfo "$T")"
cargo_env "$T"
cd "$REPO"
fail=0

if [ "${SMOKE_ONLY:-0}" != 1 ]; then
  timer_start
  if $CARGO test --lib --locked --target "$T" -Zbuild-std -- \
    --skip audit::retention_tests \
    >"$LOG/test-$T.log" 2>&1; then
    echo "unit tests $T: $(grep -E '^test result:' "$LOG/test-$T.log" | tail -1)"
  else
    echo "unit tests $T: FAILED ($(grep -m1 -E '^test result:|^error' "$LOG/test-$T.log" || tail -1 "$LOG/test-$T.log"))" >&2
    grep -E '^test .* FAILED$' "$LOG/test-$T.log" >&2 || true
    fail=1
  fi
  timer_end "test $T"
fi

BIN=$CROSS_ROOT/out/$T/gatecert
if [ ! -f "$BIN" ]; then
  echo "smoke $T: no binary at $BIN (run cross/build.sh $T)" >&2
  exit 1
fi
if "$PFX-readelf" -l "$BIN" | grep -q INTERP; then
  echo "smoke $T: FAILED, binary has a dynamic loader (PT_INTERP)" >&2; fail=1
fi
SMOKE=$(mktemp -d); trap 'rm -rf "$SMOKE"' EXIT
run() { (cd "$SMOKE" && TMPDIR=$SMOKE timeout 600 "$QEMU" "$BIN" "$@"); }
help=$(run --help 2>&1 || true)   # captured first: grep -q would SIGPIPE qemu under pipefail
if echo "$help" | grep -qE '^ *demo '; then
  if out=$(run demo 2>&1); then
    echo "smoke $T: gatecert demo OK"
  else
    # A demo that is listed but not dispatched yet reports an unknown command.
    if echo "$out" | grep -q 'unknown command'; then
      v=$(run --version)
      echo "smoke $T: 'demo' not implemented in this binary yet; --version says: $v"
      [ "$v" = "gatecert $(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)" ] || fail=1
    else
      echo "smoke $T: gatecert demo FAILED:" >&2; echo "$out" | tail -20 >&2; fail=1
    fi
  fi
else
  v=$(run --version)
  echo "smoke $T: no demo command; --version says: $v"
  [ -n "$v" ] || fail=1
fi
exit $fail
