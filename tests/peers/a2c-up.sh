#!/usr/bin/env bash
# a2c-up.sh - install (idempotent, PyPI only) and start acme2certifier with its
# openssl CA handler on 127.0.0.1 as the "upstream" ACME CA for gatecert's tests.
# A2C_INSTALL_ONLY=1 only installs (used by .ci/run), starts nothing.
# Env knobs:
#   A2C_BASE       working dir                         (default /tmp/gatecert-peers/a2c)
#   A2C_HOST/PORT  listen address                      (default 127.0.0.1 / 9543)
#   A2C_TLS        true = HTTPS (cert from the CI CA)  (default true)
#   A2C_VERSION    PyPI version pin                    (default 0.46.3)
#   A2C_VALID_DAYS leaf lifetime in whole days         (default 1 = 24h)
#   A2C_DNS        DNS server IP (port 53 only) used for http-01/tls-alpn-01/dns-01 lookups.
#                  Default 127.0.0.1 = fake DNS started here (every name -> 127.0.0.1; TXT via
#                  http://127.0.0.1:8055/set-txt). a2c uses dnspython: /etc/hosts is NOT consulted.
#   A2C_REQUIRE_EAB true => EAB required; prints EAB_KID / EAB_HMAC
#   FAKEDNS_DIR    fake DNS pid/log dir                (default /tmp/gatecert-peers/fakedns, shared)
#   FAKEDNS_LISTEN its DNS listeners                   (default 127.0.0.1:8053,127.0.0.1:53; a2c needs :53)
#   FAKEDNS_MGMT   its management API                  (default 127.0.0.1:8055)
#   A2C_PROFILES   JSON object of ACME profiles to advertise/enforce, e.g. '{"classic":"x","shortlived":"y"}'
#                  (draft-ietf-acme-profiles; with the openssl handler they do not change the cert)
# Prints:  DIRECTORY_URL=...  ROOT_PEM=...  PID_FILE=...  REQUESTS=... (dir: neworders.log, revokecert.log)
set -euo pipefail
BASE=${A2C_BASE:-/tmp/gatecert-peers/a2c}
HOST=${A2C_HOST:-127.0.0.1}
PORT=${A2C_PORT:-9543}
TLS=${A2C_TLS:-true}
VER=${A2C_VERSION:-0.46.3}
DAYS=${A2C_VALID_DAYS:-1}
DNS=${A2C_DNS:-127.0.0.1}
REQUIRE_EAB=${A2C_REQUIRE_EAB:-false}
PROFILES=${A2C_PROFILES:-}
PKI=$BASE/pki
PIDFILE=$BASE/a2c.pid
LOG=$BASE/a2c.log
PY=${A2C_PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3 )}
mkdir -p "$BASE/certs" "$BASE/requests" "$PKI"

