"""Extraction's heavy steps on an executor, equal to the single-process pipeline by construction.

:func:`~leakaudit.attacks.extraction.pipeline.run_extraction` with ``executor=`` runs the same
driver code as without one (sampler plan, rankings, fuzzy dedup, selection, records); only its
three heavy steps become shard tasks (:mod:`leakaudit.exec.tasks`), each made to compute exactly
what the single-process step computes:

- **sampling**: a shard is the pipeline's own sampling shard, the same prompts, seed
  (``seed·31 + sampler + 7,777,777·shard``) and batch size, passed to the same
  ``generate_ids``; its result is stored as the very run-store stage (``samples-<sampler>-<j>``,
  same key) a single-process run writes, so either path resumes the other's shards;
- **scoring**: the driver tokenizes every text and forms the *same batches*
  (:func:`~leakaudit.targets.hf.length_batches` over all texts) that one in-process
  ``score`` call would; a shard is a run of whole batches and a worker scores each batch as one
  ``score_ids`` call, so every forward pass sees the same tensor (rows, padding, shape) as in the
  single process and returns the same float32 log-probabilities (shipped as raw bytes);
- **verification**: shards of samples checked by the same ``_verify`` against the on-disk index
  (whose answers equal the in-memory index's, :mod:`leakaudit.corpus.index_disk`).

Bitwise equality also needs the same arithmetic: the same device and dtype and the same torch
thread count per shard (``threads``; on CPU, matrix products may round differently with a
different thread count).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from leakaudit.errors import InputError
from leakaudit.exec.base import Executor, StageStore
from leakaudit.runs.store import jsonable


def cluster_specs(target, references: dict[str, Any], index, *, device: str = "auto") -> dict[str, Any]:
    """What every worker loads (once): the target's and references' model paths, the on-disk
    index folder (``None``: verification stays on the driver)."""
    from leakaudit.corpus.index_disk import DiskCorpusIndex
    from leakaudit.targets.hf import HFCausalLM

    def src(m, who: str) -> str:
        if not isinstance(m, HFCausalLM) or not getattr(m, "source", None):
            raise InputError(f"the {who} cannot run on an executor: only transformers/GGUF models "
                             "loaded from a path or hub name can be loaded by the workers")
        return str(m.source)

    return {"target": src(target, "target"),
            "references": {n: src(m, f"reference model {n!r}") for n, m in sorted(references.items())},
            "index": str(index.directory) if isinstance(index, DiskCorpusIndex) else None,
            "device": device}


def model_specs(models: dict[str, Any], *, device: str = "auto") -> dict[str, Any]:
    """Specs naming several models by their run names (memorization)."""
    from leakaudit.targets.hf import HFCausalLM

    out = {}
    for n, m in models.items():
        if not isinstance(m, HFCausalLM) or not getattr(m, "source", None):
            raise InputError(f"model {n!r} cannot run on an executor: only transformers models "
                             "loaded from a path or hub name can be loaded by the workers")
        out[n] = str(m.source)
    return {"models": out, "device": device}


def _stages(store, names_keys: Sequence[tuple[str, str]]) -> StageStore:
    return StageStore(store, {k: n for n, k in names_keys})


def run_samples(executor: Executor, store, specs: dict[str, Any],
                plan: Sequence[dict[str, Any]], progress=None) -> list[list[dict[str, Any]]]:
    """Each sampling shard's generations (``asdict(Generation)`` lists, as read back from the
    run store). ``plan`` items: ``name``, ``key`` (the run-store stage) and ``payload``."""
    payloads = [dict(p["payload"], shard=j) for j, p in enumerate(plan)]
    keys = [p["key"] for p in plan]
    res = executor.map("extract_sample", specs, payloads,
                       _stages(store, [(p["name"], p["key"]) for p in plan]), progress=progress,
                       keys=keys)
    return [jsonable(r) for r in res]


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _unb64(s: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype).copy()


def pack_scores(scores) -> list[dict[str, Any]]:
    """TokenScores as JSON: raw little-endian bytes (exact), base64; the vocabulary statistics
    (Min-K%++) only when present."""
    out = []
    for s in scores:
        p = {"t": _b64(np.asarray(s.token_ids, dtype="<i8")), "lp": _b64(np.asarray(s.logprobs, dtype="<f4")),
             "am": _b64(np.packbits(np.asarray(s.is_argmax, dtype=bool))), "n": len(s),
             "tr": bool(s.truncated),
             "slp": None if s.sampling_logprobs is None
             else _b64(np.asarray(s.sampling_logprobs, dtype="<f4"))}
        if s.vocab_mean is not None:
            p["vm"] = _b64(np.asarray(s.vocab_mean, dtype="<f4"))
            p["vv"] = _b64(np.asarray(s.vocab_var, dtype="<f4"))
        out.append(p)
    return out


def unpack_scores(packed: Sequence[dict[str, Any]]):
    from leakaudit.targets.base import TokenScores

    out = []
    for p in packed:
        n = int(p["n"])
        slp, vm, vv = p.get("slp"), p.get("vm"), p.get("vv")
        out.append(TokenScores(token_ids=_unb64(p["t"], "<i8").astype(np.int64),
                               logprobs=_unb64(p["lp"], "<f4").astype(np.float32),
                               is_argmax=np.unpackbits(_unb64(p["am"], np.uint8))[:n].astype(bool),
                               vocab_mean=None if vm is None else _unb64(vm, "<f4").astype(np.float32),
                               vocab_var=None if vv is None else _unb64(vv, "<f4").astype(np.float32),
                               truncated=bool(p["tr"]),
                               sampling_logprobs=None if slp is None
                               else _unb64(slp, "<f4").astype(np.float32)))
    return out


def scoring_batches(model, ids: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """The batches (indices into ``ids``, in row order) one ``model.score_ids(ids,
    batch_size=batch_size)`` call forms."""
    from leakaudit.targets.hf import length_batches

    return length_batches([min(len(x), model.max_length) for x in ids], batch_size)


def run_scores(executor: Executor, store, specs: dict[str, Any], which: str, model,
               texts: Sequence[str], *, batch_size: int, shard_texts: int, threads: int | None,
               vocab_stats: bool = False, label: str | None = None, progress=None) -> list:
    """``model.score(texts, batch_size=batch_size, vocab_stats=vocab_stats)``, computed by the
    executor in shards of whole batches (``which``: ``target``, a reference name in ``specs``,
    or a name in its ``models``)."""
    return run_score_ids(executor, store, specs, which, model, model.document_ids(list(texts)),
                         batch_size=batch_size, shard_texts=shard_texts, threads=threads,
                         vocab_stats=vocab_stats, label=label, progress=progress)


def run_score_ids(executor: Executor, store, specs: dict[str, Any], which: str, model,
                  ids: Sequence[Sequence[int]], *, batch_size: int, shard_texts: int,
                  threads: int | None, sampling=None, last: int | None = None,
                  vocab_stats: bool = False, label: str | None = None, progress=None) -> list:
    """``model.score_ids(ids, batch_size=, sampling=, last=, vocab_stats=)`` computed by the
    executor in shards of whole batches: each batch the very rows, padding and shape one
    in-process call uses."""
    from dataclasses import asdict

    from leakaudit.runs.store import stage_key

    batches = scoring_batches(model, ids, batch_size)
    groups: list[list[list[int]]] = [[]]
    n_in = 0
    for b in batches:
        if groups[-1] and n_in + len(b) > max(shard_texts, 1):
            groups.append([])
            n_in = 0
        groups[-1].append(b)
        n_in += len(b)
    groups = [g for g in groups if g]
    fp = model.fingerprint()
    payloads, plan = [], []
    for j, g in enumerate(groups):
        pay = {"model": which, "batches": [[list(map(int, ids[i])) for i in b] for b in g],
               "threads": threads, "shard": j,
               "sampling": None if sampling is None else asdict(sampling), "last": last}
        extra = ()
        if vocab_stats:  # (absent otherwise, so earlier runs' stage keys still match)
            pay["vocab_stats"] = True
            extra = ("vocab_stats",)
        key = stage_key("score-batches", fp, pay["batches"], pay["sampling"], last, *extra)
        payloads.append(pay)
        plan.append((f"score-{label or which}-{j}", key))
    res = executor.map("score_batches", specs, payloads, _stages(store, plan),
                       keys=[k for _, k in plan])
    out: list = [None] * len(ids)
    for g, r in zip(groups, res):
        flat = [i for b in g for i in b]
        for i, s in zip(flat, unpack_scores([x for batch in r for x in batch])):
            out[i] = s
        if progress is not None:
            progress(len(flat))
    return out


def run_verify(executor: Executor, store, specs: dict[str, Any], target, texts: Sequence[str],
               indices: Sequence[int], *, match_tokens: int, index_key: str, shard_texts: int,
               threads: int | None, progress=None) -> dict[int, dict[str, Any]]:
    """``_verify`` of ``texts[i]`` for each ``i`` in ``indices``, on the workers' on-disk index."""
    from leakaudit.runs.store import stage_key, texts_key

    idx = list(indices)
    chunks = [idx[a: a + max(shard_texts, 1)] for a in range(0, len(idx), max(shard_texts, 1))]
    fp = target.fingerprint()
    payloads, plan = [], []
    for j, c in enumerate(chunks):
        part = [texts[i] for i in c]
        payloads.append({"texts": part, "match_tokens": int(match_tokens), "threads": threads,
                         "shard": j})
        plan.append((f"verify-{j}", stage_key("verify-shard", fp, texts_key(part), c, index_key,
                                              match_tokens)))
    res = executor.map("verify_samples", specs, payloads, _stages(store, plan),
                       keys=[k for _, k in plan])
    out: dict[int, dict[str, Any]] = {}
    for c, r in zip(chunks, res):
        for i, v in zip(c, jsonable(r)):
            out[i] = v
        if progress is not None:
            progress(len(c))
    return out


def sample_payload(name: str, part, seed: int, cfg, threads: int | None) -> dict[str, Any]:
    return {"sampler": name, "prompts": [list(map(int, p)) for p in part], "seed": int(seed),
            "max_new_tokens": cfg.max_new_tokens, "top_k": cfg.top_k,
            "batch_size": cfg.generate_batch_size, "threads": threads}


__all__ = ["cluster_specs", "run_samples", "run_scores", "run_verify", "pack_scores",
           "unpack_scores", "scoring_batches", "sample_payload"]
