#!/usr/bin/env bash
# tests/packaging/msrv.sh - the Rust version gatecert says it needs is the one its locked
# dependencies need, the docs say the same, and every Yocto release in the layer's
# LAYERSERIES_COMPAT ships at least that Rust. Fails on the state it was written for (Cargo.toml
# 1.85 while time 0.3.55 and rcgen 0.14.10 need 1.88), which the negative check below replays.
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO" || exit 1

# The Rust each release's openembedded-core ships (meta/recipes-devtools/rust/rust_*.bb at the
# release). A codename missing here fails the test: add it with its Rust version.
yocto_rust() {
  case $1 in
    scarthgap) echo 1.75 ;; styhead) echo 1.79 ;; walnascar) echo 1.84 ;;
    whinlatter) echo 1.90 ;; wrynose) echo 1.94 ;; blacksail) echo 1.97 ;;
    *) echo unknown ;;
  esac
}
# ge A B: version A >= version B (1.88 and 1.88.0 are the same version)
norm() { local a b c; IFS=. read -r a b c <<<"$1"; echo "$a.${b:-0}.${c:-0}"; }
ge() {
  local a b; a=$(norm "$1"); b=$(norm "$2")
  [ "$(printf '%s\n%s\n' "$a" "$b" | sort -V | head -1)" = "$b" ]
}

want=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
ok "Cargo.toml has a rust-version ($want)" test -n "$want"

# Every locked package cargo resolves for this host (normal, build and dev dependencies: all
# must compile), with the rust-version its own Cargo.toml declares.
host=$(rustc -vV | sed -n 's/^host: //p')
meta() { cargo metadata --format-version 1 --locked --filter-platform "$host" "$@" 2>/dev/null; }
json=$(meta --offline || meta)
needs=$(echo "$json" | python3 -c '
import json, sys
m = json.load(sys.stdin)
for p in m["packages"]:
    if p["rust_version"] and p["source"]:
        v = (p["rust_version"].split(".") + ["0", "0"])[:3]
        print(".".join(v), p["name"], p["version"])' | sort -V)
ok "cargo metadata lists the locked crates" test -n "$needs"
top=$(echo "$needs" | tail -1)
highest=${top%% *}
echo "# highest rust-version among locked crates: $highest (from: $(echo "$needs" | awk -v h="$highest" '$1 == h {printf "%s %s; ", $2, $3}'))"
ok "Cargo.toml rust-version $want >= $highest, what the locked crates need" ge "$want" "$highest"

# Negative: the check fails for the old rust-version against the same lock.
if ge 1.85 "$highest"; then r=pass; else r=fail; fi
eq "rust-version 1.85 against this Cargo.lock is refused" fail "$r"

# The docs and the layer state the same minimum.
claims=$(grep -rnoE 'Rust >= ?[0-9]+\.[0-9]+' README.md doc/*.md cross/README.md yocto/meta-gatecert/conf/layer.conf)
ok "the docs state the minimum Rust" test -n "$claims"
eq "every 'Rust >= X' in README, doc/, cross/ and layer.conf says $want" "" \
  "$(echo "$claims" | grep -v "Rust >= \?$want\$" || true)"

compat=$(sed -n 's/^LAYERSERIES_COMPAT_gatecert = "\(.*\)"/\1/p' yocto/meta-gatecert/conf/layer.conf)
ok "LAYERSERIES_COMPAT_gatecert is set" test -n "$compat"
for rel in $compat; do
  v=$(yocto_rust "$rel")
  # A misspelt codename (the layer once said "whinlatch") matches no release: bitbake then
  # refuses the layer on the release it was meant for.
  ok "layer compat '$rel' is a Yocto release codename" test "$v" != unknown
  [ "$v" = unknown ] || ok "layer compat $rel ships Rust $v >= $want" ge "$v" "$want"
done
# And no release that ships a new enough Rust is left out.
for rel in scarthgap styhead walnascar whinlatter wrynose blacksail; do
  v=$(yocto_rust "$rel")
  if ge "$v" "$want"; then
    ok "release $rel (Rust $v) is in LAYERSERIES_COMPAT" grep -qw "$rel" <<<"$compat"
  else
    ok "release $rel (Rust $v < $want) is not in LAYERSERIES_COMPAT" bash -c '! grep -qw "$0" <<<"$1"' "$rel" "$compat"
  fi
done
done_testing
