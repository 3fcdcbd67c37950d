"""Sharded audits: the driver cuts the work into shards, an executor runs them (in-process or on
Ray), the driver assembles the findings. Shards depend only on the run seed and their index.

- :func:`sharded_extraction`: Carlini et al. (2021) sampling → scoring → ranking → verification:
  the single-process pipeline with its sampling shards, scoring batches and verification on the
  executor (:mod:`leakaudit.exec.extraction`); same findings as ``leakaudit extract``.
- :func:`sharded_memorization`: training windows chosen by the driver
  (:func:`~leakaudit.attacks.memorization.measure.select_sequences`), checked in shards.
- :func:`sharded_membership`: the LLM membership passes over members and non-members in shards;
  AUC per attack on the driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.exec.base import Executor, ShardStore


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def sharded_extraction(target: str | Path, *, executor: Executor, config,
                       references: dict[str, str | Path] | None = None,
                       index_dir: str | Path | None = None, store=None,
                       shard_size: int | None = None, threads: int | None = 1,
                       canaries: Sequence[dict[str, Any]] | None = None,
                       device: str = "auto", keep_result: bool = False) -> dict[str, Any]:
    """:func:`~leakaudit.attacks.extraction.pipeline.run_extraction` (the single-process
    pipeline's own driver code) with its sampling shards (``shard_size`` generations each),
    scoring batches and verification run by ``executor``; ``store``: a run store (or its folder).

    Returns a compact digest (per (sampler, ranking) the selected sample ids and how many were
    verified, the verified sample ids, canaries seen, a hash of the texts) and, with
    ``keep_result``, under ``"result"`` the pipeline's :class:`ExtractionResult` itself."""
    from dataclasses import replace

    from leakaudit.attacks.extraction.pipeline import run_extraction
    from leakaudit.corpus.index_disk import DiskCorpusIndex
    from leakaudit.exec.tasks import worker_model
    from leakaudit.runs.store import RunStore

    cfg = replace(config, shard_samples=shard_size) if shard_size else config
    tgt = worker_model(str(target), device)
    refs = {n: worker_model(str(p), device) for n, p in sorted((references or {}).items())}
    index = DiskCorpusIndex.open(index_dir) if index_dir else None
    if store is not None and not hasattr(store, "json"):
        store = RunStore(getattr(store, "directory", store))
    res = run_extraction(tgt, references=refs, index=index, canaries=canaries, config=cfg,
                         store=store, executor=executor, executor_device=device,
                         executor_threads=threads)
    return {**extraction_digest(res), **({"result": res} if keep_result else {})}


def extraction_digest(res) -> dict[str, Any]:
    """What an extraction found, without timings or texts (comparable across executors)."""
    samples = res.samples
    evals = []
    for e in res.evals:
        ranked = []
        for smp in samples:
            if smp["sampler"] != e["sampler"]:
                continue
            for tag in smp["selected_by"]:
                r, _, k = tag.rpartition("#")
                if r == e["ranking"]:
                    ranked.append((int(k), smp["sample_id"]))
        evals.append({"sampler": e["sampler"], "ranking": e["ranking"],
                      "selected": [i for _, i in sorted(ranked)], "n_selected": e["n_selected"],
                      "n_memorized": e["n_memorized"], "duplicates_skipped": e["duplicates_skipped"]})
    n_shards = sum(-(-n // res.config.shard_samples)
                   for n in res.summary["n_samples_per_sampler"].values())
    return {"n_samples": len(samples), "n_shards": n_shards,
            "verified": [s["sample_id"] for s in samples if s["verified"]],
            "longest_match_tokens": [s.get("longest_match_tokens") for s in samples],
            "evals": evals,
            "canaries": [{"canary_id": c["canary_id"], "n_samples_with_secret": c["n_samples_with_secret"]}
                         for c in res.canaries],
            "text_sha256": _sha([s["text"] for s in samples])}


def _sha(texts: Sequence[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\xff")
    return h.hexdigest()


def sharded_memorization(models: dict[str, str | Path], texts: list[str], doc_ids: list[str], index, *,
                         executor: Executor, config, store: ShardStore | None = None,
                         shard_size: int = 64, threads: int = 1, log=lambda m: None) -> dict[str, Any]:
    """Exact-memorization rate per model and prefix length on the driver-chosen windows."""
    from leakaudit.attacks.memorization.measure import select_sequences
    from leakaudit.exec.tasks import worker_model

    first = worker_model(str(next(iter(models.values()))), "cpu")  # tokenizer for the windows
    seqs = select_sequences(first, texts, doc_ids, index, config=config, log=log)
    shards = [{"shard": j, "ids": seqs.ids[a:b], "prefix_lengths": list(config.prefix_lengths),
               "suffix_length": config.suffix_length, "window": config.window,
               "batch_size": config.batch_size, "threads": threads}
              for j, (a, b) in enumerate(_chunks(len(seqs.ids), shard_size))]
    out: dict[str, Any] = {"n_windows": len(seqs.ids), "n_shards": len(shards),
                           "dup_counts": seqs.dup_counts, "models": {}}
    for name, path in models.items():
        res = executor.map("memorization", {"model": str(path)}, shards, store)
        per_k = {}
        for k in config.prefix_lengths:
            exact = [e for r in res for e in r[str(k)]["exact"]]
            acc = [e for r in res for e in r[str(k)]["token_accuracy"]]
            per_k[str(k)] = {"exact_rate": float(np.mean(exact)) if exact else None,
                             "exact": [i for i, e in enumerate(exact) if e],
                             "mean_token_accuracy": float(np.mean(acc)) if acc else None}
        out["models"][name] = per_k
    return out


def sharded_membership(target: str | Path, members: list[str], nonmembers: list[str], *,
                       executor: Executor, references: dict[str, str | Path] | None = None,
                       store: ShardStore | None = None, shard_size: int = 32, batch_size: int = 8,
                       min_k: float = 0.2, threads: int = 1) -> dict[str, Any]:
    """AUC of each LLM membership score (higher = more likely member) over members vs
    non-members, with the per-text scores."""
    from leakaudit.metrics.roc import auc

    texts = list(members) + list(nonmembers)
    labels = np.array([1] * len(members) + [0] * len(nonmembers))
    shards = [{"shard": j, "texts": texts[a:b], "batch_size": batch_size, "min_k": min_k,
               "threads": threads} for j, (a, b) in enumerate(_chunks(len(texts), shard_size))]
    specs = {"target": str(target), "references": {k: str(v) for k, v in (references or {}).items()}}
    res = executor.map("membership", specs, shards, store)
    scores: dict[str, list[float]] = {}
    for r in res:
        for k, v in r.items():
            scores.setdefault(k, []).extend(v)
    return {"n_members": len(members), "n_nonmembers": len(nonmembers), "n_shards": len(shards),
            "auc": {k: float(auc(np.asarray(v), labels)) for k, v in sorted(scores.items())},
            "scores": scores}
