"""Per-example signals of classifier outputs for membership attacks (numpy only).

The LiRA statistic is the logit-scaled confidence of the true class (Carlini et al. 2022, §IV):
φ(p) = log(p_y / (1 − p_y)), computed stably as log p_y − log Σ_{y'≠y} p_{y'} (the reference
code's form), from log-probabilities so that confidences of 1 − 1e-12 stay distinct.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def log_probs(probs: np.ndarray) -> np.ndarray:
    """Natural-log probabilities, floored at 1e-300 (so log 0 never appears)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None))


def true_class_logprob(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log p_y(x) per example, for probabilities ``(..., n, C)`` and labels ``(n,)``."""
    lp = log_probs(probs)
    y = np.asarray(y, dtype=np.int64)
    return np.take_along_axis(lp, np.broadcast_to(y[:, None], lp.shape[:-1] + (1,)), axis=-1)[..., 0]


def logit_confidence(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """φ = log p_y − log Σ_{y'≠y} p_{y'} for probabilities ``(..., n, C)`` and labels ``(n,)``.

    >>> float(logit_confidence(np.array([[0.5, 0.25, 0.25]]), np.array([0]))[0])
    0.0
    >>> round(float(logit_confidence(np.array([[0.1, 0.9]]), np.array([1]))[0]), 6)  # log 9
    2.197225
    """
    lp = log_probs(probs)
    y = np.asarray(y, dtype=np.int64)
    idx = np.broadcast_to(y[:, None], lp.shape[:-1] + (1,))
    mine = np.take_along_axis(lp, idx, axis=-1)[..., 0]
    others = lp.copy()
    np.put_along_axis(others, idx, -np.inf, axis=-1)
    return mine - logsumexp(others, axis=-1)
