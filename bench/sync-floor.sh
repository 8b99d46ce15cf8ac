#!/bin/sh
# The floor under "bytes written per request" for a request that must be durable before it is
# answered: one line appended to a file and made durable with fdatasync(2), as /proc/PID/io
# write_bytes counts it (a whole page each time a clean page is dirtied). Compared with the same
# lines appended and synced once for all, as a group commit does.
#
# usage: bench/sync-floor.sh [DIR]   (default: $TMPDIR or /tmp; use the state directory's file
# system for its figure). 20 appends of each kind; the file is removed.
set -eu
dir=${1:-${TMPDIR:-/tmp}}
python3 - "$dir" <<'PY'
import os, sys, tempfile
def written():
    with open('/proc/self/io') as f:
        return next(int(l.split()[1]) for l in f if l.startswith('write_bytes'))
fd, path = tempfile.mkstemp(dir=sys.argv[1], prefix='gatecert-sync-floor.')
try:
    os.write(fd, b'x' * 100)
    os.fdatasync(fd)
    n = 20
    for size in (300, 1000):
        w0 = written()
        for _ in range(n):
            os.write(fd, b'y' * (size - 1) + b'\n')
            os.fdatasync(fd)
        print(f'{size:5d} B line, fdatasync after each:  {(written() - w0) / n:7.0f} B written per line')
    w0 = written()
    for _ in range(n):
        os.write(fd, b'z' * 299 + b'\n')
    os.fdatasync(fd)
    print(f'  300 B line, one fdatasync for {n}:    {(written() - w0) / n:7.0f} B written per line')
finally:
    os.close(fd)
    os.unlink(path)
PY
