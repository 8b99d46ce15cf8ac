#!/usr/bin/env bash
# scripts/swtpm-pkcs11.sh - the issue-17 flows against a software TPM 2.0 (Debian swtpm) through
# tpm2-pkcs11 (libtpm2-pkcs11-1): `ca init` with the issuing key in the TPM, `gatecert run` with
# the EST listener's key in the TPM (openssl s_client verifies), an EST enrollment signed by the
# TPM key (openssl verify), `check`, and a walk of the state dir for private key files.
#
#   apt-get install swtpm swtpm-tools libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-tools \
#     libtss2-tcti-swtpm0 tpm2-abrmd libtss2-tcti-tabrmd0 dbus openssl curl
#   cargo build --features pkcs11 && scripts/swtpm-pkcs11.sh [path/to/gatecert]
#
# Everything lives in a temp dir; swtpm and gatecert listen on 127.0.0.1 only, tpm2-abrmd (the
# resource manager tpm2-pkcs11 needs, or the TPM runs out of object slots) is on a private
# D-Bus session bus, and all of them are stopped at the end. CI runs it (.ci/run, about 5 s).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$REPO/target/debug/gatecert}
MODULE=${TPM2_PKCS11_MODULE:-/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so}
PIN=tpmQ7pin
TPM_PORT=${TPM_PORT:-2321}
EST_PORT=${EST_PORT:-18443}
W=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }

say "swtpm on 127.0.0.1:$TPM_PORT (state in a temp dir)"
mkdir -p "$W/tpm" "$W/store"
swtpm socket --tpm2 --tpmstate dir="$W/tpm" --flags not-need-init,startup-clear \
  --server type=tcp,port="$TPM_PORT",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((TPM_PORT + 1)),bindaddr=127.0.0.1 &
pids+=($!)
sleep 1
say "tpm2-abrmd on a private D-Bus session bus"
DBUS_SESSION_BUS_ADDRESS=$(dbus-daemon --session --fork --print-address=1 --print-pid=3 3>"$W/dbus.pid")
export DBUS_SESSION_BUS_ADDRESS
pids+=("$(cat "$W/dbus.pid")")
tpm2-abrmd --session --tcti="swtpm:host=127.0.0.1,port=$TPM_PORT" --allow-root &
pids+=($!)
sleep 1
export TPM2TOOLS_TCTI="tabrmd:bus_type=session"
export TPM2_PKCS11_TCTI=$TPM2TOOLS_TCTI
export TPM2_PKCS11_STORE=$W/store
tpm2_getcap properties-fixed >"$W/cap" && grep -A1 -m1 TPM2_PT_FAMILY_INDICATOR "$W/cap"

say "tpm2-pkcs11 store and token 'gw'"
tpm2_ptool init --path "$W/store" >/dev/null
tpm2_ptool addtoken --pid=1 --label=gw --sopin=so-"$PIN" --userpin="$PIN" --path "$W/store"
umask 077
echo "$PIN" >"$W/pin"
umask 022

uri() { echo "pkcs11:token=gw;object=$1?module-path=$MODULE&pin-source=file:$W/pin"; }
cat >"$W/gatecert.uci" <<EOF
config gatecert 'main'
	option state_dir '$W/state'
	option log 'stderr'

config ca 'local'
	option key_uri '$(uri ca)'

config est 'est'
	option key_uri '$(uri est)'

config certificate 'gateway'
	list domain 'gateway.local'
	option key_uri '$(uri gateway)'
EOF

say "gatecert ca init (the issuing key is made in the TPM)"
"$BIN" --config "$W/gatecert.uci" ca init
ls -l "$W/state/ca"

say "gatecert run on 127.0.0.1:$EST_PORT"
"$BIN" --config "$W/gatecert.uci" run --listen "127.0.0.1:$EST_PORT" 2>"$W/run.log" &
pids+=($!)
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$EST_PORT") 2>/dev/null && break
  sleep 0.2
done

say "openssl s_client: TLS signed by the EST listener's key in the TPM"
openssl s_client -connect 127.0.0.1:"$EST_PORT" -servername gateway.local \
  -verify_hostname gateway.local -verify_return_error -CAfile "$W/state/ca/root.pem" \
  </dev/null 2>&1 | grep -E '^(subject|issuer)=|Verify return code|Peer signature type'

say "EST enrollment: a leaf signed by the issuing key in the TPM"
token=$("$BIN" --config "$W/gatecert.uci" token add s1 --name s1.local | tail -1)
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$W/s1.key" \
  -subj /CN=s1.local -outform DER -out "$W/s1.der" 2>/dev/null
base64 -w0 "$W/s1.der" >"$W/s1.b64"
code=$(curl -sS --max-time 10 --cacert "$W/state/ca/root.pem" \
  --resolve gateway.local:"$EST_PORT":127.0.0.1 -u "s1:$token" --data-binary @"$W/s1.b64" \
  -H 'Content-Type: application/pkcs10' -o "$W/s1.p7.b64" -w '%{http_code}' \
  https://gateway.local:"$EST_PORT"/.well-known/est/simpleenroll)
echo "simpleenroll: HTTP $code"
[ "$code" = 200 ]
tr -d '\r' <"$W/s1.p7.b64" | base64 -d | openssl pkcs7 -inform DER -print_certs | \
  awk '/BEGIN/{n++} n==1' >"$W/s1.pem"
openssl verify -CAfile "$W/state/ca/root.pem" -untrusted "$W/state/ca/intermediate.pem" "$W/s1.pem"

say "gatecert check"
"$BIN" --config "$W/gatecert.uci" check >"$W/check.out" || true
grep -aE 'pkcs11|^check:' "$W/check.out" | cat -v
# The other checks may fail on a machine without an ACME directory; the token keys may not.
for k in ca est; do grep -q "^ok   pkcs11 key $k: .*key \"$k\" (ec256, non-extractable)" "$W/check.out"; done

say "tpm2-pkcs11 objects"
tpm2_ptool listobjects --label=gw --path "$W/store" | grep -E 'CKA_LABEL|CKA_CLASS' || true

say "no private key file in the state dir"
found=$(grep -rl -- '-----BEGIN .*PRIVATE KEY-----' "$W/state" || true)
keys=$(find "$W/state" -name '*.key' -o -name key.pem -o -name combined.pem)
if [ -z "$found$keys" ]; then echo "none"; else echo "FOUND: $found $keys"; exit 1; fi
