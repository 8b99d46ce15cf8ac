#!/usr/bin/env bash
# tests/packaging/licenses.sh - the licences the packages declare are those of the code linked
# into the binary: for every crate in the runtime dependency graph of Cargo.lock (normal
# dependencies; not build scripts, proc-macros or dev-dependencies), its SPDX expression is
# satisfied by the declared set, and each declared licence is needed by some crate. The OpenWrt
# PKG_LICENSE and the Yocto LICENSE list the same set; LIC_FILES_CHKSUM names each one.
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO" || exit 1

MK=openwrt/gatecert/Makefile
BB=$(ls yocto/meta-gatecert/recipes-security/gatecert/gatecert_*.bb)
owrt=$(sed -n 's/^PKG_LICENSE:=//p' "$MK" | tr ' ' '\n' | sort | paste -sd' ')
yocto=$(sed -n 's/^LICENSE = "\(.*\)"/\1/p' "$BB" | sed 's/ & /\n/g' | sort | paste -sd' ')
ok "Makefile has PKG_LICENSE ($owrt)" test -n "$owrt"
eq "Yocto LICENSE (&-separated) lists the same licences as PKG_LICENSE" "$owrt" "$yocto"

host=$(rustc -vV | sed -n 's/^host: //p')
# With the pkcs11 feature, as the OpenWrt feed and the Yocto recipe build it.
meta() { cargo metadata --format-version 1 --locked --features pkcs11 --filter-platform "$host" "$@" 2>/dev/null; }
meta --offline > "${TMPDIR:-/tmp}/gatecert-meta.$$" || meta > "${TMPDIR:-/tmp}/gatecert-meta.$$"
META=${TMPDIR:-/tmp}/gatecert-meta.$$
trap 'rm -f "$META"' EXIT

# check DECLARED...: prints one line per crate whose licence the set does not satisfy, and one
# per declared licence no crate needs.
check() {
  python3 - "$META" "$@" <<'PY'
import json, re, sys
m = json.load(open(sys.argv[1])); declared = set(sys.argv[2:])
pk = {p["id"]: p for p in m["packages"]}
nodes = {n["id"]: n for n in m["resolve"]["nodes"]}
def proc_macro(p): return any("proc-macro" in t["kind"] for t in p["targets"])
seen, stack = set(), [m["resolve"]["root"]]
while stack:
    i = stack.pop()
    if i in seen: continue
    seen.add(i)
    for d in nodes[i]["deps"]:
        if any(k["kind"] is None for k in d["dep_kinds"]) and not proc_macro(pk[d["pkg"]]):
            stack.append(d["pkg"])
def alternatives(expr):
    """SPDX expression -> list of sets, any one of which satisfies it (no parentheses nest
    deeper than one level in these crates)."""
    expr = expr.replace("/", " OR ")
    expr = re.sub(r"\s+WITH\s+\S+", "", expr)
    m = re.fullmatch(r"\((.*)\)\s+AND\s+(.*)", expr.strip())
    if m:
        return [a | b for a in alternatives(m.group(1)) for b in alternatives(m.group(2))]
    return [set(t.strip("() ") for t in alt.split(" AND ")) for alt in expr.split(" OR ")]
bad, needs = [], {}
for i in sorted(seen, key=lambda i: pk[i]["name"]):
    p = pk[i]; alts = alternatives(p["license"] or "NONE")
    fits = [a for a in alts if a <= declared]
    if not fits:
        bad.append(f"{p['name']} {p['version']}: {p['license']}")
    needs[p["name"]] = alts
for b in bad: print("unsatisfied:", b)
for lic in sorted(declared):
    rest = declared - {lic}
    if all(any(a <= rest for a in alts) for alts in needs.values()):
        print("not needed:", lic)
PY
}
eq "the declared licences cover every crate linked in, and each is needed" "" "$(check $owrt)"
# Negative: the old declaration (Apache-2.0 alone) is refused, naming the crates it misses.
contains "PKG_LICENSE:=Apache-2.0 alone is refused (ring needs ISC)" "unsatisfied: ring" "$(check Apache-2.0)"

# LIC_FILES_CHKSUM: the project's LICENSE with its real md5, the others from COMMON_LICENSE_DIR.
lic=$(sed -n '/^LIC_FILES_CHKSUM = /,/"$/p' "$BB")
contains "LIC_FILES_CHKSUM has LICENSE with its md5" "file://LICENSE;md5=$(md5sum LICENSE | cut -d' ' -f1)" "$lic"
for l in $owrt; do
  [ "$l" = Apache-2.0 ] && continue   # the project's own LICENSE is the Apache-2.0 text
  contains "LIC_FILES_CHKSUM names $l" "file://\${COMMON_LICENSE_DIR}/$l;md5=" "$lic"
done
ok "LICENSE is the Apache-2.0 text" grep -q 'Apache License' LICENSE
eq "PKG_LICENSE_FILES" LICENSE "$(sed -n 's/^PKG_LICENSE_FILES:=//p' "$MK")"
done_testing
