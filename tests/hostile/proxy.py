#!/usr/bin/env python3
"""A misbehaving TLS-terminating HTTP/1.1 proxy in front of pebble, for tests/hostile.rs.

usage: proxy.py LISTEN_PORT UPSTREAM_PORT CERT KEY PLAN_JSON LOG

Listens on 127.0.0.1:LISTEN_PORT with CERT/KEY (trusted by gatecert via ca_bundle), forwards
each request to https://127.0.0.1:UPSTREAM_PORT (pebble; Host is passed through, so pebble's
URLs name the proxy), and answers `Connection: close`. PLAN_JSON is a list of faults:
  {"match": "/order-plz", "fault": F, "times": N, ...}
applied to the first N requests whose path contains `match` (times -1 = always). Faults:
  status     answer `status` (with `retry_after` if given) and a problem document, no upstream
  truncate   forward, then send the headers and only the first `keep` bytes of the body, close
  slow       forward, then send the body one byte every `delay` seconds
  reset      close the client connection with a TCP RST before answering
Each request is logged to LOG as `path fault`.
"""
import http.client
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time

LISTEN, UPSTREAM, CERT, KEY, PLAN, LOG = sys.argv[1:7]
plan = json.loads(PLAN)
lock = threading.Lock()
log = open(LOG, "a", buffering=1)


def pick(path):
    with lock:
        for f in plan:
            if f["match"] in path and f.get("times", 1) != 0:
                if f.get("times", 1) > 0:
                    f["times"] -= 1
                return f
    return None


def read_request(rf):
    line = rf.readline(65536)
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers = []
    while True:
        h = rf.readline(65536)
        if h in (b"\r\n", b"\n", b""):
            break
        k, v = h.decode("latin-1").split(":", 1)
        headers.append((k.strip(), v.strip()))
    n = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
    body = rf.read(n) if n else b""
    return method, path, headers, body


def forward(method, path, headers, body):
    ctx = ssl._create_unverified_context()
    c = http.client.HTTPSConnection("127.0.0.1", int(UPSTREAM), context=ctx, timeout=30)
    hdrs = {k: v for k, v in headers if k.lower() not in ("connection", "content-length")}
    c.request(method, path, body=body or None, headers=hdrs)
    r = c.getresponse()
    data = r.read()
    out = [(k, v) for k, v in r.getheaders()
           if k.lower() not in ("connection", "content-length", "transfer-encoding")]
    c.close()
    return r.status, r.reason, out, data


def head(status, reason, headers, length):
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += [f"Content-Length: {length}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        req = read_request(self.rfile)
        if req is None:
            return
        method, path, headers, body = req
        f = pick(path)
        fault = f["fault"] if f else "-"
        log.write(f"{method} {path} {fault}\n")
        w = self.wfile
        if fault == "reset":
            raw = self.request
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
            return
        if fault == "status":
            doc = json.dumps({"type": f.get("type", "urn:ietf:params:acme:error:serverInternal"),
                              "detail": f"injected {f['status']}", "status": f["status"]}).encode()
            hdrs = [("Content-Type", "application/problem+json")]
            if "retry_after" in f:
                hdrs.append(("Retry-After", str(f["retry_after"])))
            w.write(head(f["status"], "Injected", hdrs, len(doc)) + doc)
            return
        status, reason, hdrs, data = forward(method, path, headers, body)
        if fault == "truncate":
            w.write(head(status, reason, hdrs, len(data)) + data[: f.get("keep", 10)])
            w.flush()
            return
        w.write(head(status, reason, hdrs, len(data)))
        if fault == "slow":
            for i in range(len(data)):
                w.write(data[i:i + 1])
                w.flush()
                time.sleep(f.get("delay", 0.1))
            return
        w.write(data)


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def get_request(self):
        sock, addr = super().get_request()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(CERT, KEY)
        sock.settimeout(30)
        try:
            return ctx.wrap_socket(sock, server_side=True), addr
        except (ssl.SSLError, OSError):
            sock.close()
            raise


srv = Server(("127.0.0.1", int(LISTEN)), Handler)
srv.serve_forever()
