#!/usr/bin/env bash
# tests/packaging/sensor-recipe.sh - README's "Sensor-side recipe: curl and openssl", run
# verbatim (the first ```sh block under that heading) against the real `gatecert run` on
# 127.0.0.1, with the inputs taken from `gatecert token add --bundle`: enroll, verify, re-enroll
# with the issued certificate, verify; the inventory then holds the re-enrolled certificate.
# Runs in private network and mount namespaces (loopback only; an /etc/hosts of its own that
# names 127.0.0.1 gateway.local, the name on the listener's certificate); skipped, loudly,
# where the kernel does not allow them.
set -uo pipefail
if [ -z "${GATECERT_NETNS:-}" ]; then
  if ! unshare -m -n true 2>/dev/null; then
    echo "# SKIPPED: sensor-recipe.sh needs unshare -m -n (root, namespaces) for gateway.local"
    exit 0
  fi
  GATECERT_NETNS=1 exec unshare -m -n sh -c 'ip link set lo up && exec "$@"' sh bash "$0" "$@"
fi
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO" || exit 1
BIN=$REPO/target/debug/gatecert
[ -x "$BIN" ] || cargo build --quiet || { echo "not ok - cargo build"; exit 1; }
OUT=target/test-logs/sensor-recipe
mkdir -p "$OUT"
T=$(mktemp -d)
printf '127.0.0.1 localhost gateway.local\n' > "$T/hosts"
mount --bind "$T/hosts" /etc/hosts || { echo "not ok - bind-mount /etc/hosts"; exit 1; }
pid=
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$T/gatecert.conf" <<CONF
config gatecert 'main'
	option state_dir '$T/state'
	option log 'stderr'
config ca 'local'
	list allow_suffix 'sensors.local'
	list allow_suffix 'gateway.local'
config certificate 'gateway'
	list domain 'gateway.local'
config est 'est'
	option listen '127.0.0.1:$port'
CONF
"$BIN" --config "$T/gatecert.conf" run >"$OUT/run.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
ok "gatecert run listens on 127.0.0.1:$port" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"

"$BIN" --config "$T/gatecert.conf" token add sensor-1 --name sensor-1.sensors.local --bundle \
  >"$T/bundle.json" 2>>"$OUT/run.log"
mkdir "$T/sensor"
# The bundle's values, as the sensor would take them from the JSON (or the QR code).
eval "$(python3 - "$T/bundle.json" "$T/sensor/root.pem" <<'PY'
import json, shlex, sys
b = json.load(open(sys.argv[1]))
open(sys.argv[2], "w").write(b["trust_anchor"]["pem"])
url = b["est_urls"][0]
for k, v in (("EST", url.rstrip("/")), ("DEVICE", b["device"]), ("NAME", b["names"][0]), ("TOKEN", b["token"])):
    print(f"export {k}={shlex.quote(v)}")
PY
)"
eq "the bundle's URL names the listener's certificate" "https://gateway.local:$port/.well-known/est" "$EST"

# The block, verbatim from README.
awk '/^### Sensor-side recipe: curl and openssl/ {f=1} f && /^```sh$/ {b=1; next} b && /^```$/ {exit} b' \
  README.md > "$T/recipe.sh"
ok "README has the recipe block" test -s "$T/recipe.sh"
( cd "$T/sensor" && sh -eu "$T/recipe.sh" ) >"$OUT/recipe.log" 2>&1
rc=$?
eq "the recipe runs to the end" 0 "$rc"
[ "$rc" = 0 ] || sed 's/^/#   /' "$OUT/recipe.log"
serial=$(openssl x509 -in "$T/sensor/sensor.pem" -noout -serial 2>/dev/null | cut -d= -f2)
ok "the sensor holds a certificate" test -n "$serial"
pub_key=$(openssl pkey -in "$T/sensor/sensor.key" -pubout 2>/dev/null)
pub_cert=$(openssl x509 -in "$T/sensor/sensor.pem" -noout -pubkey 2>/dev/null)
ok "the re-enrolled certificate is for the new key" test -n "$pub_key" -a "$pub_key" = "$pub_cert"
leaves=$("$BIN" --config "$T/gatecert.conf" leaves)
contains "the inventory holds the re-enrolled certificate (serial as openssl prints it)" "$serial" "$leaves"
contains "... for sensor-1" "sensor-1 " "$leaves"
eq "two issuances for sensor-1: enroll and re-enroll" "simpleenroll simplereenroll" "$(grep '"event":"est.issue"' "$T/state/audit.log" | grep '"device":"sensor-1"' | sed 's/.*"op":"\([a-z]*\)".*/\1/' | tr '\n' ' ' | sed 's/ $//')"
done_testing
