#!/usr/bin/env python3
"""Load against a running `gatecert run`: IDLE slowloris connections plus CLIENTS concurrent
well-behaved EST enrollments for SECONDS; samples the server's memory from /proc/PID/status.
Driven by bench/load.sh (which starts the server and makes the token).

usage: load.py PID PORT ROOT_PEM DEVICE TOKEN CSR_B64_FILE SECONDS IDLE CLIENTS

Slowloris: half the idle connections stop inside the TLS ClientHello (5 bytes of a record
header), half finish the handshake and send a partial HTTP header; every 2 s each one sends one
more header byte, and a dropped one is reopened (at most IDLE open, a bounded reconnect rate).
Exit status 0 when the service is still up at the end, served well-behaved clients during the
load, and serves one more enrollment after it.
"""
import base64
import os
import socket
import ssl
import sys
import threading
import time

pid, port, root, device, token, csr_file, seconds, idle, clients = sys.argv[1:10]
pid, port, seconds, idle, clients = int(pid), int(port), float(seconds), int(idle), int(clients)
csr = open(csr_file, "rb").read().strip()
auth = base64.b64encode(f"{device}:{token}".encode()).decode()
ctx = ssl.create_default_context(cafile=root)
REQ = (
    f"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: gateway.local:{port}\r\n"
    f"Authorization: Basic {auth}\r\nContent-Type: application/pkcs10\r\n"
    f"Content-Length: {len(csr)}\r\n\r\n"
).encode() + csr


def status(field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None


def alive():
    return status("VmRSS") is not None


def enroll(timeout=10):
    """One enrollment on a fresh TLS connection: (ok, seconds, what)."""
    t = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname="gateway.local") as s:
                s.sendall(REQ)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        ok = line.startswith("HTTP/1.1 200")
        return ok, time.monotonic() - t, line if not ok else "200"
    except (OSError, ssl.SSLError) as e:
        return False, time.monotonic() - t, type(e).__name__


stop = threading.Event()
lock = threading.Lock()
lat, errors = [], {}
idle_socks = []
idle_stats = {"opened": 0, "reopened": 0}


def open_idle(i):
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2 == 0:
            raw.sendall(b"\x16\x03\x01\x02")  # a TLS record header, one byte short
            return raw
        s = ctx.wrap_socket(raw, server_hostname="gateway.local")
        s.sendall(b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: gateway.local\r\n")
        return s
    except (OSError, ssl.SSLError):
        return None


def slowloris():
    for i in range(idle):
        if stop.is_set():
            return
        s = open_idle(i)
        if s is not None:
            idle_socks.append((i, s))
            idle_stats["opened"] += 1
    while not stop.wait(2.0):
        budget = 50  # reopen at most 50 dropped connections per round
        for k, (i, s) in enumerate(list(idle_socks)):
            try:
                s.send(b"X" if i % 2 else b"\x00")
            except (OSError, ssl.SSLError):
                try:
                    s.close()
                except OSError:
                    pass
                n = open_idle(i) if budget > 0 else None
                budget -= 1
                if n is not None:
                    idle_socks[k] = (i, n)
                    idle_stats["reopened"] += 1


def client():
    while not stop.is_set():
        ok, dt, what = enroll()
        with lock:
            if ok:
                lat.append(dt)
            else:
                errors[what] = errors.get(what, 0) + 1
                time.sleep(0.05)


def mib(kb):
    return "gone" if kb is None else f"{kb / 1024:.1f} MiB"


rss_before = status("VmRSS")
print(f"server pid {pid}: RSS before {mib(rss_before)} (VmHWM {mib(status('VmHWM'))})")
lt = threading.Thread(target=slowloris, daemon=True)
lt.start()
time.sleep(min(5.0, seconds / 4))
print(f"slowloris: {len(idle_socks)} idle connections open")
start = time.monotonic()
workers = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
for w in workers:
    w.start()
peak_rss = 0
while time.monotonic() - start < seconds:
    time.sleep(1)
    r = status("VmRSS")
    if r is None:
        break
    peak_rss = max(peak_rss, r)
elapsed = time.monotonic() - start
stop.set()
for w in workers:
    w.join(15)
hwm = status("VmHWM")
for _, s in idle_socks:
    try:
        s.close()
    except OSError:
        pass
time.sleep(5)
rss_after = status("VmRSS")
final = enroll()
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] * 1e3 if lat else float("nan")
print(f"slowloris: {idle_stats['opened']} opened, {idle_stats['reopened']} reopened after the server dropped them")
print(f"well-behaved: {clients} concurrent clients for {elapsed:.0f} s: {len(lat)} enrollments "
      f"({len(lat) / elapsed:.1f}/s), p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms, "
      f"errors {sum(errors.values())} {errors}")
print(f"memory: RSS before {mib(rss_before)}, peak sampled RSS {mib(peak_rss)}, "
      f"VmHWM {mib(hwm)}, RSS after (5 s idle) {mib(rss_after)}")
up = alive() and final[0]
print(f"service {'up' if up else 'DOWN'}; enrollment after the load: {final[2]}")
sys.exit(0 if up and lat else 1)
