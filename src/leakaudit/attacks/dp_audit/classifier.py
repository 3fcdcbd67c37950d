"""Scores of classifier canaries: the LiRA statistic of the canary's own label.

score(x, y) = φ(p_y(x)) = log p_y(x) − log Σ_{y'≠y} p_{y'}(x) (Carlini et al., "Membership
Inference Attacks From First Principles", S&P 2022, §IV), higher = more likely the canary (x, y)
was trained on. A canary label the model has never seen is predicted with chance confidence; one
it was trained on is pushed up. The same statistic serves the multi-run audit (one canary, one
score per model) and the one-run audit (m canaries, one model).
"""

from __future__ import annotations

import numpy as np

from leakaudit.attacks.dp_audit.canaries import ClassifierCanaries
from leakaudit.signals.membership_clf import logit_confidence
from leakaudit.targets.classifier import Classifier


#: what the canary score needs of a classifier target (its capabilities; a label-only target
#: cannot serve it)
CANARY_SCORE_NEEDS = ("probabilities",)


def canary_scores(target: Classifier, canaries: ClassifierCanaries) -> np.ndarray:
    """φ(p_y(x)) for every canary, float64 (m,); higher = more likely trained on."""
    target.capabilities.require(*CANARY_SCORE_NEEDS, who="the DP audit's canary score")
    x = canaries.x.reshape((len(canaries),) + tuple(target.input_shape))
    return logit_confidence(target.predict_proba(x), canaries.y)
