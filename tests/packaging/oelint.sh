#!/usr/bin/env bash
# tests/packaging/oelint.sh - the Yocto layer is clean under oelint-adv (PyPI, pinned in
# tests/peers/oelint-venv.sh), for every release in LAYERSERIES_COMPAT; and the check really
# fails on a defect. Suppressions are inline in the recipe (`# nooelint: ...`, each with its
# reason), except one, scoped here to the generated crates file (see ALLOWED).
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"

L=$REPO/yocto/meta-gatecert
B=$(ls "$L"/recipes-security/gatecert/gatecert_*.bb)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
OELINT=$(bash "$REPO/tests/peers/oelint-venv.sh"); rc=$?
if [ "$rc" = 3 ] && [ "${CI:-}" != 1 ]; then
  echo "# SKIPPED: oelint-adv could not be installed from PyPI"; exit 0
fi
[ "$rc" = 0 ] || { echo "not ok - oelint-adv install (tests/peers/oelint-venv.sh exit $rc)"; exit 1; }

# gatecert-crates.inc is written by cargo-update-recipe-crates.bbclass (`bitbake -c
# update_crates`, or scripts/gen-crates-inc.py byte for byte), whose `SRC_URI += " \` opening
# these two rules dislike; an edit there would be undone by the next regeneration.
ALLOWED='^[^:]*/gatecert-crates\.inc:[0-9]+:[a-z]+:oelint\.vars\.(inconspaces|notneededspace):'

lint() { (cd "$1" && "$OELINT" --quiet --relpaths --release "$2" "${@:3}" 2>&1); }
compat=$(sed -n 's/^LAYERSERIES_COMPAT_gatecert = "\(.*\)"/\1/p' "$L/conf/layer.conf")
ok "LAYERSERIES_COMPAT_gatecert is set" test -n "$compat"
for rel in $compat; do
  out=$(lint "$REPO" "$rel" "${B#"$REPO"/}" yocto/meta-gatecert/conf/layer.conf | grep -Ev "$ALLOWED")
  eq "oelint-adv --release $rel: no findings on the recipe and layer.conf" "" "$out"
done
eq "every inline suppression names its rules (the reason on its line or the one above)" "" \
  "$(grep -n '# nooelint:' "$B" | grep -Ev '# nooelint: [a-z.,_]+( - .+)?$')"

# Negative: the same layer with a defect must be reported.
cp -r "$L" "$W/meta-gatecert"
WB=$W/meta-gatecert/recipes-security/gatecert/$(basename "$B")
sed -i 's/^SECTION = "net"$/SECTION = "net" /' "$WB"
out=$(lint "$W" "${compat%% *}" "meta-gatecert/recipes-security/gatecert/$(basename "$B")" | grep -Ev "$ALLOWED")
contains "a trailing space is reported" "oelint.spaces.lineend" "$out"
echo "# $("$OELINT" --version)"
done_testing
