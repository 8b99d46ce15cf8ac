#!/usr/bin/env bash
# tests/packaging/docs.sh - the docs don't promise what isn't there: every repository path they
# name exists, nothing points outside the repository, no reference to a DESIGN.md, one metrics
# port, no "uci commit reloads" claim, the OpenWrt cron recipe yields OpenWrt's config path, the
# systemd units' Documentation= is reachable, no stale cross/ notes, no "static" feed claim.
# Each check has a negative twin run on the text that was wrong.
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO" || exit 1
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT

DOCS="README.md doc/*.md cross/README.md"
# missing_paths FILE...: repository paths named in FILE that don't exist (a path is a word
# starting with one of the top-level directories; placeholders with <, *, X or N are skipped).
missing_paths() {
  grep -ohE '(^|[^A-Za-z0-9_./-])(openwrt|init|cross|scripts|tests|doc|yocto|bench|src|fuzz|examples)/[A-Za-z0-9_./-]*' "$@" |
    sed -E 's/^[^a-z]//; s/[.,:;)]+$//' | sort -u |
    while read -r p; do
      case $p in *'<'*|*'*'*|*/gen-N*|*TARGET*) continue ;; esac
      # Not ours: OpenWrt's scripts/ipkg-build; cross/README.md's probe `src/bin` (not committed).
      case $p in scripts/ipkg-build|src/bin) continue ;; esac
      [ -e "$p" ] || echo "$p"
    done
}
# shellcheck disable=SC2086 # DOCS is a list of globs
eq "every repository path the docs name exists" "" "$(missing_paths $DOCS tests/peers/*.sh)"
printf 'see `openwrt/files/gatecert.config` and tests/metrics.rs\n' > "$W/old.md"
eq "negative: the old stale paths are caught" "openwrt/files/gatecert.config tests/metrics.rs" \
  "$(missing_paths "$W/old.md" | paste -sd' ')"

# shellcheck disable=SC2086
eq "no reference to a DESIGN.md (doc/design.md is the repository's)" "" "$(grep -n 'DESIGN\.md' $DOCS src -r || true)"
ok "doc/design.md exists" test -s doc/design.md
ok "README links doc/design.md" grep -q 'doc/design.md' README.md
ok "doc/broker.md links doc/design.md" grep -q 'doc/design.md' doc/broker.md
eq "nothing in the repository names a path on the build machine or ../shared" "" \
  "$(git ls-files -z | xargs -0 grep -lE '/work/|\.\./shared' 2>/dev/null | grep -v '^tests/packaging/docs.sh$' || true)"

# One metrics port in every example.
# shellcheck disable=SC2086
ports=$(grep -ohE '(127\.0\.0\.1|\[::1\]):9[0-9]{3}' $DOCS doc/gatecert.config.example openwrt/gatecert/files/gatecert.config init/gatecert.conf | sed 's/.*://' | sort -u)
eq "metrics examples all use port 9469" 9469 "$(echo "$ports" | paste -sd' ')"

# `uci commit` from a shell sends no config.change: no doc may say it reloads the service.
claim='uci commit gatecert`?,? which reloads|reloads[^.|]*on `uci commit'
# shellcheck disable=SC2086
eq "no 'uci commit reloads the service' claim" "" "$(grep -nE "$claim" $DOCS || true)"
printf '(or `uci set ...; uci commit gatecert`, which reloads the\n| reloads (SIGHUP) on `uci commit gatecert`; |\n' > "$W/uci.md"
eq "negative: both old wordings are caught" 2 "$(grep -cE "$claim" "$W/uci.md")"
ok "README says what does reload (reload_config or LuCI)" grep -q 'reload_config' README.md

# The OpenWrt cron recipe in doc/install.md, run as written, points gatecert at OpenWrt's config.
cmd=$(grep -E '^sh gatecert-cron.sh .*--config /etc/config/gatecert' doc/install.md)
ok "doc/install.md has the OpenWrt cron command" test -n "$cmd"
set -- $cmd
shift 2   # "sh gatecert-cron.sh"
args=("$@"); args[${#args[@]}-1]=$W/crontab   # the crontab file, here
GATECERT_MACHINE_ID=x sh init/gatecert-cron.sh "${args[@]}"
contains "the written crontab line uses /etc/config/gatecert" "--config /etc/config/gatecert renew" "$(cat "$W/crontab")"
eq "without --config the line keeps the systemd/Yocto path" "/etc/gatecert/gatecert.conf" \
  "$(GATECERT_MACHINE_ID=x sh init/gatecert-cron.sh --crontab | grep -o '/etc/gatecert/gatecert.conf')"
GATECERT_MACHINE_ID=x sh init/gatecert-cron.sh --crontab --config '/etc/x;rm' >/dev/null 2>&1
eq "an unsafe --config path is refused (exit 2)" 2 "$?"

# systemd's Documentation= must be reachable: a URL, or a file the packages install.
for u in init/*.service; do
  d=$(sed -n 's/^Documentation=//p' "$u")
  case $d in https://*) r=ok ;; *) r="not a URL: $d" ;; esac
  eq "$u: Documentation= is a URL (no doc file is installed)" ok "$r"
done

eq "cross/README has no stale notes (CLI shell, --version until demo)" "" \
  "$(grep -nE 'CLI shell|until demo exists' cross/README.md || true)"
# shellcheck disable=SC2086
eq "no doc says the binary is static without saying which build" "" \
  "$(grep -nE 'One small static binary|is one static binary|The binary is static; it needs no' $DOCS || true)"
contains "doc/install.md says the feed links musl dynamically" "links musl dynamically" "$(cat doc/install.md)"
done_testing
