"""DP-audit lab at full size: one-run audits of DP-SGD at each ε, of the broken no-noise and
misreported-sampling-rate pipelines (claiming ε = 1) and of an undefended model; multi-run audits
(n_models per side) of the honest and the no-noise pipeline at ε = 1. Prints the cost table
(models trained, wall time) next to ε̂, the maximum certifiable ε and the claim, and writes
``dp_audit`` records to OUT/report.jsonl. Trained models are kept in OUT/models (rerun = reuse).

    PYTHONPATH=src python benchmarks/bench_dp_audit.py --out /tmp/bench-dp-audit [--tiny]
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

from leakaudit.lab.dp_audit import DPAuditLabConfig, cost_table, run_dp_audit_lab
from leakaudit.metrics.dp_audit import NOT_A_PROOF
from leakaudit.report.records import JsonlWriter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tiny", action="store_true", help="a smoke run: 100 canaries, 2 models per side, ε = 1")
    ap.add_argument("--models", type=int, default=32, help="multi-run models per side")
    a = ap.parse_args()
    cfg = DPAuditLabConfig(n_models=a.models)
    if a.tiny:
        cfg = replace(cfg, epsilons=(1.0,), n_canaries=100, n_models=2, n_train=200)
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with JsonlWriter(a.out / "report.jsonl") as w:
        results = run_dp_audit_lab(cfg, store_dir=a.out / "models", writer=w)
    print("\n".join(cost_table(results)))
    print(NOT_A_PROOF)
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
