"""``leakaudit memorization``: how much of a training corpus a model has memorized."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import (NEEDS_RAY, 
    FAIL_ON, FORMAT, _audit, _check_out, _check_specs, _fail, _parse_ints, _verdicts,
    out_console,
)
from leakaudit.errors import LeakauditError


def memorization(
    model: Annotated[list[str], typer.Option("--model", help="Model(s) to measure (HF directory, .gguf or hub name); repeatable, same tokenizer.")],
    corpus: Annotated[Path, typer.Option("--corpus", help="The training corpus (JSONL, .txt, Parquet or a folder).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("leakaudit-memorization"),
    prefix: Annotated[Optional[str], typer.Option("--prefix", help="Prefix length(s) k, comma-separated (default 50; pythia preset 32).")] = None,
    suffix: Annotated[Optional[int], typer.Option("--suffix", min=1, help="Suffix length ℓ (default 50; pythia preset 32).")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="carlini2022 (50/50) or pythia (32/32).")] = None,
    sequences: Annotated[int, typer.Option("--sequences", min=0, help="Windows to measure (0: all).")] = 1000,
    stride: Annotated[Optional[int], typer.Option("--stride", min=1, help="Tokens between candidate windows of a document (default: ℓ).")] = None,
    no_stratify: Annotated[bool, typer.Option("--no-stratify", help="Sample windows uniformly instead of evenly over duplicate-count buckets.")] = False,
    greedy_check: Annotated[int, typer.Option("--greedy-check", help="Windows cross-checked by real greedy decoding (-1: all, 0: none).")] = 500,
    recheck_batch1: Annotated[bool, typer.Option("--recheck-batch1", help="Re-score every exact positive alone (batch size 1).")] = False,
    temperature: Annotated[float, typer.Option("--temperature", min=1e-6, help="Sampling temperature of p_z.")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Top-k of p_z (0: none).")] = 40,
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL/Parquet field holding the text.")] = "text",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    index_backend: Annotated[str, typer.Option("--index", help="Corpus index: memory, disk (memory-mapped, for corpora larger than RAM) or auto (disk above 1 GiB).")] = "auto",
    index_dir: Annotated[Optional[Path], typer.Option("--index-dir", help="Folder of the on-disk index (default: OUT-index); reused when it indexes the same documents.")] = None,
    show_pii: Annotated[bool, typer.Option("--show-pii", help="Write raw PII into the report (masked by default).")] = False,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching a hub model (leakaudit works offline by default).")] = False,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Run the teacher-forced passes as Ray tasks (the same batches as in one process, so the same records): auto (the running cluster, else a local one) or ADDRESS; 'local' runs the same tasks in this process; the greedy cross-check stays on this machine. " + NEEDS_RAY)] = None,
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """How much of the training corpus is memorized (Carlini et al. 2022; Pythia; Hayes et al. 2024)."""
    from leakaudit.runs.staged import REPORT_OUTPUTS

    _check_out(out, REPORT_OUTPUTS, [corpus, *model])
    _check_specs(list(model), allow_download)  # a typo in a path answers at once
    from leakaudit.audits import memorization as audit

    try:
        ks = _parse_ints(prefix, what="--prefix") if prefix is not None else None
    except LeakauditError as e:
        _fail(e)
    req = audit.MemorizationRequest(
        models=tuple(model), corpus=corpus, prefix=ks, suffix=suffix, preset=preset,
        sequences=sequences, stride=stride, stratify=not no_stratify, greedy_check=greedy_check,
        recheck_batch1=recheck_batch1, temperature=temperature, top_k=top_k, text_field=text_field,
        seed=seed, batch_size=batch_size, device=device, show_pii=show_pii, allow_download=allow_download,
        index_backend=index_backend, index_dir=index_dir, out=out, cluster=cluster)
    result, written = _audit(audit, req, out, produces=REPORT_OUTPUTS, inputs=[corpus, *model],
                             formats=formats, fail_on=fail_on)
    msum, cfg = result.summary["memorization"], result.run_record["config"]["memorization"]
    for name, v in msum["exact_rate"].items():
        out_console.print(f"{name}: {v:.1%} of {msum['n_sequences']} windows memorized exactly "
                          f"(k={max(cfg['prefix_lengths'])}, ℓ={cfg['suffix_length']})", highlight=False)
    out_console.print(f"report: {out / 'report.html'}", highlight=False)
    _verdicts(written, out)


def register(app: typer.Typer) -> None:
    app.command("memorization")(memorization)
