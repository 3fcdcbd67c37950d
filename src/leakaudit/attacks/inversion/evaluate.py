"""Judge class reconstructions objectively: an independent evaluation classifier (trained on data
disjoint from the target's) and the distance to the target's class means.

``evaluate_inversion`` returns the evaluation record (entry type ``inversion``) and one record per
class (``inversion_record``, holding the reconstruction as a list of floats).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leakaudit.attacks.inversion.base import INVERSION_ATTACKS, InversionResult
from leakaudit.metrics.inversion import nearest_mean, topk_hits
from leakaudit.metrics.stats import rate
from leakaudit.taxonomy import TAXONOMY


def evaluate_inversion(results: list[InversionResult], *, evaluator, class_means: np.ndarray,
                       top_k: int, context: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pool the reconstructions of ``results`` (e.g. one per seed) and judge them.

    ``evaluator``: a :class:`~leakaudit.targets.classifier.Classifier` trained on other data.
    ``class_means``: ``(C, *input_shape)`` mean training input per class of the *target*.
    ``context``: fields copied into every record (target, defense, budget, start, …); its
    ``seeds`` (if any) lists the seed of each result, in order.
    Rates carry exact 95% Clopper–Pearson intervals.
    """
    if not results:
        raise ValueError("no inversion results to evaluate")
    attack_cls = INVERSION_ATTACKS.get(results[0].attack) if results[0].attack in INVERSION_ATTACKS else None
    seeds = list(context.get("seeds") or [None] * len(results))
    if len(seeds) != len(results):
        raise ValueError(f"context['seeds'] has {len(seeds)} seeds for {len(results)} results")
    per_class: list[dict[str, Any]] = []
    n_top1 = n_topk = n_near = 0
    eval_conf, tgt_conf, queries, d_own, d_other = [], [], 0, [], []
    for seed_idx, res in enumerate(results):
        x = np.asarray(res.x, dtype=np.float32)
        probs = evaluator.predict_proba(x)
        classes = np.asarray(res.classes)
        h1 = topk_hits(probs, classes, 1)
        hk = topk_hits(probs, classes, top_k)
        nm = nearest_mean(x, class_means, classes)
        n_top1 += int(h1.sum())
        n_topk += int(hk.sum())
        n_near += int(nm["nearest_is_own"].sum())
        d_own.extend(nm["dist_own"].tolist())
        d_other.extend(nm["dist_other"].tolist())
        queries += int(res.queries.sum())
        for i, c in enumerate(res.classes):
            eval_conf.append(float(probs[i, c]))
            tgt_conf.append(float(res.confidence[i]))
            per_class.append({
                **context, "attack": res.attack, "class": int(c), "run": seed_idx,
                "seed": seeds[seed_idx],
                "reconstruction": x[i].reshape(-1).round(4).tolist(),
                "target_confidence": float(res.confidence[i]), "cost": float(res.cost[i]),
                "eval_pred": int(probs[i].argmax()), "eval_confidence": float(probs[i, c]),
                "eval_top1": bool(h1[i]), f"eval_top{top_k}": bool(hk[i]),
                "dist_own_mean": float(nm["dist_own"][i]),
                "dist_nearest_other_mean": float(nm["dist_other"][i]),
                "nearest_mean_class": int(nm["nearest"][i]),
                "nearest_is_own": bool(nm["nearest_is_own"][i]),
                "steps": int(res.steps[i]), "queries": int(res.queries[i]),
                "stop_reason": res.stop_reason[i],
            })
    n = len(per_class)
    evaluation = {
        **context, "attack": results[0].attack,
        "threat_model": getattr(attack_cls, "threat_model", None),
        "doc_uri": getattr(attack_cls, "doc_uri", None),
        "tags": TAXONOMY["inversion"], "n_reconstructions": n, "n_runs": len(results),
        "classes": list(results[0].classes),
        "top1": rate(n_top1, n).to_dict(), "top_k": top_k, "topk": rate(n_topk, n).to_dict(),
        "nearest_own_mean": rate(n_near, n).to_dict(),
        "chance_top1": 1.0 / len(class_means), "chance_topk": min(1.0, top_k / len(class_means)),
        "mean_eval_confidence": float(np.mean(eval_conf)),
        "mean_dist_own_mean": float(np.mean(d_own)), "mean_dist_nearest_other_mean": float(np.mean(d_other)),
        "mean_target_confidence": float(np.mean(tgt_conf)),
        "queries_total": queries, "queries_per_class_max": int(max(int(r.queries.max()) for r in results)),
        "params": results[0].params,
    }
    return evaluation, per_class
