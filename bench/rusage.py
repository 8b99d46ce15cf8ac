#!/usr/bin/env python3
"""Runs a command and writes "user sys wall maxrss_kib" to FILE, like
`/usr/bin/time -o FILE -f '%U %S %e %M'` but with microsecond CPU times (wait4's rusage; the
`time` binary rounds to 10 ms, too coarse for a 10 ms client).

usage: rusage.py FILE COMMAND [ARGS...]
"""
import os
import sys
import time

out, argv = sys.argv[1], sys.argv[2:]
t = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.monotonic() - t
with open(out, "w") as f:
    f.write(f"{ru.ru_utime:.4f} {ru.ru_stime:.4f} {wall:.3f} {ru.ru_maxrss}\n")
sys.exit(os.waitstatus_to_exitcode(status))
