#!/bin/sh
# Crash safety: N SIGKILLs in all (half during `gatecert renew --force` against a local pebble,
# half during `gatecert run` serving a stream of EST enrollments), each followed by the state
# checks and a next run (see tests/crash.rs); then N/3 more during `gatecert renew --force`
# with the certificate's key (a fresh one per renewal) and the account key in SoftHSM2 (the
# `pkcs11` feature; skipped with a message when SoftHSM2 is not installed, a failure under CI=1).
# Prints: kills, broken sets, repaired torn audit lines, double-used tokens (certificates
# received beyond the token uses spent), token uses spent without an audited issuance, failed
# next runs, and the most renewal key pairs the token held. Exits non-zero on any broken set,
# double-used token, token use spent without its issuance, or failed next run.
#
# usage: bench/crash.sh [N]     (default 1000; CI runs 60: 30 + 30, and 20 with keys in the
# token). Needs root (http-01 on port 80).
set -eu
n=${1:-1000}
cd "$(dirname "$0")/.."
renew=$((n / 2))
filter() { grep -Ev '^(running|test result|\s*$)'; }
CRASH_RENEW_KILLS=$renew CRASH_EST_KILLS=$((n - renew)) \
	nice cargo test -q --test crash -- --ignored --nocapture --test-threads=1 sigkill_renew_and_est 2>&1 |
	filter | tee target/crash.log
CRASH_TOKEN_KILLS=$((n / 3)) \
	nice cargo test -q --features pkcs11 --test crash -- --ignored --nocapture --test-threads=1 \
	sigkill_renew_with_keys_in_softhsm 2>&1 | filter | tee -a target/crash.log
grep -q '^  total: .*failed next runs 0$' target/crash.log &&
	grep -Eq '^  token total: .*failed next runs 0$|^token variant skipped' target/crash.log &&
	! grep -Eq 'broken sets [1-9]|failed next runs [1-9]|double-used tokens [1-9]|without an issuance [1-9]' target/crash.log
