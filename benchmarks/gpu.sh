#!/usr/bin/env bash
# The GPU benchmarks in one command, about 5 minutes on one H100 or H200 (every step has a time
# limit; the whole script stays under 10 minutes):
#   1. bench_ray.py --gpu: Ray vs in-process on the CPU cores, then batched vs per-sample scoring
#      and batched generation on the GPU (goal: batched scoring >= 10x per-sample);
#   2. bench_scoring.py --device cuda: leakaudit's batched scoring vs the official code's
#      three unbatched passes per sample, GPT-2 small target + 6-layer reference;
#   3. bench_sampling.py --device cuda: batched KV-cached sampling vs batch-1 generate().
#
#   bash benchmarks/gpu.sh            # from the repository root; needs torch with CUDA and ray
#   LOG=gpu.log bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-python}"
if [[ -n "${LOG:-}" ]]; then exec > >(tee "$LOG") 2>&1; fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "error: no CUDA device (torch.cuda.is_available() is False)" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
step() { echo; echo "== $*"; local t0=$SECONDS; timeout "$@"; echo "   ($((SECONDS - t0)) s)"; }
step 240 "$PY" benchmarks/bench_ray.py --gpu --texts 512 --samples 32 --workers 2
step 150 "$PY" benchmarks/bench_scoring.py --device cuda --samples 256 --tokens 256 --batch 32 --rounds 2
step 150 "$PY" benchmarks/bench_sampling.py --device cuda --samples 400 --batch 400 --tokens 240
