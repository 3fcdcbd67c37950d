"""Memorization metrics: pure functions of per-token scores (numpy/scipy only, no torch).

Symbols used below, for one training sequence split into a prefix ``p`` (k tokens) and a suffix
``s = s_1 … s_ℓ``:

- ``is_argmax[t]``: whether ``s_t`` is the model's argmax given ``p, s_<t`` (teacher forcing).
- ``q_t = log p_scheme(s_t | p, s_<t)``: the log-probability of ``s_t`` under a sampling scheme
  (temperature, top-k renormalized).

References: Carlini et al. 2022, "Quantifying Memorization Across Neural Language Models"
(greedy-discoverable exact memorization); Biderman et al. 2023, "Emergent and Predictable
Memorization in Large Language Models" (the fractional memorization score); Hayes et al. 2024,
"Measuring memorization in language models via probabilistic extraction" ((n, p)-extraction);
Gemini Team 2025, Gemini 2.5 report (approximate memorization: edit distance ≤ 10% of ℓ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def greedy_discoverable(is_argmax: np.ndarray) -> bool:
    """Exact memorization: greedy decoding from the prefix reproduces the suffix.

    Greedy decoding emits ``s_1`` iff ``s_1`` is the argmax given ``p``; given that, it emits
    ``s_2`` iff ``s_2`` is the argmax given ``p, s_1``; and so on. So the greedy continuation equals
    the suffix iff every teacher-forced position is an argmax.

    >>> greedy_discoverable(np.array([True, True, True]))
    True
    >>> greedy_discoverable(np.array([True, False, True]))
    False
    """
    return bool(np.all(is_argmax))


def fractional_match(is_argmax: np.ndarray) -> float:
    """Biderman et al.'s memorization score, teacher-forced: the fraction of suffix positions
    whose true token is the argmax given the true context.

    (Pythia's script compares a greedy *generation* token by token; after the first divergence
    the two condition on different contexts, so neither score bounds the other in general. They
    agree when either is 1: all suffix tokens argmax under teacher forcing ⇔ greedy reproduces
    the suffix.)

    >>> fractional_match(np.array([True, False, True, True]))
    0.75
    """
    a = np.asarray(is_argmax, dtype=bool)
    return float(a.mean()) if a.size else float("nan")


def sequence_logprob(token_logprobs: np.ndarray) -> float:
    """log p_z = Σ_t q_t: the log-probability that one sampled continuation equals the suffix.

    >>> round(sequence_logprob(np.log(np.array([0.5, 0.5]))), 6) == round(math.log(0.25), 6)
    True
    """
    return float(np.sum(np.asarray(token_logprobs, dtype=np.float64)))


def extraction_probability(log_pz: float, n: int) -> float:
    """Probability that at least one of ``n`` independent samples reproduces the suffix:
    ``1 − (1 − p_z)^n`` (Hayes et al. 2024, eq. 2), computed stably.

    >>> extraction_probability(math.log(0.5), 2)
    0.75
    >>> extraction_probability(float("-inf"), 10**9)
    0.0
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if log_pz == float("-inf") or n == 0:
        return 0.0
    pz = math.exp(log_pz)
    if pz >= 1.0:
        return 1.0
    return float(-math.expm1(n * math.log1p(-pz)))


def _log_neg_log1m(log_pz: float) -> float:
    """log(−log(1 − p_z)) from log p_z, stable for p_z as small as a float's log can say."""
    if log_pz < -30.0:  # −log(1 − p) = p + p²/2 + …; the correction is below 1e-13 relative
        return log_pz + math.log1p(math.exp(log_pz) / 2)
    return math.log(-math.log1p(-math.exp(log_pz)))


def log_queries_needed(log_pz: float, p: float) -> float:
    """Natural log of the real-valued ``n`` solving ``1 − (1 − p_z)^n = p``, computed in log
    space: finite for every finite ``log p_z`` (p_z itself may underflow, e.g. below e^−745),
    ``inf`` when ``p_z = 0``.

    >>> round(log_queries_needed(-1000.0, 0.5), 4)  # n = log 2 · e^1000
    999.6335
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if math.isnan(log_pz):
        raise ValueError("log_pz is NaN")
    if log_pz == float("-inf"):
        return float("inf")
    if log_pz >= 0.0:
        return 0.0
    return math.log(-math.log1p(-p)) - _log_neg_log1m(log_pz)


def queries_needed(log_pz: float, p: float) -> float:
    """Smallest ``n`` with ``1 − (1 − p_z)^n ≥ p``: ``⌈log(1 − p) / log(1 − p_z)⌉``, computed in
    log space (:func:`log_queries_needed`).

    ``inf`` only when ``p_z = 0`` (the suffix is outside the sampling support) or when ``n`` is
    too large for a float (above ~1.8e308; its logarithm is still finite there: see
    :func:`log_queries_needed`).

    >>> queries_needed(math.log(0.5), 0.75)
    2
    >>> queries_needed(math.log(0.1), 0.9)
    22
    >>> queries_needed(-800.0, 0.5)  # p_z underflows to 0.0 as a float; n does not
    inf
    >>> round(math.log10(queries_needed(-700.0, 0.5)), 3)
    303.847
    """
    ln = log_queries_needed(log_pz, p)
    if ln == float("inf") or ln > math.log(1.7976931348623157e308):
        return float("inf")
    if log_pz >= 0.0:
        return 1
    n = math.exp(ln)
    # guard against n landing a hair above an integer through rounding
    return max(1, math.ceil(n - 1e-9 * max(1.0, n)))


def token_edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance between two token sequences (insertions, deletions, substitutions).

    >>> token_edit_distance([1, 2, 3, 4], [1, 9, 3])
    2
    """
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(list(a), list(b)))


def approximately_memorized(generated: Sequence[int], suffix: Sequence[int], *,
                            max_fraction: float) -> bool:
    """Approximate memorization (Gemini 2.5 report): token edit distance between the greedy
    continuation and the true suffix is at most ``max_fraction`` × ℓ.

    >>> approximately_memorized([1, 2, 3, 4, 5, 6, 7, 8, 9, 0], [1, 2, 3, 4, 5, 6, 7, 8, 9, 1],
    ...                         max_fraction=0.1)
    True
    """
    return token_edit_distance(generated, suffix) <= max_fraction * len(suffix)


#: Duplicate-count buckets (inclusive lower, exclusive upper), powers of two as in Carlini et al.
#: 2022's Figure 1. The last bucket is open.
DUPLICATE_BUCKETS: tuple[tuple[int, int | None], ...] = (
    (1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 128), (128, None))


def duplicate_bucket(count: int) -> str:
    """The label of the bucket a duplicate count falls in.

    >>> [duplicate_bucket(c) for c in (1, 3, 8, 500)]
    ['1', '2-3', '8-15', '128+']
    """
    if count < 1:
        raise ValueError(f"a training sequence occurs at least once, got count {count}")
    for lo, hi in DUPLICATE_BUCKETS:
        if hi is None or count < hi:
            if hi is None:
                return f"{lo}+"
            return str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}"
    raise AssertionError("unreachable")
