"""Canary exposure (Carlini et al. 2019, "The Secret Sharer", §4). numpy/scipy only.

A canary ``s[r]`` was inserted into the training data; ``R`` is a set of reference candidates of
the same form that were never inserted. Each candidate gets a log-perplexity ``Px`` under the
model (lower = more likely). Then

    rank(s[r]) = 1 + |{ r' ∈ R : Px(s[r']) < Px(s[r]) }|
    exposure   = log2 |R| − log2 rank(s[r])          (by rank)

so a canary more likely than every reference has exposure log2 |R|, and one ranked in the middle
has about 1. Beyond log2 |R| the rank saturates; the paper's extrapolation fits a skew-normal
distribution to the reference log-perplexities and reads the canary's tail probability:

    exposure ≈ −log2 F(Px(s[r]))                     (F: the fitted skew-normal CDF)

Ties with a reference do not lower the rank (TF Privacy's convention).
"""

from __future__ import annotations

import math

import numpy as np


def exposure_by_rank(canary_ppl: float, reference_ppls) -> float:
    """Exposure from the canary's rank among the references.

    TF Privacy's test values (references 1..16):

    >>> refs = np.arange(1, 17)
    >>> exposure_by_rank(0.0, refs), exposure_by_rank(3.5, refs)
    (4.0, 2.0)
    >>> round(exposure_by_rank(20.0, refs), 5)
    -0.08746
    """
    ref = np.asarray(reference_ppls, dtype=np.float64)
    if ref.size == 0:
        raise ValueError("exposure needs at least one reference candidate")
    rank = 1 + int(np.sum(ref < canary_ppl))
    return math.log2(ref.size) - math.log2(rank)


def exposure_by_extrapolation(canary_ppl: float, reference_ppls) -> tuple[float, dict]:
    """Exposure from a skew-normal fit to the reference log-perplexities; returns the exposure
    and the fitted parameters (a, loc, scale).

    >>> rng = np.random.default_rng(0)
    >>> refs = rng.normal(50.0, 5.0, size=5000)
    >>> e, fit = exposure_by_extrapolation(50.0 - 5.0 * 3.0, refs)   # 3 sigma below the mean
    >>> abs(e - (-math.log2(0.0013499))) < 0.3  # -log2(Phi(-3)) = 9.53, up to the fit
    True
    """
    from scipy.stats import skewnorm

    ref = np.asarray(reference_ppls, dtype=np.float64)
    if ref.size < 10:
        raise ValueError(f"a skew-normal fit needs at least 10 references, got {ref.size}")
    a, loc, scale = skewnorm.fit(ref)
    log_cdf = float(skewnorm.logcdf(canary_ppl, a, loc, scale))
    return -log_cdf / math.log(2.0), {"a": float(a), "loc": float(loc), "scale": float(scale)}
