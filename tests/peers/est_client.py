#!/usr/bin/env python3
"""A test-only EST (RFC 7030) client in Python, written the way off-the-shelf client libraries
behave, to check gatecert against a client that shares none of its code:

- every POST first goes out without credentials; the 401 + WWW-Authenticate: Basic challenge
  (RFC 7235 §3.1) is answered by repeating the request with HTTP Basic (as libcurl's --anyauth,
  Python's HTTPBasicAuthHandler and libest do);
- the issued certificate is taken as the FIRST certificate of the certs-only PKCS#7 reply, and a
  reply with more than one certificate is refused (as globalsign/est's readCertResponse does);
- the chain comes from /cacerts;
- serverkeygen's multipart reply is split by its boundary, the key part read as base64 PKCS#8.

Request bodies: Transfer-Encoding: chunked (http.client sends an iterable body chunked), as Go's
net/http and Python clients do when the length is unknown; CHUNKED = False sends Content-Length.

Usage: est_client.py PORT ROOT_PEM OUTDIR DEVICE TOKEN DEVICE2 TOKEN2 [LABEL]
Runs cacerts, simpleenroll (DEVICE/TOKEN), simplereenroll (with that certificate) and
serverkeygen (DEVICE2/TOKEN2); writes the PEM results to OUTDIR; prints one line per step;
exits 1 with the reason on the first failure. Needs the `cryptography` package.
"""

import base64
import http.client
import os
import socket
import ssl
import sys
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

# The chunked switch: on, as clients that stream their bodies send them (RFC 9112 §7.1).
CHUNKED = True

# A strict client: PKCS#7 that is not DER (e.g. an unsorted SET OF certificates) is an error,
# not the warning newer `cryptography` versions print before falling back to BER.
warnings.filterwarnings("error", message=".*could not be parsed as DER.*")

SERVER_NAME = "gateway.local"
TIMEOUT = 10


class Fail(Exception):
    pass


