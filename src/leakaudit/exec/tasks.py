"""Shard tasks: pure functions of (specs, shard) → JSON-able result, run by any executor.

Each worker process loads a target (or an index) once and keeps it for every later shard
(:func:`worker_model`, :func:`worker_index`); on a GPU worker the model goes to CUDA. A shard
sets the torch thread count it was given, so a worker's arithmetic equals the driver's.

Tasks:

- ``extract_sample``, ``score_batches``, ``verify_samples``: the extraction pipeline's sampling
  shards, scoring batches and verification shards (see :mod:`leakaudit.exec.extraction`);
- ``memorization``: teacher-forced greedy check of training windows (prefix ``k`` → the ℓ-token
  suffix is reproduced exactly iff every suffix token is the argmax), per prefix length;
- ``train_shadow``: one classifier shadow model (:mod:`leakaudit.exec.shadows`);
- ``membership``: the passes of the LLM membership attacks (LOSS, zlib, Min-K%, lowercase and
  reference ratios) over a shard of candidate texts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_MODELS: dict[tuple[str, str], Any] = {}
_INDEXES: dict[str, Any] = {}
LOADS = {"models": 0, "indexes": 0}  # per process: how often a worker really loaded something


def pick_device(requested: str = "auto") -> str:
    """``auto``: the CUDA device with the most free memory when this worker sees one (Ray sets
    CUDA_VISIBLE_DEVICES to the GPU it assigned), else ``cpu``."""
    from leakaudit.targets.gpu import select_device

    return select_device(requested)


def worker_model(path: str, device: str = "auto"):
    """The target ``path`` names (a spec for :func:`~leakaudit.targets.load_target`), loaded once
    per process."""
    from leakaudit.targets import load_target

    key = (str(path), device)
    m = _MODELS.get(key)
    if m is None:
        m = load_target(str(path), name=Path(path).name, device=pick_device(device))
        _MODELS[key] = m
        LOADS["models"] += 1
    return m


def worker_index(path: str):
    from leakaudit.corpus.index_disk import DiskCorpusIndex

    idx = _INDEXES.get(str(path))
    if idx is None:
        idx = _INDEXES[str(path)] = DiskCorpusIndex.open(path)
        LOADS["indexes"] += 1
    return idx


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def _test_hooks(task: str, shard: dict[str, Any]) -> None:
    """Test hooks (environment only): announce the shard's start with this process's pid, and
    stall inside the shard so a test can kill the worker mid-shard."""
    d = os.environ.get("LEAKAUDIT_EXEC_TEST_DIR")
    if d:
        sid = shard.get("shard", 0)
        first = not any(Path(d).glob(f"{task}-{sid}-*.start"))
        Path(d, f"{task}-{sid}-{os.getpid()}.start").touch()
        stall = float(os.environ.get("LEAKAUDIT_EXEC_TEST_STALL_S", "0"))
        if first and stall and f"{task}-{sid}" == os.environ.get("LEAKAUDIT_EXEC_TEST_STALL_SHARD"):
            time.sleep(stall)


def _extract_sample(specs: dict[str, Any], shard: dict[str, Any]) -> list[dict[str, Any]]:
    """One sampling shard of the extraction pipeline (same call as its in-process stage)."""
    from dataclasses import asdict

    from leakaudit.attacks.extraction.samplers import sampler_spec

    target = worker_model(specs["target"], specs.get("device", "auto"))
    spec = sampler_spec(shard["sampler"], max_new_tokens=shard["max_new_tokens"], top_k=shard["top_k"])
    gens = target.generate_ids(shard["prompts"], spec.sampling, seed=shard["seed"],
                               batch_size=shard["batch_size"])
    return [asdict(g) for g in gens]


def _score_batches(specs: dict[str, Any], shard: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Whole scoring batches, each one ``score_ids`` call of exactly its rows (so each forward
    pass equals the one the single-process scoring makes)."""
    from leakaudit.exec.extraction import pack_scores

    from leakaudit.targets.base import SamplingConfig

    which = shard["model"]
    if which in specs.get("models", {}):
        path = specs["models"][which]
    else:
        path = specs["target"] if which == "target" else specs["references"][which]
    model = worker_model(path, specs.get("device", "auto"))
    s = shard.get("sampling")
    sampling = None if s is None else SamplingConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()})
    return [pack_scores(model.score_ids(b, batch_size=len(b), sampling=sampling,
                                       last=shard.get("last"),
                                       vocab_stats=bool(shard.get("vocab_stats"))))
            for b in shard["batches"]]


