#!/usr/bin/env bash
# tests/packaging/yocto.sh - the meta-gatecert recipe can install what it says it installs:
#   - every ${S}/... file do_install takes exists at SRCREV, and every crate of SRCREV's
#     Cargo.lock is in gatecert-crates.inc. SRCREV is a commit of this repository; when this
#     clone doesn't have it (a shallow CI checkout), the working tree is checked instead and the
#     test says so: the recipe's files come from git, so only the commit is the real answer;
#   - every file://... in SRC_URI (the layer's own files) exists in the layer;
#   - the binary reaches do_package unstripped (Cargo.toml strips; "already-stripped" is an
#     ERROR_QA), by the recipe's override;
#   - sysvinit images get a daemon: an update-rc.d init script, exercised here with the real
#     start-stop-daemon (start, status, reload, stop) on a stand-in daemon;
#   - cron-only renewals are a package of their own that pulls in a cron daemon.
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO" || exit 1

D=yocto/meta-gatecert/recipes-security/gatecert
BB=$(ls $D/gatecert_*.bb)
INC=$D/gatecert-crates.inc
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
var() { sed -n "s/^$1 = \"\(.*\)\"$/\1/p" "$BB"; }

srcrev=$(var SRCREV)
ok "SRCREV is a full commit id ($srcrev)" grep -qE '^[0-9a-f]{40}$' <<<"$srcrev"
installs=$(grep -o '\${S}/[A-Za-z0-9_./-]*' "$BB" | sed 's|\${S}/||' | sort -u)
ok "do_install takes files from \${S}" test -n "$installs"

