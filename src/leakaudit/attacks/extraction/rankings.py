"""The membership signals that rank sampled generations (Carlini et al. 2021, §5.2 / §6.1).

Every ranking returns one score per sample, oriented **higher = more likely memorized**, computed
from cached per-token log-probs (one pass per model and text variant) and zlib sizes:

=============  ==============================================================  ================
name           score                                                           passes needed
=============  ==============================================================  ================
perplexity     −log PPL_target  (mean token log-prob)                           target
reference      log PPL_ref / log PPL_target  (one ranking per reference model)  + reference
zlib           zlib_bytes(text) / log PPL_target                                target
lowercase      log PPL_target(lowercased) / log PPL_target                      + lowercased
window         −min over 50-token windows of log PPL_target                     target
min_k          mean of the lowest k·n token log-probs (Min-K%, k = 0.2)         target
=============  ==============================================================  ================

The paper's "Small" and "Medium" rankings are ``reference`` with the two reference models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from leakaudit.registry import Registry
from leakaudit.signals.lm import (
    log_perplexity,
    log_ppl_ratio,
    max_window_mean_logprob,
    mean_logprob,
    min_k_mean,
    zlib_bytes,
)
from leakaudit.targets.base import TokenScores

#: Floor for a log-perplexity used as a denominator (a perfectly predicted text has log PPL 0).
_EPS = 1e-6


@dataclass
class RankingInputs:
    """What the rankings read: texts and the cached passes over them."""

    texts: Sequence[str]
    target: Sequence[TokenScores]
    lowercase: Sequence[TokenScores] | None = None
    references: dict[str, Sequence[TokenScores]] = field(default_factory=dict)


@dataclass(frozen=True)
class RankingSpec:
    name: str
    needs: tuple[str, ...]  #: "lowercase" and/or "reference"
    description: str
    fn: Callable[..., np.ndarray]


RANKINGS: Registry[RankingSpec] = Registry("ranking")


def _register(name: str, needs: tuple[str, ...], description: str):
    def deco(fn):
        RANKINGS.register(name)(RankingSpec(name, needs, description, fn))
        return fn

    return deco


def _logppl(scores) -> np.ndarray:
    return np.maximum(log_perplexity(scores), _EPS)


@_register("perplexity", (), "−log perplexity under the target")
def perplexity_score(inp: RankingInputs, **_) -> np.ndarray:
    return mean_logprob(inp.target)


@_register("reference", ("reference",), "log PPL(reference) / log PPL(target)")
def reference_score(inp: RankingInputs, *, reference: str, **_) -> np.ndarray:
    return np.maximum(log_perplexity(inp.references[reference]), 0.0) / _logppl(inp.target)


@_register("zlib", (), "zlib bytes / log PPL(target)")
def zlib_score(inp: RankingInputs, **_) -> np.ndarray:
    return zlib_bytes(inp.texts) / _logppl(inp.target)


@_register("lowercase", ("lowercase",), "log PPL(lowercased text) / log PPL(text)")
def lowercase_score(inp: RankingInputs, **_) -> np.ndarray:
    if inp.lowercase is None:
        raise ValueError("the lowercase ranking needs a pass over the lowercased texts")
    return log_ppl_ratio(inp.lowercase, inp.target)  # the membership attack's statistic too


@_register("window", (), "−min log PPL over sliding windows of 50 tokens")
def window_score(inp: RankingInputs, *, window: int = 50, **_) -> np.ndarray:
    return max_window_mean_logprob(inp.target, window=window)


@_register("min_k", (), "Min-K% Prob: mean of the lowest k% token log-probs (k = 20%)")
def min_k_score(inp: RankingInputs, *, min_k: float = 0.2, **_) -> np.ndarray:
    return min_k_mean(inp.target, k=min_k)


def compute_rankings(
    inp: RankingInputs,
    *,
    names: Sequence[str] | None = None,
    window: int = 50,
    min_k: float = 0.2,
) -> dict[str, np.ndarray]:
    """Scores of every requested ranking (all by default). ``reference`` expands to
    ``reference:<name>`` for each reference model; a ranking whose inputs are missing is skipped
    only when it was not asked for by name (the caller reports which were skipped)."""
    asked = list(names) if names is not None else RANKINGS.names()
    out: dict[str, np.ndarray] = {}
    for name in asked:
        spec = RANKINGS.get(name)
        if "reference" in spec.needs:
            if not inp.references and names is not None:
                raise ValueError("the reference ranking needs at least one reference model")
            for ref in inp.references:
                out[f"reference:{ref}"] = spec.fn(inp, reference=ref)
            continue
        if "lowercase" in spec.needs and inp.lowercase is None:
            if names is not None:
                raise ValueError("the lowercase ranking needs a pass over lowercased texts")
            continue
        out[name] = spec.fn(inp, window=window, min_k=min_k)
    for k, v in out.items():
        out[k] = np.where(np.isfinite(v), v, -np.inf)  # empty texts rank last, never first
    return out
