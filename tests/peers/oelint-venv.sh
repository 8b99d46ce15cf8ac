#!/usr/bin/env bash
# tests/peers/oelint-venv.sh - a Python venv under target/oelint-venv with oelint-adv (PyPI),
# pinned, for tests/packaging/oelint.sh (the Yocto layer's lint). Idempotent: a venv that already
# has the pinned version is left alone. Prints the oelint-adv path on success; exits 3 when PyPI
# can't be reached.
set -euo pipefail
cd "$(dirname "$0")/../.."
OELINT_VERSION=9.11.2
VENV=${GATECERT_OELINT_VENV:-target/oelint-venv}
BIN="$VENV/bin/oelint-adv"
if [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null)" = "oelint-adv $OELINT_VERSION" ]; then
  echo "$PWD/$BIN"
  exit 0
fi
python3 -m venv "$VENV" >&2
if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check "oelint-adv==$OELINT_VERSION" >&2; then
  echo "oelint-venv.sh: pip could not install oelint-adv $OELINT_VERSION (is PyPI reachable?)" >&2
  exit 3
fi
"$BIN" --version >&2
echo "$PWD/$BIN"
