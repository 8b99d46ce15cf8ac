#!/usr/bin/env python3
"""ari_double.py - a small ACME (RFC 8555) test double whose ARI window (RFC 9773) the test moves.

Test-only: it does not check JWS signatures or nonces and pre-authorizes every identifier (its
orders are `ready` at once), so it must never listen anywhere but 127.0.0.1. It serves the whole
flow gatecert walks: directory, newNonce, newAccount, newOrder, authorization, finalize (with
the order `valid` in the finalize response), certificate, and renewalInfo.

Usage: ari_double.py WORKDIR PORT
  WORKDIR/root.pem         written at start: the CA's root; its TLS certificate chains to it too
  WORKDIR/window.json      read at every renewalInfo request:
                           {"start": RFC3339, "end": RFC3339, "retry_after": seconds,
                            "only": certID or null}
                           with "only" set, any other certificate gets a window 30 days ahead
  WORKDIR/requests.log     appended, one JSON object a line:
                           {"t": unix, "op": "order", "replaces": certID|null} and
                           {"t": unix, "op": "renewal-info", "id": certID}
  WORKDIR/ready            written once it listens
Certificates are valid for 90 days from now.
"""

import base64
import datetime
import http.server
import ipaddress
import json
import os
import ssl
import sys
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

WORK, PORT = sys.argv[1], int(sys.argv[2])
BASE = f"https://127.0.0.1:{PORT}"
LOCK = threading.Lock()
ORDERS = {}


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def ca_cert(name, key, issuer_name, issuer_key, path_len):
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - datetime.timedelta(minutes=5))
        .not_valid_after(now() + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer_key is not key:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    return b.sign(issuer_key, hashes.SHA256())


ROOT_KEY = ec.generate_private_key(ec.SECP256R1())
ROOT = ca_cert("ari double root", ROOT_KEY, "ari double root", ROOT_KEY, 1)
INT_KEY = ec.generate_private_key(ec.SECP256R1())
INT = ca_cert("ari double issuing", INT_KEY, "ari double root", ROOT_KEY, 0)
PEM = serialization.Encoding.PEM


def leaf(public_key, sans):
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(INT.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - datetime.timedelta(minutes=5))
        .not_valid_after(now() + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName(sans), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(INT_KEY.public_key()), False
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    )
    return b.sign(INT_KEY, hashes.SHA256())


def log(entry):
    entry["t"] = int(now().timestamp())
    with LOCK, open(os.path.join(WORK, "requests.log"), "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("ari_double: " + fmt % args + "\n")

    def reply(self, code, body=b"", ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Replay-Nonce", base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.reply(200 if self.path == "/nonce" else 404)

    def do_GET(self):
        if self.path == "/dir":
            return self.reply(200, {
                "newNonce": f"{BASE}/nonce", "newAccount": f"{BASE}/acct",
                "newOrder": f"{BASE}/order", "revokeCert": f"{BASE}/revoke",
                "keyChange": f"{BASE}/key-change", "renewalInfo": f"{BASE}/renewal-info",
            })
        if self.path == "/nonce":
            return self.reply(204)
        if self.path.startswith("/renewal-info/"):
            cert_id = self.path[len("/renewal-info/"):]
            log({"op": "renewal-info", "id": cert_id})
            with open(os.path.join(WORK, "window.json")) as f:
                w = json.load(f)
            if w.get("only") not in (None, cert_id):
                later = lambda d: (now() + datetime.timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ")
                w["start"], w["end"] = later(30), later(31)
            return self.reply(
                200,
                {"suggestedWindow": {"start": w["start"], "end": w["end"]}},
                headers=[("Retry-After", str(w["retry_after"]))],
            )
        self.reply(404)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        jws = json.loads(self.rfile.read(n) or b"{}")
        payload = b64url_decode(jws.get("payload", "")) if jws.get("payload") else b""
        body = json.loads(payload) if payload else None
        p = self.path
        if p == "/acct":
            return self.reply(201, {"status": "valid", "contact": []},
                              headers=[("Location", f"{BASE}/acct/1")])
        if p == "/order":
            with LOCK:
                oid = str(len(ORDERS) + 1)
                ORDERS[oid] = {"identifiers": body["identifiers"], "cert": None}
            log({"op": "order", "replaces": body.get("replaces")})
            return self.reply(201, self.order(oid), headers=[("Location", f"{BASE}/order/{oid}")])
        if p.startswith("/order/"):
            return self.reply(200, self.order(p.rsplit("/", 1)[1]))
        if p.startswith("/authz/"):
            oid = p.rsplit("/", 1)[1]
            return self.reply(200, {"status": "valid", "challenges": [],
                                    "identifier": ORDERS[oid]["identifiers"][0]})
        if p.startswith("/finalize/"):
            oid = p.rsplit("/", 1)[1]
            csr = x509.load_der_x509_csr(b64url_decode(body["csr"]))
            sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            cert = leaf(csr.public_key(), list(sans))
            ORDERS[oid]["cert"] = cert.public_bytes(PEM) + INT.public_bytes(PEM)
            return self.reply(200, self.order(oid), headers=[("Location", f"{BASE}/order/{oid}")])
        if p.startswith("/cert/"):
            return self.reply(200, ORDERS[p.rsplit("/", 1)[1]]["cert"],
                              ctype="application/pem-certificate-chain")
        self.reply(404, {"type": "urn:ietf:params:acme:error:malformed", "detail": p})

    def order(self, oid):
        o = ORDERS[oid]
        out = {
            "status": "valid" if o["cert"] else "ready",
            "expires": (now() + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "identifiers": o["identifiers"],
            "authorizations": [f"{BASE}/authz/{oid}"],
            "finalize": f"{BASE}/finalize/{oid}",
        }
        if o["cert"]:
            out["certificate"] = f"{BASE}/cert/{oid}"
        return out


def main():
    tls_key = ec.generate_private_key(ec.SECP256R1())
    tls = leaf(tls_key.public_key(), [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    with open(os.path.join(WORK, "root.pem"), "wb") as f:
        f.write(ROOT.public_bytes(PEM))
    chain = os.path.join(WORK, "tls-chain.pem")
    key = os.path.join(WORK, "tls-key.pem")
    with open(chain, "wb") as f:
        f.write(tls.public_bytes(PEM) + INT.public_bytes(PEM))
    with open(key, "wb") as f:
        f.write(tls_key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    os.chmod(key, 0o600)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, key)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    open(os.path.join(WORK, "ready"), "w").close()
    srv.serve_forever()


if __name__ == "__main__":
    main()
