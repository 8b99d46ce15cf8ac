#!/usr/bin/env bash
# tests/packaging/run-all.sh - every packaging test; one summary line at the end:
#   packaging: N passed, M failed
# Fast (seconds) and needs no cross toolchain: ipk.sh uses a stand-in binary when no cross build
# exists. Exit status 0 only when all passed.
set -uo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)
passed=0; failed=0; failed_names=
for t in "$DIR"/*.sh; do
  case $(basename "$t") in run-all.sh|lib.sh) continue ;; esac
  echo "== $(basename "$t")"
  if bash "$t"; then passed=$((passed + 1))
  else failed=$((failed + 1)); failed_names="$failed_names $(basename "$t")"; fi
done
[ -z "$failed_names" ] || echo "failed:$failed_names"
echo "packaging: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
