"""DP-audit lab at full size: one-run audits of DP-SGD at each ε, of the broken no-noise and
misreported-sampling-rate pipelines (claiming ε = 1) and of an undefended model; multi-run audits
(n_models per side, ClipBKD canary, a fifth of the runs choose the threshold) of the honest and
the no-noise pipeline at ε = 1; with --lm also the LM world (tiny GPT-2, 200 secret canaries:
DP-SGD at each ε, noise off claiming ε = 1, undefended). Prints the cost table
(models trained, wall time) next to ε̂, the maximum certifiable ε and the claim, and writes
``dp_audit`` records to OUT/report.jsonl. Trained models are kept in OUT/models (rerun = reuse).

    PYTHONPATH=src python benchmarks/bench_dp_audit.py --out /tmp/bench-dp-audit [--lm] [--tiny]
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

from leakaudit.lab.dp_audit import DPAuditLabConfig, cost_table, run_dp_audit_lab
from leakaudit.metrics.dp_audit import NOT_A_PROOF
from leakaudit.report.writer import FindingsWriter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tiny", action="store_true", help="a smoke run: 100 canaries, 2 models per side, ε = 1")
    ap.add_argument("--models", type=int, default=32, help="multi-run models per side")
    ap.add_argument("--lm", action="store_true", help="also the LM world (7 tiny GPT-2 trainings)")
    a = ap.parse_args()
    cfg = DPAuditLabConfig(n_models=a.models, lm_variants=("no_noise", "dp", "none") if a.lm else ())
    if a.tiny:
        cfg = replace(cfg, epsilons=(1.0,), n_canaries=100, n_models=3, n_train=200, lm_canaries=50,
                      select_fraction=0.34, lm_variants=("no_noise",) if a.lm else ())
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with FindingsWriter(a.out / "report.jsonl") as w:
        results = run_dp_audit_lab(cfg, store_dir=a.out / "models", writer=w)
    print("\n".join(cost_table(results)))
    print(NOT_A_PROOF)
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
