"""``audit_classifier_membership``: membership attacks on a user's classifier.

The auditor gives the target, records known to be members and non-members, and population
records the target did not train on. The population is split in two: one half trains the
reference ("shadow") models, each on an independent random half of it (so every audited record
is OUT for every reference model: offline LiRA and RMIA), the other half is RMIA's population z,
which no model trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leakaudit.attacks.membership.classifier import (ClassifierLossAttack, ClassifierSignals,
                                                     LiRAAttack, RMIAAttack)
from leakaudit.attacks.membership.evaluate import (EvalConfig, MembershipEvaluation,
                                                   evaluate_scores)
from leakaudit.progress import null_progress


def audit_classifier_membership(target, x_members, y_members, x_nonmembers, y_nonmembers, *,
                                x_population=None, y_population=None, trainer=None,
                                n_shadow: int = 0, shadow_dir: str | Path | None = None,
                                rmia_a: float, seed: int, eval_config: EvalConfig,
                                progress=null_progress, log=print,
                                executor=None) -> list[MembershipEvaluation]:
    """LOSS always; with ``n_shadow`` ≥ 2 reference models (``trainer`` on the population),
    offline LiRA (fixed and per-example variance) and offline RMIA with parameter ``rmia_a``.
    ``executor``: train the reference models as its tasks (:mod:`leakaudit.exec.shadows`)."""
    from leakaudit.attacks.membership.shadow import ShadowModels

    x = np.concatenate([x_members, x_nonmembers]).astype(np.float32)
    y = np.concatenate([y_members, y_nonmembers]).astype(np.int64)
    labels = np.r_[np.ones(len(y_members), np.int64), np.zeros(len(y_nonmembers), np.int64)]
    sig = ClassifierSignals(y=y, target_probs=target.predict_proba(x))
    attacks = [ClassifierLossAttack()]
    if n_shadow:
        if x_population is None or trainer is None or shadow_dir is None:
            raise ValueError("reference models need x_population/y_population, a trainer and a shadow_dir")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y_population))
        train_part, z_part = order[: len(order) // 2], order[len(order) // 2:]
        xs = np.concatenate([x_population[train_part], x, x_population[z_part]]).astype(np.float32)
        ys = np.concatenate([y_population[train_part], y, y_population[z_part]]).astype(np.int64)
        eligible = np.zeros(len(ys), bool)
        eligible[: len(train_part)] = True
        sm = ShadowModels(shadow_dir, n_models=n_shadow, seed=seed, trainer=trainer)
        out = sm.train(xs, ys, eligible=eligible, progress=progress, executor=executor)
        log(f"reference models: {n_shadow} ({sm.trained_now_} trained now)")
        a, b = len(train_part), len(train_part) + len(y)
        sig = ClassifierSignals(
            y=y, target_probs=sig.target_probs, ref_probs=out[:, a:b],
            ref_keep=np.zeros((n_shadow, len(y)), bool), pop_y=ys[b:],
            pop_target_probs=target.predict_proba(xs[b:]), pop_ref_probs=out[:, b:])
        attacks += [LiRAAttack(online=False, fixed_variance=True),
                    LiRAAttack(online=False, fixed_variance=False),
                    RMIAAttack(a=rmia_a, gamma=1.0, online=False)]
    evals = []
    for atk in attacks:
        evals.append(evaluate_scores(atk.score(sig), labels, world="classifier", method=atk.name,
                                     label=atk.label, params={**atk.params(), "n_reference_models": n_shadow if atk.needs else 0},
                                     threat_model=atk.threat_model, doc_uri=atk.doc_uri,
                                     subset="given members vs non-members", config=eval_config))
    return evals
