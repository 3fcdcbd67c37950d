"""The shared signals of every LLM membership attack: at most 2 + R teacher-forced passes.

One pass of the target over the documents (with the full-vocabulary mean and variance of log p at
each position, for Min-K%++, from the same forward pass), one over the lowercased documents (for
the lowercase attack) and one per reference model. Every LLM attack is numpy over these arrays, so
adding an attack costs no forward pass. Passes go through :func:`leakaudit.signals.lm.score_cached`,
so with a ``cache_dir`` a second audit of the same documents costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leakaudit.progress import null_progress
from leakaudit.signals.lm import score_cached, zlib_bytes
from leakaudit.targets.base import LanguageModel, TokenScores


@dataclass
class LMSignals:
    """Cached per-token passes over ``texts`` and what the attacks derive from them."""

    texts: list[str]
    target: list[TokenScores]  #: with vocab_mean / vocab_var
    lowercase: list[TokenScores] | None = None
    references: dict[str, list[TokenScores]] = field(default_factory=dict)
    zlib: np.ndarray | None = None  #: zlib-compressed size in bytes of each text
    #: documents actually run through a model per pass in this process (0: the cache answered);
    #: an observation of the run, kept out of report records
    forward_passes: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


class _CountingLM:
    """Delegates to a language model and counts the documents it actually scores."""

    def __init__(self, model: LanguageModel):
        self._model = model
        self.docs_scored = 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def fingerprint(self) -> str:
        return self._model.fingerprint()

    def score(self, texts, **kw):
        self.docs_scored += len(texts)
        return self._model.score(texts, **kw)


class _OnExecutor:
    """Delegates to a language model, but its ``score`` runs on an executor
    (:mod:`leakaudit.exec`): the same batches one in-process ``score`` call forms, each scored
    as one forward pass by a worker that loads the model named ``which`` in ``specs``."""

    def __init__(self, model: LanguageModel, executor, specs: dict, which: str):
        self._model, self._executor, self._specs, self._which = model, executor, specs, which

    def __getattr__(self, name):
        return getattr(self._model, name)

    def fingerprint(self) -> str:  # the same signal-cache entries as the in-process pass
        return self._model.fingerprint()

    def score(self, texts, *, batch_size: int = 16, vocab_stats: bool = False, progress=None):
        self._model.capabilities.require("prompt_logprobs", who="scoring")
        return self._executor.extraction.run_scores(
            self._executor, None, self._specs, self._which, self._model, texts,
            batch_size=batch_size, shard_texts=4 * batch_size, threads=None,
            vocab_stats=vocab_stats, label=f"mia-{self._which}", progress=progress)


def compute_lm_signals(target: LanguageModel, texts: Sequence[str], *,
                       references: dict[str, LanguageModel], lowercase: bool, vocab_stats: bool,
                       cache_dir: str | Path | None, batch_size: int,
                       progress=null_progress, executor=None,
                       executor_specs: dict | None = None) -> LMSignals:
    """Run (or reuse) the passes every LLM membership attack needs over ``texts``.

    ``vocab_stats``: ask the target pass for the full-vocabulary mean/variance of log p (Min-K%++;
    skipped when the backend lacks the capability, and Min-K%++ then refuses clearly).

    ``executor`` (:mod:`leakaudit.exec`) with ``executor_specs`` naming the models ``target``
    and ``reference:<name>``: the passes run as its tasks, in the same batches, so the signals
    are those of the in-process passes (and share their cache entries).

    ``forward_passes`` records, per pass, how many documents were actually run through a model
    (0 when the cache answered): the cost accounting that the report and benchmark print.
    """
    texts = list(texts)
    passes: dict[str, int] = {}

    def run(name: str, model: LanguageModel, variant: list[str], vocab_stats: bool):
        if executor is not None:
            which = "target" if name.startswith("target") else name
            model = _OnExecutor(model, executor, executor_specs, which)
        counted = _CountingLM(model)
        with progress(f"scoring ({name})", len(variant)) as adv:
            res = score_cached(counted, variant, cache_dir=cache_dir, batch_size=batch_size,
                               vocab_stats=vocab_stats, progress=adv)
        passes[name] = counted.docs_scored
        return res

    tgt = run("target", target, texts, vocab_stats and target.capabilities.vocab_stats)
    low = run("target-lowercase", target, [t.lower() for t in texts], False) if lowercase else None
    refs = {name: run(f"reference:{name}", m, texts, False) for name, m in references.items()}
    return LMSignals(texts=texts, target=tgt, lowercase=low, references=refs,
                     zlib=zlib_bytes(texts), forward_passes=passes)
