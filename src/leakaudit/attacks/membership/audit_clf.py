"""``audit_classifier_membership``: membership attacks on a user's classifier.

The auditor gives the target, records known to be members and non-members, and population
records the target did not train on. The population is split in two: one half trains the
reference ("shadow") models, each on an independent random half of it (so every audited record
is OUT for every reference model: offline LiRA and RMIA), the other half is RMIA's population z,
which no model trained on.

The attacks run are those the target can serve (its ``capabilities``): LOSS, LiRA and RMIA need
the probability vector; the label-only attacks (:mod:`leakaudit.attacks.membership.label_only`)
need only labels of perturbable inputs. The others are recorded as skipped with the capability
they need. The model-free baseline (the records alone, never the model) is evaluated next to
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.attacks.membership.blind import (DOC_URI as BLIND_DOC_URI, BlindBaselineConfig,
                                                blind_baseline_features, blind_baseline_scores)
from leakaudit.attacks.membership.classifier import (ClassifierLossAttack, ClassifierSignals,
                                                     LiRAAttack, RMIAAttack)
from leakaudit.attacks.membership.evaluate import (EvalConfig, MembershipEvaluation,
                                                   evaluate_scores)
from leakaudit.attacks.membership.label_only import (AugmentationAttack, BoundaryDistanceAttack,
                                                     LabelGapAttack, LabelQueries)
from leakaudit.progress import null_progress


@dataclass(frozen=True)
class LabelOnlySettings:
    """The label-only attacks' settings: ``budget`` queries per record (each attack's hard cap),
    the input domain ``clip`` (None: from the smallest to the largest value in the audited
    records), the 2-D ``image_shape`` of an input for shift augmentations (None: the last two
    input dimensions, if any), and the attacks' own parameters."""

    budget: int = 100
    clip: tuple[float, float] | None = None
    image_shape: tuple[int, int] | None = None
    max_shift: int = 1
    noise_sigmas: tuple[float, ...] = (0.1, 0.2, 0.3)
    n_noise: int = 8
    n_starts: int = 3
    tol: float = 0.01
    grad_steps: int = 2
    n_grad: int = 20
    delta: float = 0.1
    seed: int = 0

    def attacks(self, image: bool) -> list:
        """Gap, augmentation (its copies cut to what the budget allows) and boundary distance."""
        shifts = (2 * self.max_shift + 1) ** 2 - 1 if image else 0
        n_noise = self.n_noise
        while n_noise and 1 + shifts + n_noise * len(self.noise_sigmas) > self.budget:
            n_noise -= 1
        out = [LabelGapAttack(budget=self.budget)]
        if 1 + shifts + n_noise * len(self.noise_sigmas) <= self.budget:
            out.append(AugmentationAttack(budget=self.budget, max_shift=self.max_shift if image else 0,
                                          noise_sigmas=self.noise_sigmas, n_noise=n_noise,
                                          seed=self.seed))
        if self.budget >= 2:
            out.append(BoundaryDistanceAttack(budget=self.budget, n_starts=self.n_starts, tol=self.tol,
                                              grad_steps=self.grad_steps, n_grad=self.n_grad,
                                              delta=self.delta, seed=self.seed))
        return out


@dataclass
class ClassifierMembershipResult:
    """Evaluations (attacks and the model-free baseline, ``method == "blind_baseline"``), the
    attacks skipped with the capability they need, and the queries each label-only attack spent."""

    evaluations: list[MembershipEvaluation]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    queries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, method: str) -> MembershipEvaluation:
        for e in self.evaluations:
            if e.method == method or e.label == method:
                return e
        raise KeyError(f"no evaluation {method!r}; have {[e.label for e in self.evaluations]}")


