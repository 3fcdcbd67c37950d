"""DP auditors as small stateful classes, created by name like Opacus's accountants
(``create_accountant("rdp")``)::

    auditor = create_auditor("one-run", n_canaries=1000, confidence=0.95, seed=0)
    for t in auditor.trainings():          # which canaries go into which training, and its seed
        scores = train_and_score(t.include, seed=t.seed)   # one score per canary of the set
        auditor.observe(scores, t.include)
    result = auditor.result(delta=1e-5)    # ε̂ (a lower bound) and the most it could certify

An auditor is one audit *design*: it plans the trainings, collects the canary scores of each
trained model (higher = more likely the canary was trained on) and turns them into a lower bound
on ε with the pure statistics of :mod:`leakaudit.metrics.dp_audit`. It never trains anything
itself: training and scoring are the pipeline's (:mod:`leakaudit.audits.dp_audit`). Auditors are
the ``dp-auditors`` entries of :mod:`leakaudit.registry` (``leakaudit list dp-auditors``); a
plugin adds one the same way.

Hyper-parameters are keyword-only and stored as given; observed state ends in ``_``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from leakaudit.attacks.dp_audit.canaries import coin_flips
from leakaudit.metrics.dp_audit import MultiRunResult, OneRunResult, multi_run_audit, one_run_audit
from leakaudit.registry import load


@dataclass(frozen=True)
class Training:
    """One training of the plan: ``include[i] == 1`` iff canary i is added; the training seed."""

    include: np.ndarray
    seed: int


class DPAuditor:
    """Base class: ``trainings()`` → ``observe(scores, include)`` per trained model →
    ``result(delta=...)``. ``config_fields`` names the
    :class:`~leakaudit.audits.dp_audit.DPAuditConfig` fields its constructor takes."""

    name: ClassVar[str]
    reference: ClassVar[str]
    config_fields: ClassVar[tuple[str, ...]]
    n_canaries: int  #: how many canaries the audit's canary set holds

    def trainings(self) -> list[Training]:  # pragma: no cover - abstract
        raise NotImplementedError

    def observe(self, scores: np.ndarray, include: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def result(self, *, delta: float):  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as given to the constructor."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}


class OneRunAuditor(DPAuditor):
    """Steinke, Nasr & Jagielski 2023 (arXiv 2305.08846): ``n_canaries`` canaries, each added
    with probability ½ (seeded coin flips, seed + 1), one training at ``seed``; ε̂ from the
    right guesses on the most and least confident canaries, valid at ``confidence`` = 1 − β."""

    name = "one-run"
    reference = "https://arxiv.org/abs/2305.08846"
    config_fields = ("n_canaries", "confidence", "seed")

    def __init__(self, *, n_canaries: int, confidence: float, seed: int):
        self.n_canaries = n_canaries
        self.confidence = confidence
        self.seed = seed
        self.scores_: np.ndarray | None = None
        self.included_: np.ndarray | None = None

    def trainings(self) -> list[Training]:
        return [Training(coin_flips(self.n_canaries, seed=self.seed + 1), self.seed)]

    def observe(self, scores: np.ndarray, include: np.ndarray) -> None:
        if self.scores_ is not None:
            raise ValueError("a one-run audit observes exactly one trained model")
        self.scores_, self.included_ = np.asarray(scores, np.float64), np.asarray(include)

    def result(self, *, delta: float) -> OneRunResult:
        if self.scores_ is None:
            raise ValueError("no trained model observed yet")
        return one_run_audit(self.scores_, self.included_, delta=delta, beta=1 - self.confidence,
                             seed=self.seed)


class MultiRunAuditor(DPAuditor):
    """Jagielski et al. 2020 (arXiv 2006.07709); Nasr et al. 2021 (arXiv 2101.04535): one
    canary, ``n_models`` trainings with it and as many without (alternating, seeds
    ``seed · 1000003 + j``); a threshold chosen on ``select_fraction`` of the runs, Clopper–Pearson
    bounds on its FPR/FNR on the rest, valid at ``confidence`` = 1 − α."""

    name = "multi-run"
    reference = "https://arxiv.org/abs/2101.04535"
    config_fields = ("n_models", "confidence", "seed", "select_fraction")
    n_canaries = 1

    def __init__(self, *, n_models: int, confidence: float, seed: int, select_fraction: float):
        self.n_models = n_models
        self.confidence = confidence
        self.seed = seed
        self.select_fraction = select_fraction
        self.scores_in_: list[float] = []
        self.scores_out_: list[float] = []

    def trainings(self) -> list[Training]:
        return [Training(np.array([int(j % 2 == 0)]), self.seed * 1_000_003 + j)
                for j in range(2 * self.n_models)]

    def observe(self, scores: np.ndarray, include: np.ndarray) -> None:
        (self.scores_in_ if int(include[0]) else self.scores_out_).append(float(scores[0]))

    def result(self, *, delta: float) -> MultiRunResult:
        return multi_run_audit(self.scores_in_, self.scores_out_, alpha=1 - self.confidence,
                               delta=delta, seed=self.seed, select_fraction=self.select_fraction)


def create_auditor(name: str, **kwargs: Any) -> DPAuditor:
    """The auditor registered as ``name`` (``"one-run"``, ``"multi-run"``, or a plugin's), built
    with ``kwargs``; an unknown name raises :class:`leakaudit.registry.UnknownName`."""
    return load("dp-auditors", name)(**kwargs)
