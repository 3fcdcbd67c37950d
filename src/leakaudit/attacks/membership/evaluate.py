"""Turn attack scores into report records: one ``membership`` record per (attack, subset)
evaluation and ``membership_record`` rows for the most exposed records (written by
``leakaudit.report.writer.write_report``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leakaudit.metrics.roc import MembershipMetrics, evaluate_membership
from leakaudit.taxonomy import TAXONOMY


@dataclass(frozen=True)
class EvalConfig:
    """How every membership result is evaluated: ``fprs`` for TPR, ``alpha`` for all intervals
    (Clopper–Pearson, bootstrap, ε bound), ``n_boot`` bootstrap resamples for the AUC, ``seed``,
    and ``top_n`` most exposed records kept per attack. ``randomized_split``: members and
    non-members were assigned by independent coin flips (canaries, a lab split), the condition
    under which the ROC-derived ε bound is a DP lower bound (Jagielski et al. 2020); otherwise
    it is reported as a ROC statistic that is not a DP statement."""

    fprs: tuple[float, ...] = (0.1, 0.01, 0.001, 0.0001)
    alpha: float = 0.05
    n_boot: int = 1000
    seed: int = 0
    top_n: int = 20
    randomized_split: bool = False


@dataclass
class MembershipEvaluation:
    """One attack evaluated on one set of members and non-members."""

    world: str  #: "llm" or "classifier"
    method: str  #: attack name
    label: str  #: name with parameters, e.g. "min_k(k=0.2)"
    params: dict[str, Any]
    threat_model: str
    doc_uri: str
    subset: str  #: which members were evaluated ("all", "canaries x>=16", ...)
    metrics: MembershipMetrics
    scores: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"attack": "membership", "world": self.world, "method": self.method,
                "label": self.label, "params": self.params, "threat_model": self.threat_model,
                "doc_uri": self.doc_uri, "subset": self.subset, **self.metrics.to_dict(),
                **self.extra, "warnings": self.warnings, "tags": TAXONOMY["membership"]}


def evaluate_scores(scores, labels, *, world: str, method: str, label: str, params: dict,
                    threat_model: str, doc_uri: str, subset: str, config: EvalConfig,
                    extra: dict | None = None) -> MembershipEvaluation:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    m = evaluate_membership(scores, labels, fprs=config.fprs, alpha=config.alpha,
                            n_boot=config.n_boot, seed=config.seed,
                            randomized_split=config.randomized_split)
    return MembershipEvaluation(world=world, method=method, label=label, params=params,
                                threat_model=threat_model, doc_uri=doc_uri, subset=subset,
                                metrics=m, scores=scores, labels=labels, extra=extra or {})


def exposed_records(ev: MembershipEvaluation, *, ids: list[str], texts: list[str] | None,
                    top_n: int) -> list[dict[str, Any]]:
    """The ``top_n`` highest-scoring records (members and non-members alike, with ground truth),
    each with its rank, score and whether it was a member. ``texts`` must already be masked."""
    order = np.argsort(-ev.scores, kind="mergesort")[:top_n]
    # the score's percentile among non-members: how far it sits in the non-member tail
    neg = np.sort(ev.scores[ev.labels == 0])
    out = []
    for rank, i in enumerate(order, start=1):
        rec = {"attack": "membership", "world": ev.world, "method": ev.method, "label": ev.label,
               "subset": ev.subset, "rank": rank, "record_id": ids[i], "score": float(ev.scores[i]),
               "is_member": bool(ev.labels[i]),
               "nonmember_fraction_above": float(1 - np.searchsorted(neg, ev.scores[i], side="left")
                                                 / max(1, len(neg))),
               "tags": TAXONOMY["membership"]}
        if texts is not None:
            rec["text"] = texts[i]
        out.append(rec)
    return out


def summarize(evaluations: list[MembershipEvaluation], *, world: str) -> dict[str, Any]:
    """A summary record: AUC and TPR at each FPR per evaluation (None = not resolvable)."""
    return {"attack": "membership", "world": world,
            "results": {f"{e.label} [{e.subset}]": {
                "auc": e.metrics.auc, **{f"tpr@{r.fpr:g}": r.tpr for r in e.metrics.tpr_at}}
                for e in evaluations}}
