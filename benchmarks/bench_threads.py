"""Threads beside other CPU-bound work: one fixed small training run (a 2-layer GPT-2 on random
documents, the test suite's membership fixture's shape) in a fresh process, with one busy Python
loop running beside it, at

- 1 thread;
- leakaudit's default: the CPU budget (``leakaudit.targets.threads``) with OpenMP threads that
  wait passively (``import leakaudit`` sets ``OMP_WAIT_POLICY=PASSIVE``);
- the CPU budget with spinning OpenMP threads (``OMP_WAIT_POLICY=ACTIVE``, libgomp's behaviour
  before), to show what the setting takes away (skipped with ``--no-spinning``).

Prints wall seconds and the ratio "1 thread / default" (issue 27's goal: the default is no
slower than one thread beside one busy process, ratio >= 0.83, i.e. at most 1.2x the time).
Side by side in one run; the busy loop runs for every measurement.

    PYTHONPATH=src python benchmarks/bench_threads.py [--docs 40 --epochs 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

TRAIN = r"""
import sys, tempfile, pathlib
import leakaudit
from leakaudit.targets.threads import configure_threads
configure_threads(int(sys.argv[1]) if len(sys.argv) > 1 else None)
from leakaudit.training.lm import LMSpec, train_causal_lm, train_tokenizer
import random
rng = random.Random(0)
words = "alpha beta gamma delta patient order ticket street call lorem ipsum 1234 5521".split()
docs = [" ".join(rng.choice(words) for _ in range(40)) for _ in range({docs})]
tok = train_tokenizer(docs, vocab_size=300)
spec = LMSpec(n_layer=2, n_embd=48, n_head=2, n_ctx=48, epochs={epochs}, lr=3e-3, batch_size=8)
train_causal_lm(docs, tok, spec, seed=0, out_dir=pathlib.Path(tempfile.mkdtemp()) / "m")
"""


def _run(code: str, threads: int | None, policy: str | None, timeout: float) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["TOKENIZERS_PARALLELISM"] = "false"
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    t = time.perf_counter()
    args = [sys.executable, "-c", code] + ([str(threads)] if threads else [])
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=timeout)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--no-spinning", action="store_true", help="skip the spinning-threads run")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    from leakaudit.targets.threads import cpu_budget

    code = TRAIN.replace("{docs}", str(args.docs)).replace("{epochs}", str(args.epochs))
    budget = cpu_budget()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        one = _run(code, 1, None, args.timeout)
        default = _run(code, None, None, args.timeout)
        spin = None if args.no_spinning else _run(code, budget, "ACTIVE", args.timeout)
    finally:
        busy.kill()
        busy.wait()
    print(f"beside one busy loop, CPU budget {budget}: 1 thread {one:.1f} s, default "
          f"({budget} threads, passive wait) {default:.1f} s"
          + ("" if spin is None else f", {budget} spinning threads {spin:.1f} s"))
    if spin is not None:
        print(f"spinning threads vs 1 thread: {one / spin:.3f}x")
    ratio = one / default
    print(f"default vs 1 thread beside a busy loop: {ratio:.3f}x "
          f"(goal >= 0.83: {'met' if ratio >= 0.83 else 'NOT met'})")


if __name__ == "__main__":
    main()
