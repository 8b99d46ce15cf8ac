#!/usr/bin/env bash
# tests/peers/pyvenv.sh — a Python venv under target/pyvenv with prometheus_client (PyPI), used
# by the metrics unit tests (src/report/metrics_tests.rs) to parse gatecert's metrics with a real
# Prometheus text-format parser.
# Idempotent: a venv that already imports prometheus_client is left alone.
# Prints the venv's python path on success; exits 3 when PyPI can't be reached.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${GATECERT_PYVENV:-target/pyvenv}
PY="$VENV/bin/python"
if [ -x "$PY" ] && "$PY" -c 'import prometheus_client.parser' 2>/dev/null; then
  echo "$PWD/$PY"
  exit 0
fi
python3 -m venv "$VENV" >&2
if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check prometheus_client >&2; then
  echo "pyvenv.sh: pip could not install prometheus_client (is PyPI reachable?)" >&2
  exit 3
fi
"$PY" -c 'import prometheus_client.parser' >&2
echo "$PWD/$PY"
