"""The lab in two lanes (itself and a helper process, one thread each on 2 cores;
``leakaudit.lab.lanes``) against one process using the same thread budget, side by side in one
run, each in a fresh process and a fresh output folder.

Prints wall seconds and the ratio "one process / two lanes" (higher = better). ``--busy`` runs
both beside one busy Python loop and adds the one-thread run (issue 27: beside a busy process the
default is no slower than one thread, ratio >= 0.83).

    PYTHONPATH=src python benchmarks/bench_lanes.py [--size tiny|quick] [--busy]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAB = r"""
import sys
import leakaudit
from leakaudit.targets.threads import configure_threads, cpu_budget
configure_threads(int(sys.argv[3]) or cpu_budget())
from leakaudit.lab.run import LabConfig, run_lab
cfg = getattr(LabConfig, sys.argv[2])()
run_lab(sys.argv[1], cfg, log=lambda m: None, helper_lane=sys.argv[4] == "1")
"""


def _run(out: Path, size: str, threads: int, lanes: bool, timeout: float) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["TOKENIZERS_PARALLELISM"] = "false"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", LAB, str(out), size, str(threads), "1" if lanes else "0"],
                   env=env, check=True, capture_output=True, timeout=timeout)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("tiny", "quick"), default="quick")
    ap.add_argument("--busy", action="store_true", help="beside one busy loop, and at 1 thread")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    from leakaudit.targets.threads import cpu_budget

    budget = cpu_budget()
    if budget < 2:
        print(f"CPU budget {budget}: the lab runs one lane; nothing to compare")
        return
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        with tempfile.TemporaryDirectory() as d:
            if busy:
                time.sleep(1.0)
            one = _run(Path(d) / "one", args.size, budget, False, args.timeout)
            two = _run(Path(d) / "two", args.size, budget, True, args.timeout)
            single = _run(Path(d) / "single", args.size, 1, False, args.timeout) if busy else None
    finally:
        if busy:
            busy.kill()
            busy.wait()
    where = "beside one busy loop" if busy else "idle"
    print(f"lab --{args.size}, {where}, CPU budget {budget}: one process {one:.1f} s, two lanes "
          f"{two:.1f} s" + ("" if single is None else f", one thread {single:.1f} s"))
    print(f"two lanes vs one process: {one / two:.3f}x")
    if single is not None:
        print(f"two lanes vs one thread beside a busy loop: {single / two:.3f}x (goal >= 0.83)")


if __name__ == "__main__":
    main()
