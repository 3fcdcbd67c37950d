"""Untargeted training-data extraction (Carlini et al. 2021) as an audit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from leakaudit.audits.base import AuditEnv, AuditResult, base_run_record
from leakaudit.errors import InputError, LeakauditError
from leakaudit.progress import null_progress

Pairs = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class ExtractionRequest:
    """What the user asked for (``leakaudit extract`` options)."""

    model: str
    corpus: Path | None = None
    references: tuple[str, ...] = ()
    prompts: Path | None = None
    samplers: tuple[str, ...] = ()  #: empty: all that apply
    n_samples: int = 1000
    select: int = 100
    new_tokens: int = 256
    top_k: int = 40
    text_field: str = "text"
    seed: int = 0
    batch_size: int = 32
    device: str = "cpu"
    show_pii: bool = False
    allow_download: bool = False
    cache: Path | None = None
    shard_samples: int = 256
    index_backend: str = "auto"  #: memory, disk (memory-mapped) or auto (disk above 1 GiB)
    index_dir: Path | None = None  #: on-disk index folder (default: OUT-index)
    out: Path | None = None  #: the output folder (for the default index folder)
    #: run sampling, scoring and verification as shard tasks: ``auto``/ADDRESS (Ray), ``local``
    #: (the same shards in this process); None: the plain single-process pipeline
    cluster: str | None = None


@dataclass
class ExtractionTargets:
    target: Any
    references: dict[str, Any]
    docs: list | None
    prompt_docs: list | None
    index: Any
    config: Any  #: ExtractionConfig
    extra: dict[str, Any] = field(default_factory=dict)


def prepare(req: ExtractionRequest) -> ExtractionTargets:
    """Check the inputs and load the target, references, corpus and prompts."""
    from leakaudit.attacks.extraction.pipeline import ExtractionConfig
    from leakaudit.attacks.extraction.samplers import SAMPLERS
    from leakaudit.corpus.load import load_corpus
    from leakaudit.targets import load_target
    from leakaudit.targets.checks import check_device

    check_index_backend(req.index_backend)
    check_device(req.device)
    samplers = list(req.samplers) or ["top_k", "temperature"] + (["internet"] if req.prompts else [])
    for s in samplers:
        try:
            SAMPLERS.get(s)
        except KeyError as e:
            raise LeakauditError(e.args[0]) from None
    if "internet" in samplers and req.prompts is None:
        raise LeakauditError("the internet sampler needs --prompts FILE (text that is not training data)")
    executor = None
    if req.cluster:
        from leakaudit.exec import get_executor
        from leakaudit.exec.factory import check_cluster, check_cluster_models

        check_cluster(req.cluster)
        check_cluster_models((req.model, *req.references))
    docs = load_corpus(req.corpus, text_field=req.text_field) if req.corpus is not None else None
    prompt_docs = load_corpus(req.prompts, text_field=req.text_field) if req.prompts is not None else None
    target = load_target(req.model, name="target", device=req.device, allow_download=req.allow_download)
    if "internet" in samplers:  # fail here, naming the file, not mid-run
        lo, hi = ExtractionConfig.prompt_tokens
        if not any(len(t) >= lo for t in target.tokenize([d.text for d in prompt_docs])):
            raise InputError(f"no text has at least {lo} tokens (the internet sampler cuts "
                             f"{lo}–{hi}-token prefixes from it)", path=str(req.prompts))
    refs = load_references(req.references, device=req.device, allow_download=req.allow_download)
    refs, ref_source = default_references(target, refs, device=req.device,
                                          allow_download=req.allow_download)
    # on a cluster the workers verify against the on-disk index (``auto`` picks it)
    backend = "disk" if req.cluster and req.index_backend == "auto" else req.index_backend
    index = build_corpus_index(docs, backend, req.index_dir, req.out) if docs else None
    if req.cluster:
        executor = get_executor(req.cluster)  # Ray starts or connects here, after the checks
    cfg = ExtractionConfig(samplers=tuple(samplers), n_samples=req.n_samples, select=req.select,
                           max_new_tokens=req.new_tokens, top_k=req.top_k, seed=req.seed,
                           generate_batch_size=req.batch_size,
                           score_batch_size=max(1, req.batch_size // 2), show_pii=req.show_pii,
                           shard_samples=req.shard_samples)
    return ExtractionTargets(target, refs, docs, prompt_docs, index, cfg,
                             extra={"executor": executor, "reference_source": ref_source})


def check_index_backend(backend: str) -> None:
    from leakaudit.corpus.index_disk import INDEX_BACKENDS

    if backend not in INDEX_BACKENDS:
        raise InputError(f"--index must be one of {', '.join(INDEX_BACKENDS)}, got {backend!r}")


def build_corpus_index(docs, backend: str, directory: Path | None, out: Path | None):
    """The corpus index (in memory, or memory-mapped on disk for corpora larger than RAM)."""
    from leakaudit.corpus.index_disk import build_index

    return build_index([d.text for d in docs], [d.id for d in docs], backend=backend,
                       directory=directory or Path(f"{out}-index"))


def load_references(specs, *, device: str, allow_download: bool) -> dict[str, Any]:
    """Reference models by name (the folder name; repeated names get ``-i``)."""
    from leakaudit.targets import load_target

    refs: dict[str, Any] = {}
    for i, r in enumerate(specs or ()):
        name = Path(r).name or f"ref{i}"
        refs[name if name not in refs else f"{name}-{i}"] = load_target(
            r, name=name, device=device, allow_download=allow_download)
    return refs


def default_references(target, refs: dict[str, Any], *, device: str,
                       allow_download: bool) -> tuple[dict[str, Any], str | None]:
    """The reference models of a reference-based attack: those given, else a fine-tuned
    target's base model (an adapter's base, or the base in a ``finetune.json``), else none; and
    where they came from (``"given"``, ``"adapter base"`` or None), for the run record."""
    from leakaudit.targets.peft import references_or_base

    return references_or_base(target, refs, device=device, allow_download=allow_download)


def run(t: ExtractionTargets, req: ExtractionRequest, env: AuditEnv) -> AuditResult:
    from leakaudit.targets import describe_target

    run_record = base_run_record(env.command, req.seed, asdict(t.config))
    run_record["models"] = {"target": {"path": req.model, **describe_target(t.target, req.model)},
                            **{k: {"path": str(v.source), **describe_target(v)} for k, v in t.references.items()}}
    run_record["reference_source"] = t.extra.get("reference_source")
    run_record["corpus"] = ({"path": str(req.corpus), "n_docs": len(t.docs), "n_bytes": t.index.n_bytes}
                            if t.docs else None)
    store = env.store()
    executor = t.extra.get("executor")
    if executor is not None:
        run_record["executor"] = executor.name
    try:
        pairs, summary = _records(t, req, env, store, executor)
    finally:
        if executor is not None:
            env.log(f"executor {executor.name}: {executor.stats['run']} shards run, "
                    f"{executor.stats['reused']} reused")
            executor.close()
    if store.reused:
        env.log(f"run store: reused {len(store.reused)} finished stages; computed {len(store.computed)}")
    return AuditResult(run_record, pairs, summary)


def _records(t: ExtractionTargets, req: ExtractionRequest, env: AuditEnv, store, executor):
    return extraction_records(
        target=t.target, references=t.references, index=t.index,
        prompt_texts=[d.text for d in t.prompt_docs] if t.prompt_docs else None, canaries=None,
        config=t.config, progress=env.progress, log=env.log,
        cache_dir=req.cache if req.cache is not None else store.cache_dir, store=store,
        doc_locations={d.id: {"file": d.source, "line": d.line} for d in t.docs or []},
        executor=executor, executor_device="auto" if req.device == "cpu" else req.device)


def extraction_records(*, target, references, index, prompt_texts, canaries, config,
                       progress=null_progress, log=print, cache_dir=None,
                       doc_locations: dict[str, dict[str, Any]] | None = None,
                       store=None, executor=None,
                       executor_device: str = "auto") -> tuple[Pairs, dict[str, Any]]:
    """Run extraction; return its report records and its summary (``store``: the run store
    whose finished stages are reused).

    ``doc_locations`` maps a corpus document id to ``{"file": path, "line": n}`` (the corpus
    loader's ``Document.source`` / ``line``); every verified sample then carries
    ``match_locations`` for the documents it matched, which SARIF reports as result locations.
    """
    from leakaudit.attacks.extraction.pipeline import run_extraction

    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        log(f"warning: {msg}")

    res = run_extraction(target, references=references, index=index, prompt_texts=prompt_texts,
                         canaries=canaries, config=config, cache_dir=cache_dir, progress=progress,
                         warn=warn, store=store, executor=executor,
                         executor_device=executor_device)
    n_trunc = res.summary.get("n_truncated_samples") or 0
    if n_trunc:
        warn(f"{n_trunc} of {res.summary['n_samples']} samples got fewer than "
             f"{config.max_new_tokens} new tokens: the model's context capped them")
    summary = {**res.summary, "timings_s": {k: round(v, 2) for k, v in res.timings.items()},
               "warnings": warnings}
    samples = res.samples
    if doc_locations:
        samples = [_with_locations(s, doc_locations) for s in samples]
    pairs: Pairs = [("sample", s) for s in samples]
    pairs += [("eval", e) for e in res.evals]
    pairs += [("canary", c) for c in res.canaries]
    pairs.append(("pii", res.pii))
    return pairs, summary


def _with_locations(sample: dict[str, Any], locations: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if not sample.get("verified"):
        return sample
    locs = [{"doc_id": d, **locations[d]} for d in sample.get("match_docs") or [] if d in locations]
    return {**sample, "match_locations": locs}
