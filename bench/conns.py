#!/usr/bin/env python3
"""Connection-pressure load against a running `gatecert run` on 127.0.0.1 (driven by
bench/slowloris.sh and bench/cap.sh, which start the server and make the token).

usage: conns.py slowloris PORT ROOT_PEM SECONDS ATTACKERS CLIENTS SHAPE SOURCES
       conns.py cap PORT ROOT_PEM SECONDS CLIENTS DEVICE TOKEN CSR_B64_FILE

slowloris: ATTACKERS connections trickle one byte every 200 ms and reconnect at once when the
  server drops them; CLIENTS legitimate clients ask for cacerts in a loop, a new TLS connection
  each. SHAPE `http`: the attacker completes the TLS handshake and trickles an HTTP head that
  never ends, one TLS record per byte; SHAPE `hello`: it trickles a TLS ClientHello. SOURCES:
  the attacker's source addresses, `same` (127.0.0.1, like the clients) or a range such as
  `127.0.0.2-9` (round robin). Prints the legitimate success rate and p50/p99.
cap: CLIENTS concurrent clients enroll in a loop, a new TLS connection per request; prints
  requests, failures by kind, req/s and p50/p99.

Bounded in count and time: every loop stops at SECONDS (capped at 300), every socket has a
10 s timeout, and only 127.0.0.0/8 is ever contacted.
"""
import base64
import socket
import ssl
import sys
import threading
import time

HOST = "127.0.0.1"
NAME = "gateway.local"
CACERTS = f"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode()

mode = sys.argv[1]
port, root, seconds = int(sys.argv[2]), sys.argv[3], min(float(sys.argv[4]), 300.0)
ctx = ssl.create_default_context(cafile=root)
stop = threading.Event()
lock = threading.Lock()
lat, errors = [], {}


def request(payload, source=None, timeout=10):
    """One request on a fresh TLS connection: (status line or error kind, seconds)."""
    t = time.monotonic()
    try:
        src = (source, 0) if source else None
        with socket.create_connection((HOST, port), timeout=timeout, source_address=src) as raw:
            with ctx.wrap_socket(raw, server_hostname=NAME) as s:
                s.sendall(payload)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        return data.split(b"\r\n", 1)[0].decode("latin-1") or "empty reply", time.monotonic() - t
    except (OSError, ssl.SSLError) as e:
        return type(e).__name__, time.monotonic() - t


def client(payload, deadline):
    while not stop.is_set() and time.monotonic() < deadline:
        line, dt = request(payload)
        with lock:
            if line.startswith("HTTP/1.1 200"):
                lat.append(dt)
            else:
                errors[line] = errors.get(line, 0) + 1


def pct(p):
    if not lat:
        return float("nan")
    s = sorted(lat)
    return s[min(len(s) - 1, int(len(s) * p))] * 1e3


def sources(spec):
    if spec == "same":
        return [HOST]
    base, _, last = spec.rpartition(".")
    first, _, end = last.partition("-")
    return [f"{base}.{i}" for i in range(int(first), int(end or first) + 1)]


def run_clients(n, payload):
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    workers = [threading.Thread(target=client, args=(payload, deadline), daemon=True) for _ in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 15)
    return time.monotonic() - start


def report(what, n, elapsed):
    done = len(lat) + sum(errors.values())
    rate = 100.0 * len(lat) / done if done else float("nan")
    print(f"  {what}: {n} clients, {done} requests in {elapsed:.1f} s, {len(lat)} ok "
          f"({rate:.2f}%), {len(lat) / elapsed:.1f} ok/s, p50 {pct(0.5):.1f} ms, "
          f"p99 {pct(0.99):.1f} ms, max {pct(1.0):.1f} ms, failed {sum(errors.values())} {errors}")


if mode == "slowloris":
    attackers, clients, shape, spec = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8]
    srcs = sources(spec)
    astats = {"opened": 0, "dropped": 0}
    HEAD = f"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: {NAME}\r\nX-Pad: ".encode()
    HELLO = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03])

    def attacker(i):
        src = srcs[i % len(srcs)]
        deadline = time.monotonic() + seconds + 5
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                raw = socket.create_connection((HOST, port), timeout=10, source_address=(src, 0))
                s = ctx.wrap_socket(raw, server_hostname=NAME) if shape == "http" else raw
                lead = HEAD if shape == "http" else HELLO
                with lock:
                    astats["opened"] += 1
                n = 0
                while not stop.is_set() and time.monotonic() < deadline:
                    s.send(lead[n:n + 1] if n < len(lead) else b"a")
                    n += 1
                    time.sleep(0.2)
            except (OSError, ssl.SSLError):
                with lock:
                    astats["dropped"] += 1
                time.sleep(0.01)  # reconnect at once, without spinning on a refusal

    threads = [threading.Thread(target=attacker, args=(i,), daemon=True) for i in range(attackers)]
    for t in threads:
        t.start()
    time.sleep(2)  # let them take the slots
    elapsed = run_clients(clients, CACERTS)
    stop.set()
    print(f"  attackers: {attackers} trickling ({shape}) from {', '.join(srcs)}: "
          f"{astats['opened']} connections opened, {astats['dropped']} dropped by the server")
    report("legitimate cacerts", clients, elapsed)
    done = len(lat) + sum(errors.values())
    sys.exit(0 if done and len(lat) >= 0.99 * done else 1)

if mode == "cap":
    clients, device, token, csr_file = int(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8]
    csr = open(csr_file, "rb").read().strip()
    auth = base64.b64encode(f"{device}:{token}".encode()).decode()
    ENROLL = (
        f"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: {NAME}\r\n"
        f"Authorization: Basic {auth}\r\nContent-Type: application/pkcs10\r\n"
        f"Content-Length: {len(csr)}\r\n\r\n"
    ).encode() + csr
    elapsed = run_clients(clients, ENROLL)
    report("simpleenroll", clients, elapsed)
    sys.exit(0 if lat and not errors else 1)

sys.exit(f"unknown mode {mode}")
