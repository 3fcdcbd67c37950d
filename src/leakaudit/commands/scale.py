"""``leakaudit scale …``: audits cut into deterministic shards, run in-process or on a Ray cluster.

    leakaudit scale extract --model DIR --corpus train.jsonl --out run/ [--reference DIR]
        [--cluster auto|ADDRESS] [--samples 600000] [--shard-size 256]
    leakaudit scale index --corpus train.jsonl --out index/ [--shard-mb 256]

Findings are written to ``OUT/findings.json``; finished shards to ``OUT/shards/`` (rerunning the
same command after a crash reuses them). Without ``--cluster`` everything runs in this process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import NEEDS_RAY, _fail, _log, _quiet_libraries
from leakaudit.errors import InputError, LeakauditError

scale_app = typer.Typer(help="Sharded audits on one machine or a Ray cluster, and on-disk corpus indexes.",
                        no_args_is_help=True)


@scale_app.command("index")
def index_cmd(
    corpus: Annotated[Path, typer.Option("--corpus", help="Training corpus (JSONL, .txt, Parquet or a folder).")],
    out: Annotated[Path, typer.Option("--out", help="New folder for the on-disk index.")],
    shard_mb: Annotated[float, typer.Option("--shard-mb", min=0.001, help="Suffix-array shard size (peak memory ≈ 6× this).")] = 256.0,
    text_field: Annotated[str, typer.Option("--text-field")] = "text",
) -> None:
    """Build the on-disk, memory-mapped corpus index (for corpora larger than memory)."""
    import time

    from leakaudit.corpus.index_disk import DiskCorpusIndex
    from leakaudit.corpus.load import load_corpus

    try:
        docs = load_corpus(corpus, text_field=text_field)
        t0 = time.perf_counter()
        idx = DiskCorpusIndex.build((d.text for d in docs), out, (d.id for d in docs),
                                    shard_bytes=int(shard_mb * 2**20))
        dt = time.perf_counter() - t0
    except LeakauditError as e:
        _fail(e)
    _log(f"indexed {len(idx)} documents, {idx.n_bytes / 2**20:.1f} MB in {idx.n_shards} shards "
         f"({idx.n_bytes / 2**20 / max(dt, 1e-9):.1f} MB/s) → {out}")


@scale_app.command("extract")
def extract_cmd(
    model: Annotated[str, typer.Option("--model", help="Target causal LM (HF directory).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (findings.json, shards/).")],
    corpus: Annotated[Optional[Path], typer.Option("--corpus", help="Training corpus to verify against.")] = None,
    index_dir: Annotated[Optional[Path], typer.Option("--index-dir", help="An on-disk index (leakaudit scale index); built into OUT/index from --corpus when absent.")] = None,
    reference: Annotated[Optional[list[str]], typer.Option("--reference", help="Reference model directory (repeatable).")] = None,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Run shards on Ray: auto (the running cluster, else a local one) or ADDRESS. " + NEEDS_RAY)] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Generations per sampler.")] = 1000,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Generations per sampling shard (= leakaudit extract --shard-samples; also texts per scoring and verification shard).")] = 64,
    select: Annotated[int, typer.Option("--select", min=1)] = 100,
    new_tokens: Annotated[int, typer.Option("--new-tokens", min=1)] = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Torch threads per shard (the same everywhere keeps results identical).")] = 1,
    text_field: Annotated[str, typer.Option("--text-field")] = "text",
) -> None:
    """Untargeted extraction (Carlini et al. 2021) in deterministic shards: the pipeline of
    ``leakaudit extract`` (same samples, same findings for the same seed and --shard-size =
    --shard-samples), written as a compact digest."""
    from leakaudit.attacks.extraction.pipeline import ExtractionConfig
    from leakaudit.exec import get_executor
    from leakaudit.exec.audits import sharded_extraction
    from leakaudit.runs.store import RunStore

    _quiet_libraries()
    from contextlib import ExitStack

    from leakaudit.runs.staged import owned_output

    with ExitStack() as held:  # the folder's lock for the run; no foreign findings.json replaced
        try:
            held.enter_context(owned_output(out, produces=("findings.json",),
                                            inputs=[corpus, index_dir], log=_log))
        except LeakauditError as e:
            _fail(e)
        try:
            if index_dir is None and corpus is None:
                raise InputError("give --corpus (or --index-dir) to verify candidates against")
            executor = get_executor(cluster)  # fails here, before any work, without Ray
            if index_dir is None:
                from leakaudit.corpus.index_disk import build_index
                from leakaudit.corpus.load import load_corpus

                docs = load_corpus(corpus, text_field=text_field)
                index_dir = out / "index"
                build_index([d.text for d in docs], [d.id for d in docs], backend="disk",
                            directory=index_dir)
            cfg = ExtractionConfig(samplers=("top_k", "temperature"), n_samples=samples,
                                   select=select, max_new_tokens=new_tokens, seed=seed,
                                   generate_batch_size=batch_size,
                                   score_batch_size=max(1, batch_size // 2))
            refs = {Path(r).name or f"ref{i}": r for i, r in enumerate(reference or [])}
            try:
                f = sharded_extraction(model, executor=executor, config=cfg, references=refs,
                                       index_dir=index_dir, store=RunStore(out / "shards"),
                                       shard_size=shard_size, threads=threads)
            finally:
                executor.close()
        except LeakauditError as e:
            _fail(e)
        out.mkdir(parents=True, exist_ok=True)
        (out / "findings.json").write_text(json.dumps(f, indent=1))
        (out / "findings.json").chmod(0o600)
    _log(f"{f['n_samples']} samples in {f['n_shards']} sampling shards ({executor.name}: "
         f"{executor.stats['run']} shard tasks run, {executor.stats['reused']} reused); "
         f"{len(f['verified'])} verified against the corpus → {out / 'findings.json'}")


def register(app: typer.Typer) -> None:
    app.add_typer(scale_app, name="scale")
