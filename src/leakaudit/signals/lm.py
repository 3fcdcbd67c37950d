"""Per-text signals from one teacher-forced pass: computed once, reused by every ranking.

``score_cached`` runs (or reuses) one batched forward pass of one model over one text variant and
keeps the per-token arrays on disk, keyed by the model's fingerprint and a hash of the texts, so a
second attack or a resumed run costs nothing. Everything else here is numpy over those arrays.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from leakaudit.errors import CapabilityError
from leakaudit.targets.base import LanguageModel, Progress, TokenScores


def texts_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:16]


def _pack(scores: list[TokenScores]) -> dict[str, np.ndarray]:
    lengths = np.array([len(s) for s in scores], dtype=np.int64)
    out = {
        "lengths": lengths,
        "token_ids": np.concatenate([s.token_ids for s in scores]) if scores else np.zeros(0, np.int64),
        "logprobs": np.concatenate([s.logprobs for s in scores]) if scores else np.zeros(0, np.float32),
        "is_argmax": (np.concatenate([s.is_argmax for s in scores])
                      if scores and scores[0].is_argmax is not None else np.zeros(0, bool)),
        "truncated": np.array([s.truncated for s in scores], dtype=bool),
    }
    if scores and scores[0].vocab_mean is not None:
        out["vocab_mean"] = np.concatenate([s.vocab_mean for s in scores])
        out["vocab_var"] = np.concatenate([s.vocab_var for s in scores])
    return out


def _unpack(arrs) -> list[TokenScores]:
    bounds = np.concatenate([[0], np.cumsum(arrs["lengths"])])
    has_vs = "vocab_mean" in arrs
    res = []
    for i in range(len(arrs["lengths"])):
        a, b = bounds[i], bounds[i + 1]
        res.append(TokenScores(
            token_ids=arrs["token_ids"][a:b], logprobs=arrs["logprobs"][a:b],
            is_argmax=(arrs["is_argmax"][a:b] if len(arrs["is_argmax"]) == len(arrs["logprobs"])
                       else None),  # a target without the argmax capability
            vocab_mean=arrs["vocab_mean"][a:b] if has_vs else None,
            vocab_var=arrs["vocab_var"][a:b] if has_vs else None,
            truncated=bool(arrs["truncated"][i]),
        ))
    return res


def score_cached(
    model: LanguageModel,
    texts: Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
    vocab_stats: bool = False,
    progress: Progress | None = None,
) -> list[TokenScores]:
    """One batched teacher-forced pass of ``model`` over ``texts`` (or its cached result). A pass
    with the vocabulary statistics also answers a request without them (the same log-probs: a
    model that is both a target and the reference, as the fine-tuning lab's base, runs once)."""
    path = None
    if cache_dir is not None:
        stem = f"signals-{model.fingerprint()}-{texts_hash(texts)}"
        path = Path(cache_dir) / f"{stem}-{'vs' if vocab_stats else 'lp'}.npz"
        for p in (path,) if vocab_stats else (path, Path(cache_dir) / f"{stem}-vs.npz"):
            if p.is_file():
                with np.load(p, allow_pickle=False) as z:
                    arrs = {k: z[k] for k in z.files if vocab_stats or not k.startswith("vocab_")}
                if progress is not None:
                    progress(len(texts))
                return _unpack(arrs)
    scores = model.score(texts, batch_size=batch_size, vocab_stats=vocab_stats, progress=progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, **_pack(scores))
            os.replace(tmp, path)
        except BaseException:  # a stopped helper lane, Ctrl-C: no half-written file left
            tmp.unlink(missing_ok=True)
            raise
    return scores


def mean_logprob(scores: Sequence[TokenScores]) -> np.ndarray:
    """Mean token log-probability of each text (= -log perplexity). NaN for an empty text."""
    return np.array([float(s.logprobs.mean()) if len(s) else np.nan for s in scores])


def log_perplexity(scores: Sequence[TokenScores]) -> np.ndarray:
    """Natural log of the perplexity of each text: -mean log p(token)."""
    return -mean_logprob(scores)


def max_window_mean_logprob(scores: Sequence[TokenScores], *, window: int) -> np.ndarray:
    """Highest mean log-prob over any ``window`` consecutive tokens (= minus the minimum window
    log-perplexity), from cumulative sums of the one pass: O(n) per text, no extra forward pass.
    Texts shorter than the window use their whole length."""
    out = np.full(len(scores), np.nan)
    for i, s in enumerate(scores):
        n = len(s)
        if n == 0:
            continue
        w = min(window, n)
        c = np.concatenate([[0.0], np.cumsum(s.logprobs, dtype=np.float64)])
        out[i] = float(((c[w:] - c[:-w]) / w).max())
    return out


def n_lowest(n: int, k: float) -> int:
    """How many of ``n`` token scores Min-K% and Min-K%++ average: ``int(n·k)``, at least one —
    the official code's ``k_length = int(len(token_probs) * ratio)`` (swj0419/detect-pretrain-code,
    zjysteven/mink-plus-plus), which would average nothing below 1/k tokens.

    >>> [n_lowest(n, 0.2) for n in (1, 4, 5, 9, 10, 32)]
    [1, 1, 1, 1, 2, 6]
    """
    return max(1, int(n * k))


def _lowest_fraction_mean(values: np.ndarray, k: float) -> float:
    """Mean of the lowest :func:`n_lowest` ``(n, k)`` of ``values``."""
    return float(np.sort(values)[: n_lowest(len(values), k)].mean())


def log_ppl_ratio(numerator: Sequence[TokenScores], denominator: Sequence[TokenScores]
                  ) -> np.ndarray:
    """Carlini et al. 2021's ratio ``log PPL(numerator) / log PPL(denominator)`` per text (e.g.
    lowercased text over text; reference model over target). The numerator is floored at 0 and
    the denominator at 1e-6 (a text the model predicts perfectly), so the ratio stays finite.

    >>> mk = lambda lp: TokenScores(np.arange(len(lp)), np.array(lp, np.float32), np.zeros(len(lp), bool))
    >>> log_ppl_ratio([mk([-3.0, -3.0])], [mk([-1.0, -2.0])]).round(4).tolist()  # 3 / 1.5
    [2.0]
    """
    num = np.maximum(log_perplexity(numerator), 0.0)
    den = np.maximum(log_perplexity(denominator), 1e-6)
    return num / den


def _check_k(k: float) -> None:
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k}")