class Connection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1:PORT with SNI and host-name check for SERVER_NAME (no DNS needed)."""

    def __init__(self, port, context):
        super().__init__(SERVER_NAME, port, context=context, timeout=TIMEOUT)
        self._ctx = context

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), TIMEOUT)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=SERVER_NAME)


class EstClient:
    def __init__(self, port, root_pem, label=None, cert=None, key=None):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=root_pem)
        if cert:
            self.ctx.load_cert_chain(cert, key)
        self.prefix = "/.well-known/est/" + (label + "/" if label else "")
        self.challenges = 0

    def request(self, method, op, body=None, auth=None, headers=None):
        conn = Connection(self.port, self.ctx)
        hdrs = dict(headers or {})
        if auth:
            token = base64.b64encode(("%s:%s" % auth).encode()).decode()
            hdrs["Authorization"] = "Basic " + token
        try:
            if body is not None and CHUNKED:
                # An iterable body: http.client sends it with Transfer-Encoding: chunked.
                chunks = [body[i:i + 256] for i in range(0, len(body), 256)]
                conn.request(method, self.prefix + op, body=iter(chunks), headers=hdrs,
                             encode_chunked=True)
            else:
                conn.request(method, self.prefix + op, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def post_with_challenge(self, op, body, auth):
        """The RFC 7235 round-trip: no credentials first, then Basic after the challenge."""
        hdrs = {"Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "base64"}
        status, headers, data = self.request("POST", op, body, None, hdrs)
        if status == 401 and auth is not None:
            challenge = headers.get("www-authenticate", "")
            if not challenge.lower().startswith("basic"):
                raise Fail("%s: 401 without a Basic challenge: %r" % (op, challenge))
            self.challenges += 1
            status, headers, data = self.request("POST", op, body, auth, hdrs)
        if status != 200:
            raise Fail("%s: HTTP %d: %s" % (op, status, data.decode(errors="replace")))
        return headers, data

    def cacerts(self):
        status, headers, data = self.request("GET", "cacerts")
        if status != 200:
            raise Fail("cacerts: HTTP %d" % status)
        return pkcs7.load_der_pkcs7_certificates(base64.b64decode(data))

    def _issued(self, op, data):
        certs = pkcs7.load_der_pkcs7_certificates(base64.b64decode(data))
        if len(certs) != 1:
            raise Fail("%s: %d certificates returned, expected only the issued one" % (op, len(certs)))
        return certs[0]

    def simpleenroll(self, csr_der, auth):
        _, data = self.post_with_challenge("simpleenroll", b64(csr_der), auth)
        return self._issued("simpleenroll", data)

    def simplereenroll(self, csr_der):
        _, data = self.post_with_challenge("simplereenroll", b64(csr_der), None)
        return self._issued("simplereenroll", data)

    def serverkeygen(self, csr_der, auth):
        headers, data = self.post_with_challenge("serverkeygen", b64(csr_der), auth)
        ctype = headers.get("content-type", "")
        if not ctype.startswith("multipart/mixed") or "boundary=" not in ctype:
            raise Fail("serverkeygen: content-type %r" % ctype)
        boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
        key = cert = None
        for part in data.split(b"--" + boundary)[1:]:
            if part.startswith(b"--"):
                break
            head, _, body = part.strip(b"\r\n").partition(b"\r\n\r\n")
            head = head.lower()
            if b"application/pkcs8" in head:
                key = serialization.load_der_private_key(base64.b64decode(body), None)
            elif b"smime-type=certs-only" in head:
                cert = self._issued("serverkeygen", body)
        if key is None or cert is None:
            raise Fail("serverkeygen: missing key or certificate part")
        return key, cert


def b64(der):
    return base64.encodebytes(der)


def make_csr(name, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.DER)


def pub(k):
    return k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def write(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def main(argv):
    port, root, out, dev, tok, dev2, tok2 = argv[1:8]
    label = argv[8] if len(argv) > 8 else None
    port = int(port)
    pem = serialization.Encoding.PEM
    client = EstClient(port, root, label)

    ca = client.cacerts()
    write(os.path.join(out, "py-cacerts.pem"), b"".join(c.public_bytes(pem) for c in ca))
    print("cacerts: %d certificates" % len(ca))

    name = "%s.sensors.local" % dev
    key, csr = make_csr(name)
    cert = client.simpleenroll(csr, (dev, tok))
    if pub(cert.public_key()) != pub(key.public_key()):
        raise Fail("simpleenroll: the first certificate is not for our key")
    write(os.path.join(out, "py-leaf.pem"), cert.public_bytes(pem))
    write(os.path.join(out, "py-leaf.key"), key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    print("simpleenroll: serial %X after %d challenge(s)" % (cert.serial_number, client.challenges))

    again = EstClient(port, root, label, os.path.join(out, "py-leaf.pem"),
                      os.path.join(out, "py-leaf.key"))
    key2, csr2 = make_csr(name)
    cert2 = again.simplereenroll(csr2)
    if pub(cert2.public_key()) != pub(key2.public_key()) or cert2.serial_number == cert.serial_number:
        raise Fail("simplereenroll: not a new certificate for the new key")
    write(os.path.join(out, "py-reenrolled.pem"), cert2.public_bytes(pem))
    print("simplereenroll: serial %X" % cert2.serial_number)

    name2 = "%s.sensors.local" % dev2
    _, csr3 = make_csr(name2)
    gen_key, cert3 = client.serverkeygen(csr3, (dev2, tok2))
    if pub(cert3.public_key()) != pub(gen_key.public_key()):
        raise Fail("serverkeygen: the key part does not belong to the certificate")
    write(os.path.join(out, "py-keygen.pem"), cert3.public_bytes(pem))
    print("serverkeygen: serial %X, key %d bytes of PKCS#8" % (
        cert3.serial_number,
        len(gen_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))))
    print("chunked bodies: %s" % ("on" if CHUNKED else "off (Content-Length)"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (Fail, UserWarning) as e:
        print("est_client.py: %s" % e, file=sys.stderr)
        sys.exit(1)