# missing_at REV: the installed files missing at REV, and the crates of REV's Cargo.lock that
# gatecert-crates.inc lacks.
missing_at() {
  local f
  for f in $installs; do git cat-file -e "$1:$f" 2>/dev/null || echo "file $f"; done
  git show "$1:Cargo.lock" 2>/dev/null | awk -F' = ' '
    /^\[\[package\]\]/ { n=""; v="" } $1=="name" { gsub(/"/,"",$2); n=$2 }
    $1=="version" { gsub(/"/,"",$2); v=$2 } $1=="source" && $2 ~ /crates.io/ { print n "/" v }' |
    while read -r c; do grep -q "crate://crates.io/$c;" "$INC" || echo "crate $c"; done
}
if git cat-file -e "$srcrev^{commit}" 2>/dev/null; then
  eq "every file do_install takes exists at SRCREV, every crate of its Cargo.lock is in the .inc" "" \
    "$(missing_at "$srcrev")"
  lic=$(sed -n 's|.*file://LICENSE;md5=\([0-9a-f]*\).*|\1|p' "$BB")
  eq "LIC_FILES_CHKSUM's md5 is that of LICENSE at SRCREV" "$lic" "$(git show "$srcrev:LICENSE" | md5sum | cut -d' ' -f1)"
  # Between releases init/ may move on; the recipe ships SRCREV's until SRCREV is bumped.
  changed=$(git diff --name-only "$srcrev" -- init/ | paste -sd' ')
  [ -z "$changed" ] || echo "# note: changed since SRCREV (bump it on release): $changed"
  # Negative: the SRCREV the recipe had before (a commit without init/) is caught.
  old=422b0dd4fc993bfdb706d231d13671a49a841af5
  if git cat-file -e "$old^{commit}" 2>/dev/null; then
    contains "the old SRCREV ($old) is refused: no init/ there" "file init/gatecert.service" "$(missing_at "$old")"
  fi
else
  echo "# SRCREV $srcrev is not in this clone's history (shallow?): checking the working tree"
  for f in $installs; do ok "recipe installs existing file $f" test -f "$f"; done
fi

for f in $(grep -o 'file://[A-Za-z0-9_.-]*' <<<"$(sed -n '/^SRC_URI = /,/"$/p' "$BB")" | sed 's|file://||'); do
  ok "SRC_URI file://$f exists in the layer" test -f "$D/files/$f"
done
for f in $(grep -o '\${UNPACKDIR}/[A-Za-z0-9_.-]*' "$BB" | sed 's|\${UNPACKDIR}/||' | sort -u); do
  ok "\${UNPACKDIR}/$f comes from SRC_URI" grep -q "file://$f" "$BB"
done

# Strip: Cargo.toml strips, so the recipe must turn it off (or skip the QA check with a reason).
eq "Cargo.toml's release profile strips (the reason for the override)" "strip = true" \
  "$(sed -n '/^\[profile.release\]/,/^\[/p' Cargo.toml | grep -x 'strip = true')"
ok "the recipe builds unstripped (CARGO_BUILD_FLAGS --config profile.release.strip=false)" \
  grep -qx 'CARGO_BUILD_FLAGS:append = " --config profile.release.strip=false"' "$BB"
ok "the recipe enables the pkcs11 feature (CARGO_FEATURES, cargo.bbclass)" grep -qx 'CARGO_FEATURES = "pkcs11"' "$BB"
eq "Cargo.toml defines the pkcs11 feature" 'pkcs11 = ["dep:cryptoki"]' \
  "$(sed -n '/^\[features\]/,/^\[/p' Cargo.toml | grep -x 'pkcs11 = .*')"
# cargo accepts that --config value (a typo such as strip=flase is an error).
cargo_config() { cargo metadata --offline --format-version 1 --no-deps --config "$1" -q >/dev/null 2>&1; }
ok "cargo accepts --config profile.release.strip=false" cargo_config profile.release.strip=false

# sysvinit: update-rc.d with the layer's init script.
ok "recipe inherits update-rc.d" grep -qE '^inherit .*\bupdate-rc\.d\b' "$BB"
eq "INITSCRIPT_NAME" gatecert "$(var INITSCRIPT_NAME)"
ok "INITSCRIPT_PARAMS set" test -n "$(var INITSCRIPT_PARAMS)"
ok "the init script is installed as \${sysconfdir}/init.d/\${INITSCRIPT_NAME}" \
  grep -q 'install -m 0755 ${UNPACKDIR}/gatecert.init ${D}${sysconfdir}/init.d/gatecert$' "$BB"
I=$D/files/gatecert.init
ok "init script has an LSB header" grep -q '^### BEGIN INIT INFO' "$I"
ok "init script is sh-clean (sh -n)" sh -n "$I"

if command -v start-stop-daemon >/dev/null && command -v cc >/dev/null; then
  # A stand-in daemon (an ELF, so start-stop-daemon -x matches it as it matches gatecert):
  # logs its arguments, each SIGHUP, and exits on SIGTERM.
  cat > "$W/d.c" <<'C'
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static volatile sig_atomic_t hup, term;
static void on(int s) { if (s == SIGHUP) hup++; else term = 1; }
int main(int argc, char **argv) {
  FILE *f = fopen(LOG, "a");
  signal(SIGHUP, on); signal(SIGTERM, on);
  for (int i = 1; i < argc; i++) fprintf(f, "%s%s", argv[i], i + 1 < argc ? " " : "\n");
  fflush(f);
  while (!term) { pause(); while (hup) { hup--; fprintf(f, "HUP\n"); fflush(f); } }
  fprintf(f, "TERM\n"); fclose(f);
  return 0;
}
C
  cc -DLOG="\"$W/log\"" -o "$W/gatecert" "$W/d.c"
  sed -e "s|^DAEMON=.*|DAEMON=$W/gatecert|" -e "s|^PIDFILE=.*|PIDFILE=$W/gatecert.pid|" \
      -e "s|^STATE_DIR=.*|STATE_DIR=$W/state|" -e "s|^RUN_DIR=.*|RUN_DIR=$W/run|" \
      -e "s|^CONF=.*|CONF=/etc/gatecert/gatecert.conf|" "$I" > "$W/init"
  sh "$W/init" start >/dev/null; rc=$?
  eq "start: exit 0" 0 "$rc"
  for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s "$W/log" ] && break; sleep 0.2; done
  eq "start: the daemon runs 'gatecert --config /etc/gatecert/gatecert.conf run'" \
    "--config /etc/gatecert/gatecert.conf run" "$(head -1 "$W/log")"
  eq "state dir 0700" 700 "$(stat -c %a "$W/state" 2>/dev/null)"
  sh "$W/init" status >/dev/null; eq "status while running: exit 0" 0 "$?"
  sh "$W/init" start >/dev/null; eq "a second start: exit 0" 0 "$?"
  eq "a second start starts nothing" 1 "$(grep -c -- '--config' "$W/log")"
  sh "$W/init" reload; eq "reload: exit 0" 0 "$?"
  for _ in 1 2 3 4 5 6 7 8 9 10; do grep -q HUP "$W/log" && break; sleep 0.2; done
  ok "reload sends SIGHUP" grep -qx HUP "$W/log"
  sh "$W/init" stop >/dev/null; eq "stop: exit 0" 0 "$?"
  ok "stop: SIGTERM reached the daemon" grep -qx TERM "$W/log"
  ok "stop: pid file removed" test ! -e "$W/gatecert.pid"
  sh "$W/init" status >/dev/null; eq "status when stopped: exit 3 (LSB)" 3 "$?"
  sh "$W/init" bogus 2>/dev/null; eq "unknown action: exit 2" 2 "$?"
else
  echo "not ok - start-stop-daemon and cc are needed to run the init script"; FAILS=$((FAILS + 1))
fi

# cron-only renewals: ${PN}-cron, with a cron daemon.
ok "\${PN}-cron is a package" grep -qx 'PACKAGES =+ "${PN}-cron"' "$BB"
contains "RDEPENDS:\${PN}-cron pulls in cronie" cronie "$(var 'RDEPENDS:${PN}-cron')"
contains "FILES:\${PN}-cron has the cron helper" '${libexecdir}/gatecert' "$(sed -n 's/^FILES:${PN}-cron += "\(.*\)"/\1/p' "$BB")"
ok "\${PN}-cron's postinst writes /etc/cron.d/gatecert" \
  grep -A1 -x 'pkg_postinst_ontarget:${PN}-cron() {' "$BB" -q
contains "RDEPENDS:\${PN} has ca-certificates" ca-certificates "$(var 'RDEPENDS:${PN}')"
done_testing
