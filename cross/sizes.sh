#!/usr/bin/env bash
# cross/sizes.sh - size table of the cross-built binaries: raw (with symbols, as cargo linked
# it with strip=false), stripped (what ships), gzip -9 and xz -9 of the stripped one.
#   cross/sizes.sh [TARGET...]          # default: every target that has been built
#   cross/sizes.sh --top N TARGET       # also the N biggest symbols and the sections
set -euo pipefail
# shellcheck source=cross/env.sh
. "$(dirname "$0")/env.sh"

TOP=0
if [ "${1:-}" = --top ]; then TOP=$2; shift 2; fi
TARGETS=${*:-$ALL_TARGETS}
printf '| %-32s | %10s | %10s | %10s | %10s |\n' target raw stripped "gzip -9" "xz -9"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..34})" "------------" "------------" "------------" "------------"
for t in $TARGETS; do
  s=$CROSS_ROOT/out/$t/gatecert
  r=$CARGO_TARGET_DIR/$t/release/gatecert
  [ -f "$s" ] || continue
  raw=$(stat -c %s "$r" 2>/dev/null || echo -)
  printf '| %-32s | %10s | %10s | %10s | %10s |\n' "$t" "$raw" "$(stat -c %s "$s")" \
    "$(gzip -9c "$s" | wc -c)" "$(xz -9c "$s" 2>/dev/null | wc -c || echo -)"
done
if [ "$TOP" -gt 0 ]; then
  for t in $TARGETS; do
    read -r pfx _ _ _ <<<"$(tinfo "$t")"
    r=$CARGO_TARGET_DIR/$t/release/gatecert
    [ -f "$r" ] || continue
    echo; echo "== $t: sections"
    "$pfx-size" -A "$r" | awk 'NR>2 && $2>4096 {printf "  %-22s %9d\n", $1, $2}'
    echo "== $t: $TOP biggest symbols (text+data)"
    # -t d: decimal sizes (Debian's awk is mawk, which has no strtonum); cross/bloat.sh groups them.
    "$pfx-nm" --size-sort -r -S -C -t d "$r" | head -"$TOP" | awk '{printf "  %8d %s", $2, $4; for(i=5;i<=NF;i++) printf " %s", $i; print ""}'
  done
fi