def _verify_samples(specs: dict[str, Any], shard: dict[str, Any]) -> list[dict[str, Any]]:
    from leakaudit.attacks.extraction.pipeline import _verify

    target = worker_model(specs["target"], specs.get("device", "auto"))  # its tokenizer
    index = worker_index(specs["index"])
    return [_verify(t, target, index, shard["match_tokens"]) for t in shard["texts"]]


def _memorization(specs: dict[str, Any], shard: dict[str, Any]) -> dict[str, Any]:
    model = worker_model(specs["model"], specs.get("device", "auto"))
    ell = shard["suffix_length"]
    W = shard["window"]
    out: dict[str, Any] = {}
    for k in shard["prefix_lengths"]:
        seqs = [ids[W - ell - k :] for ids in shard["ids"]]
        sc = model.score_ids(seqs, batch_size=shard["batch_size"])
        exact, acc, lp = [], [], []
        for s in sc:
            am = np.asarray(s.is_argmax[-ell:], dtype=bool)
            exact.append(bool(am.all()))
            acc.append(float(am.mean()))
            lp.append(float(np.asarray(s.logprobs[-ell:], dtype=np.float64).sum()))
        out[str(k)] = {"exact": exact, "token_accuracy": acc, "suffix_logprob": lp}
    return out


def _membership(specs: dict[str, Any], shard: dict[str, Any]) -> dict[str, Any]:
    from leakaudit.signals.lm import min_k_mean, score_cached, zlib_bytes

    dev = specs.get("device", "auto")
    target = worker_model(specs["target"], dev)
    texts = shard["texts"]
    bs = shard["batch_size"]
    tgt = score_cached(target, texts, cache_dir=None, batch_size=bs)
    low = score_cached(target, [t.lower() for t in texts], cache_dir=None, batch_size=bs)
    loss = np.array([float(np.mean(s.logprobs, dtype=np.float64)) if len(s) else 0.0 for s in tgt])
    total = np.array([float(np.sum(s.logprobs, dtype=np.float64)) for s in tgt])
    low_total = np.array([float(np.sum(s.logprobs, dtype=np.float64)) for s in low])
    out = {
        "loss": loss.tolist(),  # mean log p: higher = more likely member
        "zlib": (total / np.maximum(zlib_bytes(texts), 1)).tolist(),
        "min_k": np.asarray(min_k_mean(tgt, k=shard["min_k"]), dtype=np.float64).tolist(),
        "lowercase": (total - low_total).tolist(),
    }
    for n, p in sorted(specs.get("references", {}).items()):
        ref = score_cached(worker_model(p, dev), texts, cache_dir=None, batch_size=bs)
        out[f"reference:{n}"] = (total - np.array([float(np.sum(s.logprobs, dtype=np.float64))
                                                   for s in ref])).tolist()
    return out


def _train_shadow(specs: dict[str, Any], shard: dict[str, Any]) -> dict[str, Any]:
    from leakaudit.exec.shadows import train_shadow_task

    return train_shadow_task(specs, shard)


TASKS: dict[str, Callable[[dict[str, Any], dict[str, Any]], Any]] = {
    "extract_sample": _extract_sample,
    "score_batches": _score_batches,
    "verify_samples": _verify_samples,
    "memorization": _memorization,
    "membership": _membership,
    "train_shadow": _train_shadow,
}


def run_task(task: str, specs: dict[str, Any], shard: dict[str, Any]) -> Any:
    """Run one shard of ``task`` in this process."""
    fn = TASKS.get(task)
    if fn is None:
        raise KeyError(f"unknown shard task {task!r}; known: {', '.join(TASKS)}")
    _set_threads(shard.get("threads"))
    _test_hooks(task, shard)
    return fn(specs, shard)
