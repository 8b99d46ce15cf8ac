#!/usr/bin/env bash
# Regenerates the seed corpora under fuzz/corpus/ (committed; each file < 4 KiB).
# Needs openssl and python3. Keys and certificates are throwaway, made fresh each run.
set -euo pipefail
cd "$(dirname "$0")"
C=corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- uci: the shipped example (split, to keep seeds small), the design brief's sketch, acme-common,
# and the quoting rules.
awk '/^config ca /{f=1} !f' ../doc/gatecert.config.example > $C/uci/example-main-certificate
awk '/^config ca /{f=1} f' ../doc/gatecert.config.example > $C/uci/example-ca-est-broker
cat > $C/uci/design-sketch <<'UCI'
config gatecert 'main'
	option state_dir '/etc/gatecert'
	option log 'syslog'                # syslog | stderr
	option log_level 'info'

config certificate 'gateway'           # the gateway's own certificate; more sections allowed
	option directory 'https://acme-v02.api.letsencrypt.org/directory'
	option ca_bundle ''                # PEM to trust for a private ACME CA's HTTPS
	option email 'ops@example.com'
	option eab_kid ''
	option eab_hmac_key ''
	list domain 'gw1.example.com'
	list ip '192.0.2.10'
	option challenge 'http-01'         # http-01 | tls-alpn-01 | dns-01
	option http_mode 'standalone'      # standalone | webroot
	option http_listen '[::]:80'
	option webroot '/www'
	option tls_alpn_listen '[::]:443'
	option dns_hook '/usr/libexec/gatecert/dns-hook'
	option key_type 'ec256'            # ec256 | ec384
	option profile ''                  # ACME profile, e.g. shortlived
	option deploy_hook '/etc/init.d/uhttpd reload'

config ca 'local'                      # the local issuing CA for leaves
	option lifetime '24h'
	option max_lifetime '7d'
	list allow_suffix 'sensors.example.com'

config est 'est'
	option listen '[::]:8443'
UCI
cat > $C/uci/acme-common <<'UCI'
config acme
	option account_email 'email@example.org'
	option debug 0

config cert 'example'
	option enabled 1
	option use_staging 1
	option keylength 'ec-256'
	option validation_method 'dns'
	option dns 'dns_cf'
	list credentials 'CF_Key="key"'
	list domains 'example.org'
	list domains 'www.example.org'
UCI
printf '%s\n' \
  "package gatecert" \
  "c gatecert main; o log stderr" \
  "config certificate 'a'" \
  "	option deploy_hook \"echo \\\"done\\\" \\\\ ok\"" \
  "	list domain 'a.example'\"\"b" \
  "	list domain a\\ b#comment" \
  "	option email 'multi" \
  "line' \\" \
  "" \
  "config ca '' # anonymous" \
  "	option lifetime 90s" \
  "config certificate 'a'" \
  "	option challenge dns-01" > $C/uci/quoting
printf 'config est\r\n\toption listen :8443\r\n\toption enabled "1"\r\n' > $C/uci/crlf

# --- csr: openssl-made CSRs, DER and base64 as EST receives them (RFC 7030 §4.2.1).
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/k1" \
  -subj /CN=s1.sensors.example.com -addext "subjectAltName=DNS:s1.sensors.example.com,IP:10.0.0.7" \
  -outform DER -out $C/csr/p256-san.der 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout "$tmp/k2" \
  -subj /CN=10.0.0.8 -outform DER -out $C/csr/p384-cn-ip.der 2>/dev/null
openssl req -new -newkey ed25519 -nodes -keyout "$tmp/k3" -subj /CN=ed.local \
  -outform DER -out $C/csr/ed25519-cn.der 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout "$tmp/k4" -subj /CN=rsa.local \
  -addext "subjectAltName=DNS:rsa.local,DNS:rsa2.local" -outform DER -out $C/csr/rsa2048-san.der 2>/dev/null
openssl req -new -newkey rsa:1024 -nodes -keyout "$tmp/k5" -subj /CN=weak.local \
  -outform DER -out $C/csr/rsa1024-weak.der 2>/dev/null
openssl base64 -in $C/csr/p256-san.der > $C/csr/p256-san.b64
openssl base64 -in $C/csr/rsa2048-san.der > $C/csr/rsa2048-san.b64
openssl base64 -A -in $C/csr/ed25519-cn.der > $C/csr/ed25519-cn.b64

