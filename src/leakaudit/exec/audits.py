"""Sharded audits: the driver cuts the work into shards, an executor runs them (in-process or on
Ray), the driver assembles the findings. Shards depend only on the run seed and their index.

- :func:`sharded_extraction`: Carlini et al. (2021) sampling → scoring → ranking → verification,
  one shard per ``shard_size`` generations of a sampler; selection (fuzzy dedup, top-k per
  sampler and ranking) and the precision table are assembled by the driver over all samples.
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

from leakaudit.exec.base import Executor, ShardStore, shard_seed


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def sharded_extraction(target: str | Path, *, executor: Executor, config,
                       references: dict[str, str | Path] | None = None,
                       index_dir: str | Path | None = None, store: ShardStore | None = None,
                       shard_size: int | None = None, threads: int = 1,
                       canaries: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Extraction findings: per (sampler, ranking) the selected sample ids and how many were
    verified, the verified sample ids, and canaries seen in the samples."""
    from leakaudit.attacks.extraction.dedup import select_deduplicated, trigrams

    cfg = config
    if "internet" in cfg.samplers:
        raise ValueError("sharded extraction supports the unprompted samplers (top_k, temperature)")
    size = shard_size or cfg.generate_batch_size
    shards = []
    for si, sampler in enumerate(cfg.samplers):
        for j, (a, b) in enumerate(_chunks(cfg.n_samples, size)):
            shards.append({
                "sampler": sampler, "shard": len(shards), "n": b - a,
                "seed": shard_seed(cfg.seed, "extraction", sampler, j),
                "max_new_tokens": cfg.max_new_tokens, "top_k": cfg.top_k,
                "generate_batch_size": cfg.generate_batch_size,
                "score_batch_size": cfg.score_batch_size,
                "rankings": list(cfg.rankings) if cfg.rankings else None, "window": cfg.window,
                "min_k": cfg.min_k, "match_tokens": cfg.match_tokens, "threads": threads})
    specs = {"target": str(target), "references": {k: str(v) for k, v in (references or {}).items()},
             "index": str(index_dir) if index_dir else None}
    results = executor.map("extraction", specs, shards, store)
    texts: list[str] = []
    sampler_of: list[str] = []
    verification: list[dict | None] = []
    scores: dict[str, list[float]] = {}
    for sh, r in zip(shards, results):
        texts += r["texts"]
        sampler_of += [sh["sampler"]] * len(r["texts"])
        verification += r["verification"]
        for name, v in r["scores"].items():
            scores.setdefault(name, []).extend(v)
    tris = [trigrams(t) for t in texts]
    samplers = np.array(sampler_of)
    evals = []
    for s in cfg.samplers:
        for name in sorted(scores):
            sel, skipped = select_deduplicated(np.asarray(scores[name]), tris, k=cfg.select,
                                               eligible=samplers == s)
            n_mem = sum(bool(verification[i] and verification[i]["verified"]) for i in sel)
            evals.append({"sampler": s, "ranking": name, "selected": [int(i) for i in sel],
                          "n_selected": len(sel), "n_memorized": n_mem,
                          "duplicates_skipped": int(skipped)})
    verified = [i for i, v in enumerate(verification) if v and v["verified"]]
    can = []
    for c in canaries or []:
        hits = [i for i, t in enumerate(texts) if c["secret"] in t]
        can.append({"canary_id": c["id"], "n_samples_with_secret": len(hits)})
    return {"n_samples": len(texts), "n_shards": len(shards), "verified": verified,
            "longest_match_tokens": [v["longest_match_tokens"] if v else None for v in verification],
            "evals": evals, "canaries": can,
            "text_sha256": _sha(texts)}


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