# ---- 1. install (PyPI) ---------------------------------------------------------
if ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends python3-venv >&2
fi
if [ ! -x "$BASE/venv/bin/python" ]; then "$PY" -m venv "$BASE/venv"; fi
if [ "$("$BASE/venv/bin/pip" show acme2certifier 2>/dev/null | sed -n "s/^Version: //p")" != "$VER" ]; then
  echo "[a2c-up] pip install acme2certifier==$VER" >&2
  "$BASE/venv/bin/pip" install -q --disable-pip-version-check "acme2certifier==$VER" >&2
fi
[ "${A2C_INSTALL_ONLY:-0}" = 1 ] && exit 0

# ---- 2. PKI (openssl): root -> intermediate (issuing CA) -> TLS cert for the listener
if [ ! -s "$PKI/server.crt" ]; then
  echo "[a2c-up] generating CA + server cert" >&2
  gen() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
  gen "$PKI/root_ca.key"
  openssl req -x509 -new -key "$PKI/root_ca.key" -sha256 -days 3650 \
    -subj "/O=CI Upstream/CN=CI Upstream Root CA (a2c)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:1" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$PKI/root_ca.crt"
  gen "$PKI/intermediate_ca.key"
  openssl req -new -key "$PKI/intermediate_ca.key" -subj "/O=CI Upstream/CN=CI Upstream Issuing CA (a2c)" \
    -out "$PKI/int.csr"
  printf '%s\n' "basicConstraints=critical,CA:TRUE,pathlen:0" "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid:always" > "$PKI/int.ext"
  openssl x509 -req -in "$PKI/int.csr" -CA "$PKI/root_ca.crt" -CAkey "$PKI/root_ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/int.ext" -out "$PKI/intermediate_ca.crt" 2>/dev/null
  gen "$PKI/server.key"
  openssl req -new -key "$PKI/server.key" -subj "/CN=localhost" -out "$PKI/server.csr"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" > "$PKI/server.ext"
  openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/intermediate_ca.crt" -CAkey "$PKI/intermediate_ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$PKI/server.ext" -out "$PKI/server.crt" 2>/dev/null
  cat "$PKI/server.crt" "$PKI/intermediate_ca.crt" > "$PKI/server-chain.crt"
  chmod 600 "$PKI"/*.key
fi

# ---- 3. acme_srv.cfg -----------------------------------------------------------------
EAB_SECTION=""
if [ "$REQUIRE_EAB" = true ]; then
  if [ ! -s "$BASE/eab.json" ]; then
    kid="ci-kid-$(openssl rand -hex 6)"; hmac=$(openssl rand 32 | basenc --base64url | tr -d '=\n')
    printf '{"%s": "%s"}\n' "$kid" "$hmac" > "$BASE/eab.json"
  fi
  EAB_SECTION="[EABhandler]
eab_handler_module: acme2certifier.eabhandlers.json_handler
key_file: $BASE/eab.json"
fi
cat > "$BASE/acme_srv.cfg" <<CFG
[DEFAULT]
debug: ${A2C_DEBUG:-False}

[Nonce]
nonce_check_disable: False

[CAhandler]
handler_module: acme2certifier.cahandlers.openssl_ca_handler
issuing_ca_key: $PKI/intermediate_ca.key
issuing_ca_cert: $PKI/intermediate_ca.crt
issuing_ca_crl: $BASE/crl.pem
cert_save_path: $BASE/certs
ca_cert_chain_list: ["$PKI/root_ca.crt"]
cert_validity_days: $DAYS

[DBhandler]
handler_module: acme2certifier.dbhandlers.wsgi_handler
dbfile: $BASE/acme_srv.db

[Certificate]
revocation_reason_check_disable: False

[Challenge]
challenge_validation_disable: False
dns_server_list: ["$DNS"]

[Order]
tnauthlist_support: False
${PROFILES:+profiles: $PROFILES}

$EAB_SECTION
CFG

# ---- 4. launcher: threaded wsgiref on $HOST:$PORT (the packaged __main__ binds 0.0.0.0:80)
cat > "$BASE/serve.py" <<'PYEOF'
import base64, io, json, os, ssl, sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, make_server
from acme2certifier.share import acme2certifier_wsgi as a2c   # reads ACME_SRV_CONFIGFILE

host, port, tls = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "true"

class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

def app(environ, start_response):
    if tls:
        environ["wsgi.url_scheme"] = "https"
    # Record the payloads of newOrder (identifiers, profile, replaces) and revokeCert
    # (certificate, reason) - no secrets - in $A2C_REQUESTS/<endpoint>.log, one JSON object a
    # line: a2c stores neither `replaces` nor the revocation reason, and tests check what
    # reached the server.
    endpoint = environ.get("PATH_INFO", "").rsplit("/", 1)[-1]
    if environ.get("REQUEST_METHOD") == "POST" and endpoint in ("neworders", "revokecert"):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            b64 = json.loads(body)["payload"]
            payload = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).decode()
            with open(os.path.join(os.environ["A2C_REQUESTS"], endpoint + ".log"), "a") as f:
                f.write(json.dumps(json.loads(payload)) + "\n")
        except Exception as e:  # a malformed request is a2c's to answer
            print(f"{endpoint} capture: {e}", flush=True)
    return a2c.application(environ, start_response)

srv = make_server(host, port, app, server_class=Server, handler_class=a2c.get_handler_cls())
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.environ["A2C_TLS_CERT"], os.environ["A2C_TLS_KEY"])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(f"acme2certifier listening on {host}:{port} tls={tls}", flush=True)
srv.serve_forever()
PYEOF

# ---- fake DNS (Debian package "pebble": pebble-challtestsrv) ------------------------
# Answers every A query with 127.0.0.1 (so gw.test, *.test ... resolve to loopback), no AAAA,
# and serves TXT records set via http://127.0.0.1:8055/set-txt (for dns-01). Listens on
# 127.0.0.1:8053 and 127.0.0.1:53 (dnspython-based servers cannot use another port).
# Shared by the *-up.sh scripts: started once, PID in /tmp/gatecert-peers/fakedns/pid.
fakedns_up() {
  local dir=${FAKEDNS_DIR:-/tmp/gatecert-peers/fakedns}
  mkdir -p "$dir"
  if [ -s "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then return 0; fi
  command -v pebble-challtestsrv >/dev/null || DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends pebble >&2
  nohup pebble-challtestsrv -dns01 "${FAKEDNS_LISTEN:-127.0.0.1:8053,127.0.0.1:53}" -http01 "" -https01 "" \
    -tlsalpn01 "" -management "${FAKEDNS_MGMT:-127.0.0.1:8055}" -defaultIPv4 127.0.0.1 -defaultIPv6 "" > "$dir/log" 2>&1 < /dev/null &
  echo $! > "$dir/pid"
  for _ in $(seq 1 50); do
    if grep -q "Starting management server" "$dir/log" 2>/dev/null; then
      sleep 0.3  # binding errors come after that line
      if kill -0 "$(cat "$dir/pid")" 2>/dev/null && ! grep -q "bind:" "$dir/log"; then return 0; fi
      kill "$(cat "$dir/pid")" 2>/dev/null; rm -f "$dir/pid"; cat "$dir/log" >&2; return 1
    fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { rm -f "$dir/pid"; cat "$dir/log" >&2; return 1; }
    sleep 0.1
  done
  return 1
}
if [ "$DNS" = 127.0.0.1 ]; then
  # A listener already taken (say by a pebble test's own challtestsrv) makes it exit at once.
  fakedns_up || { echo "[a2c-up] fake DNS did not start: ${FAKEDNS_LISTEN:-127.0.0.1:8053,127.0.0.1:53} or ${FAKEDNS_MGMT:-127.0.0.1:8055} in use?" >&2; exit 1; }
fi

# ---- 5. start ------------------------------------------------------------------------
if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "[a2c-up] already running, pid $(cat "$PIDFILE")" >&2
else
  ACME_SRV_CONFIGFILE="$BASE/acme_srv.cfg" A2C_REQUESTS="$BASE/requests" A2C_TLS_CERT="$PKI/server-chain.crt" A2C_TLS_KEY="$PKI/server.key" \
    nohup "$BASE/venv/bin/python" "$BASE/serve.py" "$HOST" "$PORT" "$TLS" > "$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
fi
scheme=http; [ "$TLS" = true ] && scheme=https
DIR_URL="$scheme://$HOST:$PORT/directory"
for _ in $(seq 1 150); do
  curl -fsS --cacert "$PKI/root_ca.crt" "$DIR_URL" >/dev/null 2>&1 && break
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { echo "[a2c-up] acme2certifier died:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
curl -fsS --cacert "$PKI/root_ca.crt" "$DIR_URL" >/dev/null || { cat "$LOG" >&2; exit 1; }
echo "DIRECTORY_URL=$DIR_URL"
echo "ROOT_PEM=$PKI/root_ca.crt"
echo "PID_FILE=$PIDFILE"
echo "REQUESTS=$BASE/requests"
if [ "$REQUIRE_EAB" = true ]; then
  "$BASE/venv/bin/python" -c 'import json,sys; [print(f"EAB_KID={k}\nEAB_HMAC={v}") for k,v in json.load(open(sys.argv[1])).items()][:1]' "$BASE/eab.json"
fi
