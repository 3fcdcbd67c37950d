"""``leakaudit extract``: untargeted training-data extraction on your own causal LM and corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import (NEEDS_RAY, 
    FAIL_ON, FORMAT, _audit, _check_out, _check_specs, _print_summary, _verdicts,
)


def extract(
    model: Annotated[str, typer.Option("--model", help="Target model: a local HF directory, a .gguf file, or a hub name (hf:, gguf: or another registered scheme).")],
    corpus: Annotated[Optional[Path], typer.Option("--corpus", help="Training corpus (JSONL, .txt, Parquet, or a folder) to verify candidates against.")] = None,
    reference: Annotated[Optional[list[str]], typer.Option("--reference", help="Reference model(s) for the ratio ranking; repeatable.")] = None,
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help="Text source (not training data) for the 'internet' sampler's 5–10-token prefixes.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("leakaudit-extract"),
    samples: Annotated[int, typer.Option("--samples", min=1, help="Generations per sampler.")] = 1000,
    select: Annotated[int, typer.Option("--select", min=1, help="Candidates verified per (sampler, ranking).")] = 100,
    new_tokens: Annotated[int, typer.Option("--new-tokens", min=1, help="Tokens sampled per generation.")] = 256,
    top_k: Annotated[int, typer.Option("--top-k", min=1)] = 40,
    sampler: Annotated[Optional[list[str]], typer.Option("--sampler", help="top_k, temperature, internet (repeatable; default: all that apply).")] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL/Parquet field holding the text.")] = "text",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Generation batch size (scoring uses half).")] = 32,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    index_backend: Annotated[str, typer.Option("--index", help="Corpus index: memory, disk (memory-mapped, for corpora larger than RAM) or auto (disk above 1 GiB).")] = "auto",
    index_dir: Annotated[Optional[Path], typer.Option("--index-dir", help="Folder of the on-disk index (default: OUT-index); reused when it indexes the same documents.")] = None,
    show_pii: Annotated[bool, typer.Option("--show-pii", help="Write raw PII into the report (masked by default).")] = False,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching a hub model (leakaudit works offline by default).")] = False,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Share an LLM signal cache folder between runs (default: inside --out's run store).")] = None,
    shard_samples: Annotated[int, typer.Option("--shard-samples", min=1, help="Generations per sampling shard: the unit that a rerun after a crash reuses (and of seeding: keep it fixed to reproduce a run).")] = 256,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Run sampling shards, scoring batches and verification as Ray tasks: auto (the running cluster, else a local one) or ADDRESS; 'local' runs the same shards in this process. Same findings as without it. " + NEEDS_RAY)] = None,
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """Untargeted training-data extraction (Carlini et al. 2021) on your own causal LM and corpus."""
    from leakaudit.runs.staged import EXTRACT_OUTPUTS

    _check_out(out, EXTRACT_OUTPUTS, [corpus, prompts, model, cache, *(reference or [])])
    _check_specs([model, *(reference or [])], allow_download)  # a typo in a path answers at once
    from leakaudit.audits import extraction

    req = extraction.ExtractionRequest(
        model=model, corpus=corpus, references=tuple(reference or ()), prompts=prompts,
        samplers=tuple(sampler or ()), n_samples=samples, select=select, new_tokens=new_tokens,
        top_k=top_k, text_field=text_field, seed=seed, batch_size=batch_size, device=device,
        show_pii=show_pii, allow_download=allow_download, cache=cache, shard_samples=shard_samples,
        index_backend=index_backend, index_dir=index_dir, out=out, cluster=cluster)
    result, written = _audit(extraction, req, out, produces=EXTRACT_OUTPUTS, formats=formats,
                             fail_on=fail_on, inputs=[corpus, prompts, model, cache, *(reference or [])])
    _print_summary(out, result.summary)
    _verdicts(written, out)


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)
