#!/usr/bin/env bash
# Secrets never reach a log line, a status output or an error message: scans every gatecert
# output the test suites kept (target/test-logs/<suite>/, target/ci-test.log, target/crash.log)
# for the secrets those runs used, which they recorded in target/test-logs/secrets/*.list:
# the body lines of every private key PEM under their state dirs, bootstrap tokens and the EAB
# HMAC key. Also fails on any PEM private key marker in a log. First proves that the scan finds
# a planted secret.
#
# usage: tests/secrets.sh            (after cargo test / bench/crash.sh / bench/load.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
root=target/test-logs
[ -d "$root/secrets" ] || { echo "secrets: nothing recorded under $root/secrets; run the tests first" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sort -u "$root"/secrets/*.list | awk 'length($0) >= 16' >"$tmp/secrets"
logs=()
while IFS= read -r -d '' f; do logs+=("$f"); done < <(find "$root" -path "$root/secrets" -prune -o -type f -print0)
for f in target/ci-test.log target/crash.log; do [ -f "$f" ] && logs+=("$f"); done
[ ${#logs[@]} -gt 0 ] || { echo "secrets: no logs under $root" >&2; exit 2; }

# The scan must see a planted secret.
head -n 1 "$tmp/secrets" | sed 's/^/planted: /' >"$tmp/planted.log"
grep -qF -f "$tmp/secrets" "$tmp/planted.log" || { echo "secrets: self-test failed" >&2; exit 2; }

bytes=$(cat "${logs[@]}" | wc -c)
echo "secrets: $(wc -l <"$tmp/secrets") recorded secrets, ${#logs[@]} log files ($bytes bytes)"
found=0
if grep -nF -f "$tmp/secrets" "${logs[@]}" >"$tmp/hits"; then
	echo "secrets: LEAKED in $(cut -d: -f1 "$tmp/hits" | sort -u | tr '\n' ' ')" >&2
	found=1
fi
if grep -nE -- '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' "${logs[@]}" >"$tmp/pem"; then
	echo "secrets: a private key PEM in $(cut -d: -f1 "$tmp/pem" | sort -u | tr '\n' ' ')" >&2
	found=1
fi
[ $found = 0 ] && echo "secrets: none found"
exit $found
