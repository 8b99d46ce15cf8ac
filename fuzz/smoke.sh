#!/usr/bin/env bash
# fuzz/smoke.sh: CI smoke run of every cargo-fuzz target (libFuzzer).
#
# Builds the fuzz crate with `cargo fuzz` and runs each target for a short, fixed number of
# executions (FUZZ_SMOKE_RUNS, default 20000) from the committed seeds in corpus/<target>/.
# New inputs go to a scratch dir, so the committed seeds are not touched. Prints one line per
# target and exits non-zero if any target crashes (its input is kept in fuzz/artifacts/<target>/).
#
# Toolchain: `cargo fuzz` needs nightly flags. With a nightly toolchain installed it is used;
# otherwise (or with FUZZ_STABLE=1) stable runs with RUSTC_BOOTSTRAP=1. cargo-fuzz is installed
# from crates.io if absent. Env: FUZZ_SMOKE_RUNS (per target), FUZZ_TARGETS (space-separated
# subset), FUZZ_SANITIZER (default address; `none` is faster).
set -uo pipefail
cd "$(dirname "$0")" || exit 2
START=$(date +%s)
RUNS=${FUZZ_SMOKE_RUNS:-20000}
SAN=${FUZZ_SANITIZER:-address}

if [ -z "${FUZZ_STABLE:-}" ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  TC=(+nightly)
else
  TC=()
  export RUSTC_BOOTSTRAP=1
  echo "fuzz smoke: stable with RUSTC_BOOTSTRAP=1 (no nightly toolchain, or FUZZ_STABLE set)"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz smoke: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet || { echo "fuzz smoke: cargo-fuzz install failed" >&2; exit 2; }
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
targets=${FUZZ_TARGETS:-$(cargo "${TC[@]}" fuzz list)}
# -a: debug assertions (integer overflow panics) in the fuzzed code.
if ! cargo "${TC[@]}" fuzz build -a -s "$SAN" >"$scratch/build.log" 2>&1; then
  tail -n 30 "$scratch/build.log" >&2
  echo "fuzz smoke: build failed" >&2
  exit 2
fi
echo "fuzz smoke: build $(( $(date +%s) - START ))s"

fail=0
for t in $targets; do
  mkdir -p "$scratch/$t" "corpus/$t"
  log="$scratch/$t.log"
  t0=$(date +%s)
  cargo "${TC[@]}" fuzz run -a -s "$SAN" "$t" "$scratch/$t" "corpus/$t" -- \
    -runs="$RUNS" -rss_limit_mb=512 -max_len=4096 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n 1)
  if [ "$rc" = 0 ]; then
    result=ok
  else
    result="CRASH (exit $rc)"
    fail=1
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 5 >&2
  fi
  printf 'fuzz %-16s %9s execs %4ss  %s\n' "$t" "${execs:-?}" "$(( $(date +%s) - t0 ))" "$result"
done
echo "fuzz smoke: $(( $(date +%s) - START ))s total, $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
