"""Measured leakage from leakaudit result folders, replacing the triage model's assumptions.

The mapping from numbers to leakage in [0, 1] is documented in ``leakaudit.triage.model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leakaudit.report.reader import load_report
from leakaudit.report.thresholds import quantities


def load_results(dirs: list[str | Path]) -> list[dict[str, Any]]:
    """Read each folder's report (bad folders raise InputError before any scoring)."""
    return [{"dir": str(d), "records": load_report(d)} for d in dirs]


def _clip(x: float) -> float:
    return max(0.0, min(1.0, x))


def measured_leakage(results: list[dict[str, Any]]) -> tuple[dict[str, tuple[float, str]], list[str]]:
    """Per risk, the highest measured leakage over all folders and the sentence explaining it."""
    best: dict[str, tuple[float, str]] = {}
    used: list[str] = []

    def offer(risk: str, value: float, why: str) -> None:
        if risk not in best or value > best[risk][0]:
            best[risk] = (value, why)

    for res in results:
        recs, where = res["records"], res["dir"]
        q = quantities(recs)
        n_before = len(best)
        tpr = q.get("membership.tpr@0.01")
        if tpr is not None:
            offer("membership", _clip((tpr - 0.01) / 0.09),
                  f"measured TPR@1%FPR = {tpr:.3f} in {where}")
        elif q.get("membership.auc") is not None:
            auc = q["membership.auc"]
            offer("membership", _clip(2 * (auc - 0.5)), f"measured AUC = {auc:.3f} in {where} "
                                                         "(TPR@1%FPR not resolvable)")
        verified, canaries = q.get("extraction.verified"), q.get("canaries.extracted")
        if (verified or 0) > 0 or (canaries or 0) > 0:
            offer("extraction", 1.0, f"measured: {int(verified or 0)} verified leaks, "
                                     f"{int(canaries or 0)} canaries extracted in {where}")
        else:
            parts = []
            if verified is not None:
                parts.append((0.0, f"no verified leak among the samples in {where}"))
            if q.get("memorization.exact") is not None:
                parts.append((_clip(10 * q["memorization.exact"]),
                              f"exact memorization rate {q['memorization.exact']:.3f} in {where}"))
            if q.get("exposure.max") is not None:
                parts.append((_clip(q["exposure.max"] / 20),
                              f"max canary exposure {q['exposure.max']:.1f} bits in {where}"))
            if parts:
                offer("extraction", *max(parts))
        inv = [r for r in recs.get("inversion") or [] if isinstance(r.get("top1"), dict)
               and r.get("chance_top1") is not None and (r.get("defense") in (None, "none"))]
        if inv:
            top = max(inv, key=lambda r: r["top1"]["value"])
            ch = top["chance_top1"]
            offer("inversion", _clip((top["top1"]["value"] - ch) / (1 - ch)),
                  f"measured inversion top-1 {top['top1']['value']:.2f} (chance {ch:.2f}) in {where}")
        if len(best) > n_before or any(where in why for _, why in best.values()):
            used.append(where)
    return best, used