def min_k_mean(scores: Sequence[TokenScores], *, k: float) -> np.ndarray:
    """Min-K% Prob (Shi et al. 2024): mean of the lowest ``int(k·n)`` (at least one) token
    log-probs, as the official code selects them (:func:`n_lowest`)."""
    _check_k(k)
    return np.array([_lowest_fraction_mean(s.logprobs, k) if len(s) else np.nan for s in scores])


def min_k_pp_mean(scores: Sequence[TokenScores], *, k: float) -> np.ndarray:
    """Min-K%++ (Zhang et al. 2025): mean of the lowest ``int(k·n)`` (at least one) of (log p(x_t) − μ_t) / σ_t,
    with μ_t, σ_t² the mean and variance of log p over the vocabulary at position t (the
    ``vocab_mean``/``vocab_var`` of the same forward pass). NaN for an empty text.

    >>> ts = TokenScores(np.arange(4), np.log(np.array([.5, .25, .5, .125], np.float32)),
    ...                  np.zeros(4, bool), vocab_mean=np.full(4, -1.0, np.float32),
    ...                  vocab_var=np.full(4, 0.25, np.float32))
    >>> round(float(min_k_pp_mean([ts], k=0.5)[0]), 4)  # z = (log p + 1)/0.5; lowest two
    -1.4657
    """
    _check_k(k)
    out = np.full(len(scores), np.nan)
    for i, s in enumerate(scores):
        if len(s) == 0:
            continue
        if s.vocab_mean is None or s.vocab_var is None:
            raise CapabilityError("Min-K%++ needs vocab_mean/vocab_var from the target pass "
                                  "(a backend with the vocab_stats capability)")
        z = (s.logprobs.astype(np.float64) - s.vocab_mean) / np.sqrt(
            np.maximum(s.vocab_var.astype(np.float64), 1e-12))
        out[i] = _lowest_fraction_mean(z, k)
    return out


def zlib_bytes(texts: Sequence[str]) -> np.ndarray:
    """Length in bytes of each text's zlib compression (default level, as the official code): the paper's zlib entropy."""
    return np.array([len(zlib.compress(t.encode("utf-8"))) for t in texts], dtype=np.float64)
