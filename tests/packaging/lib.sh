# shellcheck shell=bash
# shellcheck disable=SC2034 # REPO is used by the tests that source this file
# tests/packaging/lib.sh - tiny TAP-like helpers shared by the packaging tests. Sourced.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FAILS=0
CHECKS=0

# ok DESCRIPTION COMMAND... : runs COMMAND, records pass/fail.
ok() {
  local what=$1; shift
  CHECKS=$((CHECKS + 1))
  if "$@"; then echo "ok - $what"; else echo "not ok - $what"; FAILS=$((FAILS + 1)); fi
}

# eq DESCRIPTION EXPECTED ACTUAL
eq() {
  CHECKS=$((CHECKS + 1))
  if [ "$2" = "$3" ]; then echo "ok - $1"
  else echo "not ok - $1"; echo "#   expected: $2"; echo "#   actual:   $3"; FAILS=$((FAILS + 1)); fi
}

# contains DESCRIPTION NEEDLE HAYSTACK
contains() {
  CHECKS=$((CHECKS + 1))
  case $3 in
    *"$2"*) echo "ok - $1" ;;
    *) echo "not ok - $1"; echo "#   missing: $2"; FAILS=$((FAILS + 1)) ;;
  esac
}

done_testing() {
  echo "# $(basename "$0"): $((CHECKS - FAILS))/$CHECKS checks passed"
  [ "$FAILS" -eq 0 ]
}