# --- pkcs7_roundtrip: openssl's crl2pkcs7 output and the layout pkcs7::certs_only writes.
openssl req -x509 -new -key "$tmp/k1" -subj /CN=s1 -days 1 -outform DER -out "$tmp/c1.der"
openssl req -x509 -new -key "$tmp/k3" -subj /CN=ed -days 1 -outform DER -out "$tmp/c2.der"
openssl x509 -inform DER -in "$tmp/c1.der" > "$tmp/c1.pem"
openssl x509 -inform DER -in "$tmp/c2.der" > "$tmp/c2.pem"
openssl crl2pkcs7 -nocrl -certfile "$tmp/c1.pem" -outform DER -out $C/pkcs7_roundtrip/openssl-one
cat "$tmp/c1.pem" "$tmp/c2.pem" > "$tmp/both.pem"
openssl crl2pkcs7 -nocrl -certfile "$tmp/both.pem" -outform DER -out $C/pkcs7_roundtrip/openssl-two
python3 - "$tmp/c1.der" "$tmp/c2.der" <<'PY'
import sys
def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        head = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + head + body
SIGNED = bytes.fromhex("2a864886f70d010702")
DATA = bytes.fromhex("2a864886f70d010701")
def certs_only(certs):  # mirrors gatecert::pkcs7::certs_only
    signed = tlv(0x02, b"\x01") + tlv(0x31, b"") + tlv(0x30, tlv(0x06, DATA)) \
        + tlv(0xa0, b"".join(certs)) + tlv(0x31, b"")
    return tlv(0x30, tlv(0x06, SIGNED) + tlv(0xa0, tlv(0x30, signed)))
certs = [open(p, "rb").read() for p in sys.argv[1:]]
open("corpus/pkcs7_roundtrip/ours-two", "wb").write(certs_only(certs))
open("corpus/pkcs7_roundtrip/ours-empty", "wb").write(certs_only([]))
# Structured-mode inputs: a count byte, then arbitrary's length-prefixed byte strings.
open("corpus/pkcs7_roundtrip/list-small", "wb").write(bytes([3, 2, 0x30, 0x00, 0x00, 1, 0xff, 0xfe, 5]) + b"hello")
PY
# certs_only's layout is byte-identical to crl2pkcs7's for the same certificates: keep one.
cmp corpus/pkcs7_roundtrip/ours-two corpus/pkcs7_roundtrip/openssl-two && rm corpus/pkcs7_roundtrip/openssl-two
ls -l $C/*

# --- est_body / http_request: EST requests as a client sends them (RFC 7030 §4), with the
# fuzz fixture's known token (device s1, token fuzz-token; see fuzz_targets/est_body.rs).
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/k6" \
  -subj /CN=s1.local -addext "subjectAltName=DNS:s1.local" -outform DER -out "$tmp/s1.der" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/k7" \
  -subj /CN=10.0.0.7 -outform DER -out "$tmp/ip.der" 2>/dev/null
python3 - "$tmp/s1.der" "$tmp/ip.der" <<'PY'
import base64, sys
s1, ip = (open(p, "rb").read() for p in sys.argv[1:3])
def b64lines(der):
    b = base64.b64encode(der)
    return b"".join(b[i:i + 64] + b"\r\n" for i in range(0, len(b), 64))
AUTH = b"Authorization: Basic " + base64.b64encode(b"s1:fuzz-token") + b"\r\n"
def post(op, body, auth=AUTH, extra=b""):
    return (b"POST /.well-known/est/" + op + b" HTTP/1.1\r\nHost: gw.local\r\n" + auth
            + b"Content-Type: application/pkcs10\r\nContent-Transfer-Encoding: base64\r\n" + extra
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
def get(op):
    return b"GET /.well-known/est/" + op + b" HTTP/1.1\r\nHost: gw.local\r\n\r\n"
est = {
    "cacerts": get(b"cacerts"),
    "csrattrs": get(b"csrattrs"),
    "simpleenroll": post(b"simpleenroll", b64lines(s1)),
    "simpleenroll-ip-cn": post(b"simpleenroll", b64lines(ip)),
    "serverkeygen": post(b"serverkeygen", b64lines(s1)),
    "simplereenroll-no-cert": post(b"simplereenroll", b64lines(s1), auth=b""),
    "simpleenroll-bad-token": post(b"simpleenroll", b64lines(s1),
                                   auth=b"Authorization: Basic " + base64.b64encode(b"s1:nope") + b"\r\n"),
}
for name, req in est.items():
    open("corpus/est_body/" + name, "wb").write(req)
# http_request: the first byte picks the limits (0 = the defaults, 3 = tiny).
http = {
    "get": b"\x00" + est["cacerts"],
    "post": b"\x00" + est["simpleenroll"],
    "post-tiny-limits": b"\x03" + est["simpleenroll-ip-cn"],
    "pipelined": b"\x00" + est["csrattrs"] + est["cacerts"],
    "chunked": b"\x00POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "two-lengths": b"\x00POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nxx",
    "bare-lf": b"\x00POST /x?y=1 HTTP/1.0\nContent-Length: 2\n\nhi",
}
for name, req in http.items():
    open("corpus/http_request/" + name, "wb").write(req)
PY
