#!/bin/sh
# Crash safety: N SIGKILLs in all (half during `gatecert renew --force` against a local pebble,
# half during `gatecert run` serving a stream of EST enrollments), each followed by the state
# checks and a next run (see tests/crash.rs). Prints: kills, broken sets, repaired torn audit
# lines, double-used tokens (certificates received beyond the token uses spent), token uses
# spent without an audited issuance, failed next runs. Exits non-zero on any broken set,
# double-used token or failed next run.
#
# usage: bench/crash.sh [N]     (default 1000; CI runs 60). Needs root (http-01 on port 80).
set -eu
n=${1:-1000}
cd "$(dirname "$0")/.."
renew=$((n / 2))
CRASH_RENEW_KILLS=$renew CRASH_EST_KILLS=$((n - renew)) \
	nice cargo test -q --test crash -- --ignored --nocapture --test-threads=1 2>&1 |
	grep -Ev '^(running|test result|\s*$)' | tee target/crash.log
grep -q 'failed next runs 0$' target/crash.log && ! grep -q 'broken sets [1-9]' target/crash.log &&
	! grep -q 'double-used tokens [1-9]' target/crash.log
