"""Memorization of training windows (Carlini et al. 2022; Pythia; Hayes et al. 2024) as an audit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leakaudit.audits.base import AuditEnv, AuditResult, base_run_record
from leakaudit.errors import InputError
from leakaudit.progress import null_progress


@dataclass(frozen=True)
class MemorizationRequest:
    models: tuple[str, ...]
    corpus: Path
    prefix: tuple[int, ...] | None = None
    suffix: int | None = None
    preset: str | None = None
    sequences: int = 1000
    stride: int | None = None
    stratify: bool = True
    greedy_check: int = 500
    recheck_batch1: bool = False
    temperature: float = 1.0
    top_k: int = 40
    text_field: str = "text"
    seed: int = 0
    batch_size: int = 32
    device: str = "cpu"
    show_pii: bool = False
    allow_download: bool = False
    index_backend: str = "auto"
    index_dir: Path | None = None
    out: Path | None = None
    #: teacher-forced passes as shard tasks: ``auto``/ADDRESS (Ray) or ``local``
    cluster: str | None = None


@dataclass
class MemorizationTargets:
    models: dict[str, Any]
    docs: list
    index: Any
    config: Any  #: MemorizationConfig
    executor: Any = None
    #: "adapter base" when the one target's base model was added as the reference model
    reference_source: str | None = None


def prepare(req: MemorizationRequest) -> MemorizationTargets:
    from leakaudit.attacks.memorization import PRESETS, MemorizationConfig
    from leakaudit.audits.extraction import build_corpus_index, check_index_backend
    from leakaudit.corpus.load import load_corpus
    from leakaudit.targets import load_target
    from leakaudit.targets.base import SamplingConfig
    from leakaudit.targets.checks import check_device

    check_index_backend(req.index_backend)
    check_device(req.device)
    if req.cluster:
        from leakaudit.exec.factory import check_cluster, check_cluster_models

        check_cluster(req.cluster)
        check_cluster_models(req.models)
    if req.preset is not None and req.preset not in PRESETS:
        raise InputError(f"unknown preset {req.preset!r}; known: {', '.join(PRESETS)}")
    ks, ell = PRESETS[req.preset or "carlini2022"]
    ks = req.prefix or ks
    ell = req.suffix if req.suffix is not None else ell
    cfg = MemorizationConfig(
        prefix_lengths=ks, suffix_length=ell, n_sequences=req.sequences or None, stride=req.stride,
        stratify=req.stratify, greedy_check=req.greedy_check, recheck_batch1=req.recheck_batch1,
        sampling=SamplingConfig(temperature=req.temperature, top_k=req.top_k or None),
        batch_size=req.batch_size, seed=req.seed)
    cfg.validate()
    docs = load_corpus(req.corpus, text_field=req.text_field)
    models: dict[str, Any] = {}
    for i, m in enumerate(req.models):
        name = Path(m).name or f"model{i}"
        name = name if name not in models else f"{name}-{i}"
        models[name] = load_target(m, name=name, device=req.device, allow_download=req.allow_download)
    ref_source = None
    if len(models) == 1:  # a fine-tune alone: its base is the comparison (what fine-tuning added)
        from leakaudit.audits.extraction import default_references

        base, ref_source = default_references(next(iter(models.values())), {}, device=req.device,
                                              allow_download=req.allow_download)
        models.update(base)
    index = build_corpus_index(docs, req.index_backend, req.index_dir, req.out)
    executor = None
    if req.cluster:
        from leakaudit.exec import get_executor

        executor = get_executor(req.cluster)
    return MemorizationTargets(models, docs, index, cfg, executor, ref_source)


def run(t: MemorizationTargets, req: MemorizationRequest, env: AuditEnv) -> AuditResult:
    from leakaudit.targets import describe_target

    store = env.store()  # window selection and each model's measurement are stages
    try:
        pairs, msum = memorization_records(
            t.models, texts=[d.text for d in t.docs], doc_ids=[d.id for d in t.docs], index=t.index,
            config=t.config, show_pii=req.show_pii, progress=env.progress, log=env.log, store=store,
            trained_on={"base": "the base model the target was fine-tuned from (reference)"}
            if t.reference_source else None,
            executor=t.executor, executor_device="auto" if req.device == "cpu" else req.device)
    finally:
        if t.executor is not None:
            env.log(f"executor {t.executor.name}: {t.executor.stats['run']} shards run")
            t.executor.close()
    if store.reused:
        env.log(f"run store: reused {len(store.reused)} finished stages; computed {len(store.computed)}")
    rr = base_run_record(env.command, req.seed, {"memorization": t.config.to_dict(), "show_pii": req.show_pii})
    if t.executor is not None:
        rr["executor"] = t.executor.name
    rr["models"] = {k: {"path": str(v.source), **describe_target(v)} for k, v in t.models.items()}
    rr["reference_source"] = t.reference_source
    rr["corpus"] = {"path": str(req.corpus), "n_docs": len(t.docs), "n_bytes": t.index.n_bytes}
    return AuditResult(rr, pairs, {"attack": "memorization", "memorization": msum})


def memorization_records(models, *, texts, doc_ids, index, config, show_pii: bool = False,
                         trained_on: dict[str, str] | None = None,
                         progress=null_progress, log=print, store=None, executor=None,
                         executor_device: str = "auto") -> tuple[list[tuple[str, dict]], dict]:
    """Measure memorization of every model on the same training windows.

    Returns the ``(entry_type, record)`` pairs for report.jsonl and a short summary
    (exact-memorization rate per model at the longest prefix, greedy cross-check agreement).

    ``store``: a :class:`~leakaudit.runs.store.RunStore`. The window selection is then a stage
    keyed by the first model's fingerprint (its tokenizer cuts the windows), the corpus content
    and the options that choose windows, and each model's measurement a stage keyed by its name and fingerprint, the
    windows' key and the options: a rerun reuses the finished ones and ends with the records of
    an uninterrupted run.
    """
    from dataclasses import asdict

    from leakaudit.attacks.memorization import select_sequences
    from leakaudit.attacks.memorization.measure import (Sequences, assemble, check_models,
                                                        measure_model)
    from leakaudit.runs.store import NullStore, stage_key, texts_key

    store = store if store is not None else NullStore()
    first = next(iter(models.values()))
    cut = {k: getattr(config, k) for k in ("prefix_lengths", "suffix_length", "n_sequences",
                                            "stride", "stratify", "seed")}  # what picks windows
    wkey = stage_key("memorization-windows", first.fingerprint(), texts_key(texts),
                     texts_key(doc_ids), cut)
    seqs = Sequences(**store.json("memorization-windows", wkey, lambda: asdict(select_sequences(
        first, texts, doc_ids, index, config=config, log=log)), describe={"n_docs": len(texts)}))
    log(f"memorization: {len(seqs.ids)} windows of {config.window} tokens from "
        f"{seqs.n_docs - seqs.n_docs_skipped} documents ({seqs.n_docs_skipped} skipped as too short)")
    check_idx = check_models(models, seqs, config=config)
    specs = None
    if executor is not None:
        from leakaudit.exec.extraction import model_specs

        specs = model_specs(models, device=executor_device)
    parts = []
    for name, m in models.items():
        mkey = stage_key("memorization-model", name, m.fingerprint(), wkey, config.to_dict(),
                         show_pii, check_idx)
        parts.append(store.json(f"memorization-{name}", mkey, lambda _n=name, _m=m: measure_model(
            _n, _m, seqs, config=config, check_idx=check_idx, show_pii=show_pii,
            progress=progress, log=log, executor=executor, executor_specs=specs),
            describe={"model": name, "fingerprint": m.fingerprint()}))
    res = assemble(parts, seqs, config=config)
    for name, data in (trained_on or {}).items():  # e.g. a reference that never saw the corpus
        res.models[name]["trained_on"] = data
    kmax = max(config.prefix_lengths)
    summary = {"n_sequences": len(seqs.ids), "n_docs_skipped": seqs.n_docs_skipped,
               "exact_rate": {r["model"]: r["exact"]["value"] for r in res.rates
                              if r["bucket"] == "all" and r["k"] == kmax},
               "greedy_agreement": {f"{c['model']}@k={c['k']}": c["agreement"]["value"]
                                    for c in res.checks if "agreement" in c}}
    return res.report_records(), summary