def audit_classifier_membership(target, x_members, y_members, x_nonmembers, y_nonmembers, *,
                                x_population=None, y_population=None, trainer=None,
                                n_shadow: int = 0, shadow_dir: str | Path | None = None,
                                rmia_a: float, seed: int, eval_config: EvalConfig,
                                label_only: LabelOnlySettings | None = None,
                                blind: BlindBaselineConfig | None = BlindBaselineConfig(),
                                progress=null_progress, log=print,
                                executor=None) -> ClassifierMembershipResult:
    """LOSS; with ``n_shadow`` ≥ 2 reference models (``trainer`` on the population), offline
    LiRA (fixed and per-example variance) and offline RMIA with parameter ``rmia_a``; with
    ``label_only`` settings, the label-only attacks; with ``blind``, the model-free baseline.
    Each runs only if the target can serve it (else it is in ``skipped``, with the capability).
    ``executor``: train the reference models as its tasks (:mod:`leakaudit.exec.shadows`)."""
    from leakaudit.targets.classifier import classifier_skip

    caps = target.capabilities
    x = _records(np.concatenate([x_members, x_nonmembers]), caps.float_inputs)
    y = np.concatenate([y_members, y_nonmembers]).astype(np.int64)
    labels = np.r_[np.ones(len(y_members), np.int64), np.zeros(len(y_nonmembers), np.int64)]
    result = ClassifierMembershipResult(evaluations=[])

    def evaluate(atk, scores, params: dict, extra: dict | None = None) -> None:
        result.evaluations.append(evaluate_scores(
            scores, labels, world="classifier", method=atk.name, label=atk.label, params=params,
            threat_model=atk.threat_model, doc_uri=atk.doc_uri,
            subset="given members vs non-members", config=eval_config, extra=extra))

    def skip(atk) -> bool:
        rec = classifier_skip(atk.label, atk.capabilities, target)
        if rec is not None:
            result.skipped.append({**rec, "method": atk.name, "label": atk.label})
            log(f"membership: skipped {atk.label}: {rec['reason']}")
        return rec is not None

    score_attacks = [ClassifierLossAttack()]
    if n_shadow:
        score_attacks += [LiRAAttack(online=False, fixed_variance=True),
                          LiRAAttack(online=False, fixed_variance=False),
                          RMIAAttack(a=rmia_a, gamma=1.0, online=False)]
    runnable = [a for a in score_attacks if not skip(a)]
    if runnable:
        sig = ClassifierSignals(y=y, target_probs=target.predict_proba(x))
        if len(runnable) > 1:
            if not caps.float_inputs:
                for atk in runnable[1:]:
                    result.skipped.append({"attack": atk.label, "method": atk.name, "label": atk.label,
                                           "skipped": True, "missing": ["float_inputs"],
                                           "reason": "the reference models are MLPs on numeric inputs; "
                                                     "this classifier takes text"})
                runnable = runnable[:1]
            else:
                sig = _with_references(sig, target, x, y, x_population, y_population, trainer=trainer,
                                       n_shadow=n_shadow, shadow_dir=shadow_dir, seed=seed,
                                       progress=progress, log=log, executor=executor)
        for atk in runnable:
            n_refs = n_shadow if atk.needs else 0
            evaluate(atk, atk.score(sig), {**atk.params(), "n_reference_models": n_refs})
    if label_only is not None:
        _label_only(result, target, x, y, label_only, skip, evaluate, log)
    if blind is not None:
        _baseline(result, x, y, labels, target, blind, eval_config)
    return result


def _records(x, float_inputs: bool):
    return x.astype(np.float32) if float_inputs else [str(t) for t in x]


def _with_references(sig, target, x, y, x_population, y_population, *, trainer, n_shadow,
                     shadow_dir, seed, progress, log, executor) -> ClassifierSignals:
    from leakaudit.attacks.membership.shadow import ShadowModels

    if x_population is None or trainer is None or shadow_dir is None:
        raise ValueError("reference models need x_population/y_population, a trainer and a shadow_dir")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y_population))
    train_part, z_part = order[: len(order) // 2], order[len(order) // 2:]
    xs = np.concatenate([x_population[train_part].reshape(len(train_part), -1),
                         x.reshape(len(x), -1),
                         x_population[z_part].reshape(len(z_part), -1)]).astype(np.float32)
    ys = np.concatenate([y_population[train_part], y, y_population[z_part]]).astype(np.int64)
    eligible = np.zeros(len(ys), bool)
    eligible[: len(train_part)] = True
    sm = ShadowModels(shadow_dir, n_models=n_shadow, seed=seed, trainer=trainer)
    out = sm.train(xs, ys, eligible=eligible, progress=progress, executor=executor)
    log(f"reference models: {n_shadow} ({sm.trained_now_} trained now)")
    a, b = len(train_part), len(train_part) + len(y)
    pop_x = x_population[z_part].astype(np.float32).reshape((len(z_part), *target.input_shape))
    return ClassifierSignals(
        y=y, target_probs=sig.target_probs, ref_probs=out[:, a:b],
        ref_keep=np.zeros((n_shadow, len(y)), bool), pop_y=ys[b:],
        pop_target_probs=target.predict_proba(pop_x), pop_ref_probs=out[:, b:])


def _label_only(result: ClassifierMembershipResult, target, x, y, settings: LabelOnlySettings,
                skip, evaluate, log) -> None:
    image = settings.image_shape is not None or len(target.input_shape) >= 2
    for atk in settings.attacks(image):
        if skip(atk):
            continue
        clip = settings.clip or (float(np.min(x)), float(np.max(x)))
        before = target.queries
        q = LabelQueries(target, x, y, clip=clip, image_shape=settings.image_shape)
        scores = atk.score(q)
        spent = {"budget_per_record": settings.budget, "input_domain": list(clip),
                 "max_per_record": int(atk.queries_.max()),
                 "mean_per_record": float(atk.queries_.mean()), "total": int(atk.queries_.sum())}
        assert target.queries - before == spent["total"]  # every query was charged to a record
        result.queries[atk.name] = spent
        log(f"membership: {atk.label}: {spent['total']} label queries "
            f"(≤ {spent['max_per_record']} per record, budget {settings.budget})")
        evaluate(atk, scores, atk.params(), {"queries": spent})


def _baseline(result: ClassifierMembershipResult, x, y, labels, target, config: BlindBaselineConfig,
              eval_config: EvalConfig) -> None:
    if target.capabilities.float_inputs:
        s = blind_baseline_features(x, y, labels, n_classes=target.n_classes, config=config)
        what = "logistic regression on each record's features and class, cross-validated"
    else:
        s = blind_baseline_scores(list(x), labels, config=config)
        what = "bag-of-n-grams logistic regression on the texts, cross-validated"
    result.evaluations.append(evaluate_scores(
        s, labels, world="classifier", method="blind_baseline", label="blind_baseline",
        params={"C": config.C, "n_splits": config.n_splits, "seed": config.seed},
        threat_model=f"no model access: {what}", doc_uri=BLIND_DOC_URI,
        subset="given members vs non-members", config=eval_config, extra={"baseline": True}))
