"""The ``leakaudit`` command line. Thin: every command is a call into the library."""

from __future__ import annotations

import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from leakaudit.errors import InputError, LeakauditError

from leakaudit.clikit import OneLineErrorGroup  # noqa: E402

app = typer.Typer(cls=OneLineErrorGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure how much a trained model leaks its training data.")
from leakaudit.clikit import (  # noqa: E402,F401  (re-exported for tests)
    _command, _fail, _log, _progress, _quiet_libraries, _terminate, console, out_console,
)
import leakaudit.clikit as _clikit  # noqa: E402


@app.callback()
def _global_options(
    share: Annotated[bool, typer.Option("--share", help="Write outputs with the usual umask modes instead of owner-only (0600 files, 0700 folders).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Let a run replace files in --out that leakaudit did not write (never its own inputs).")] = False,
) -> None:
    """Measure how much a trained model leaks its training data."""
    _clikit._apply_global_options(share=share, overwrite=overwrite)


def main() -> None:
    """The console entry point: ``app`` plus a clean exit status after SIGTERM.

    The SIGTERM handler raises ``SystemExit`` wherever the main thread is. If that is inside an
    import or a ``__set_name__`` hook, Python wraps it in another exception; the staged output is
    still removed on the way out, and here the process still exits with 128 + signal.
    """
    try:
        app(prog_name="leakaudit")
    except BaseException:
        if _clikit._terminated_by is not None:
            raise SystemExit(128 + _clikit._terminated_by) from None
        raise


def _check_out(out: Path, produces, inputs=()) -> None:
    """The output location, checked first of all (a file, unwritable, a foreign file in the way,
    one of the inputs)."""
    from leakaudit.runs.staged import check_output_location

    try:
        check_output_location(out, produces=produces, inputs=inputs)
    except LeakauditError as e:
        _fail(e)


def _check_specs(specs: list[str], allow_download: bool) -> None:
    """Check target specs before anything heavy is imported: a missing path or an unknown
    scheme fails in well under a second, with no network request."""
    from leakaudit.targets import check_spec

    try:
        for spec in specs:
            check_spec(spec, allow_download=allow_download)
    except LeakauditError as e:
        _fail(e)


def _print_summary(out: Path, summary: dict) -> None:
    best = summary.get("best") or {}
    out_console.print(f"samples {summary['n_samples']}  candidates "
                      f"{summary['n_candidates']}  verified memorized candidates "
                      f"{summary['n_verified_candidates']}", highlight=False)
    if best:
        out_console.print(f"best: {best['ranking']} on {best['sampler']} samples, precision "
                          f"{best['precision']:.0%} (95% CI {best['ci_low']:.0%}–{best['ci_high']:.0%})",
                          highlight=False)
    if summary.get("n_canaries"):
        out_console.print(f"canaries extracted: {len(summary['canaries_extracted'])} of "
                          f"{summary['n_canaries']} ({', '.join(summary['canaries_extracted']) or 'none'})",
                          highlight=False)
    out_console.print(f"report: {out / 'report.html'}\nrecords: {out / 'report.jsonl'} "
                      f"(verified hits in {out / 'hits.jsonl'})", highlight=False)


@app.command()
def lab(
    out: Annotated[Path, typer.Option("--out", help="Folder for the corpus, models and report.")] = Path("leakaudit-lab"),
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes for tests and CI (about four minutes on 2 cores; the default takes about 12).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the corpus, training and sampling.")] = 0,
    samples: Annotated[Optional[int], typer.Option("--samples", min=1, help="Generations per sampler (default: 1000, quick: 100).")] = None,
    show_pii: Annotated[bool, typer.Option("--show-pii", help="Write raw PII into the report (masked by default).")] = False,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Share an LLM signal cache folder between runs (default: inside --out's run store).")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", hidden=True, help="The smallest lab that runs every stage (tests of crash and resume).")] = False,
    defenses: Annotated[bool, typer.Option("--defenses", help="Instead: train the defense variants (dedup, scrubbed, DP-SGD at ε 8 and 1, two smaller sizes) on one corpus and re-run the same attacks on each.")] = False,
    endpoint: Annotated[Optional[str], typer.Option("--endpoint", help="Audit the lab target served at this OpenAI-compatible URL (openai-completions:URL, openai-chat:URL or a bare .../v1 URL) against the finished lab in --out; report in OUT/endpoint.")] = None,
    api_key_env: Annotated[Optional[str], typer.Option("--api-key-env", help="With --endpoint: environment variable holding the API key.")] = None,
) -> None:
    """Run the embedded lab: synthetic corpus → small target models → extraction, memorization,
    canary exposure, membership inference and classifier inversion → report."""
    from dataclasses import replace

    from leakaudit.lab.run import LabConfig, run_lab

    from leakaudit.lab.run import LAB_OUTPUTS
    from leakaudit.runs.staged import check_output_location

    _quiet_libraries()
    if endpoint is not None:
        from leakaudit.endpoint_audit import EndpointAuditConfig
        from leakaudit.lab.endpoint import run_endpoint_lab

        try:
            s = run_endpoint_lab(out, endpoint, api_key_env=api_key_env,
                                 config=EndpointAuditConfig(show_pii=show_pii, seed=seed),
                                 progress=_progress(), log=_log, command=_command())
        except LeakauditError as e:
            _fail(e)
        r = s["requests"]
        out_console.print(f"endpoint audit: {len(s['attacks'])} attacks run, {len(s['skipped'])} "
                          f"skipped; {r['requests']} requests ({r['sent']} sent, {r['cached']} "
                          f"cached, {r['failed']} failed); report in {out / 'endpoint'}",
                          highlight=False)
        return
    if defenses:
        from leakaudit.lab.defenses import DefenseLabConfig, run_defense_lab

        dcfg = DefenseLabConfig.quick(seed) if quick else DefenseLabConfig(seed=seed)
        if samples is not None:
            dcfg = replace(dcfg, extraction=replace(dcfg.extraction, n_samples=samples))
        try:
            summary = run_defense_lab(out, dcfg, progress=_progress(), log=_log, command=_command())
        except LeakauditError as e:
            _fail(e)
        for c in summary["claims"].values():
            out_console.print(f"{c['claim']}: {dict([(True, 'holds'), (False, 'does not hold'), (None, 'not resolvable')])[c['holds']]}",
                              highlight=False, markup=False)
        out_console.print(f"report: {out / 'report.html'}", highlight=False, markup=False)
        return
    try:
        check_output_location(out, produces=LAB_OUTPUTS, inputs=[cache])
    except LeakauditError as e:
        _fail(e)
    cfg = LabConfig.tiny(seed) if tiny else LabConfig.quick(seed) if quick else LabConfig(seed=seed)
    ext = cfg.extraction
    if samples is not None:
        ext = replace(ext, n_samples=samples)
    cfg = replace(cfg, extraction=replace(ext, show_pii=show_pii))
    try:
        summary = run_lab(out, cfg, progress=_progress(), log=_log, command=_command(), cache_dir=cache)
    except LeakauditError as e:
        _fail(e)
    _print_summary(out, summary)


@app.command()
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
) -> None:
    """Untargeted training-data extraction (Carlini et al. 2021) on your own causal LM and corpus."""
    _check_out(out, ("report.jsonl", "summary.json", "report.html", "hits.jsonl"),
               [corpus, prompts, model, cache, *(reference or [])])
    _check_specs([model, *(reference or [])], allow_download)  # a typo in a path answers at once
    from leakaudit.attacks.extraction.pipeline import ExtractionConfig
    from leakaudit.attacks.extraction.samplers import SAMPLERS
    from leakaudit.corpus.index_disk import INDEX_BACKENDS, build_index
    from leakaudit.corpus.load import load_corpus
    from leakaudit.lab.run import versions
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output
    from leakaudit.targets import check_spec, default_name, describe_target, load_target  # noqa: F401
    from leakaudit.workflow import write_extraction_report

    from leakaudit.runs.staged import EXTRACT_OUTPUTS, check_output_location
    from leakaudit.targets.checks import check_device
    from leakaudit.runs.store import RunStore

    _quiet_libraries()
    try:
        if index_backend not in INDEX_BACKENDS:
            raise InputError(f"--index must be one of {', '.join(INDEX_BACKENDS)}, got {index_backend!r}")
        check_output_location(out, produces=EXTRACT_OUTPUTS,
                              inputs=[corpus, prompts, model, cache, *(reference or [])])
        check_device(device)
        samplers = list(sampler) if sampler else ["top_k", "temperature"] + (["internet"] if prompts else [])
        for s in samplers:
            try:
                SAMPLERS.get(s)
            except KeyError as e:
                raise LeakauditError(e.args[0]) from None
        if "internet" in samplers and prompts is None:
            raise LeakauditError("the internet sampler needs --prompts FILE (text that is not training data)")
        docs = load_corpus(corpus, text_field=text_field) if corpus is not None else None
        prompt_docs = load_corpus(prompts, text_field=text_field) if prompts is not None else None
        target = load_target(model, name="target", device=device, allow_download=allow_download)
        if "internet" in samplers:  # fail here, naming the file, not mid-run
            lo, hi = ExtractionConfig.prompt_tokens
            if not any(len(t) >= lo for t in target.tokenize([d.text for d in prompt_docs])):
                raise InputError(f"no text has at least {lo} tokens (the internet sampler cuts "
                                 f"{lo}–{hi}-token prefixes from it)", path=str(prompts))
        refs = {}
        for i, r in enumerate(reference or []):
            name = Path(r).name or f"ref{i}"
            refs[name if name not in refs else f"{name}-{i}"] = load_target(r, name=name, device=device, allow_download=allow_download)
        index = build_index([d.text for d in docs], [d.id for d in docs], backend=index_backend,
                            directory=index_dir or Path(f"{out}-index")) if docs else None
        cfg = ExtractionConfig(samplers=tuple(samplers), n_samples=samples, select=select,
                               max_new_tokens=new_tokens, top_k=top_k, seed=seed,
                               generate_batch_size=batch_size,
                               score_batch_size=max(1, batch_size // 2), show_pii=show_pii,
                               shard_samples=shard_samples)
        from dataclasses import asdict

        run_record = {
            **versions(), "command": _command(), "seed": seed, "config": asdict(cfg),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "models": {"target": {"path": model, **describe_target(target, model)},
                       **{k: {"path": str(v.source), **describe_target(v)} for k, v in refs.items()}},
            "corpus": {"path": str(corpus), "n_docs": len(docs), "n_bytes": index.n_bytes} if docs else None,
        }
        with staged_output(out, produces=EXTRACT_OUTPUTS, log=_log) as stage:
            store = RunStore.for_output(out, log=_log)
            summary = write_extraction_report(
                stage, target=target, references=refs, index=index,
                prompt_texts=[d.text for d in prompt_docs] if prompt_docs else None, canaries=None,
                config=cfg, run_record=run_record, progress=_progress(), log=_log,
                cache_dir=cache if cache is not None else store.cache_dir, store=store,
            )
            render_html(stage)
            if store.reused:
                _log(f"run store: reused {len(store.reused)} finished stages; computed "
                     f"{len(store.computed)}")
    except LeakauditError as e:
        _fail(e)
    _print_summary(out, summary)


def _parse_ints(value: str, *, what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {value!r}") from None
    if not out or any(v < 1 for v in out):
        raise InputError(f"{what} must be positive integers, got {value!r}")
    return out


@app.command()
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
) -> None:
    """How much of the training corpus is memorized (Carlini et al. 2022; Pythia; Hayes et al. 2024)."""
    _check_out(out, ("report.jsonl", "summary.json", "report.html"), [corpus, *model])
    _check_specs(list(model), allow_download)  # a typo in a path answers at once
    from leakaudit.attacks.memorization import PRESETS, MemorizationConfig
    from leakaudit.corpus.index_disk import INDEX_BACKENDS, build_index
    from leakaudit.corpus.load import load_corpus
    from leakaudit.lab.run import versions
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output
    from leakaudit.targets.base import SamplingConfig
    from leakaudit.targets import check_spec, default_name, describe_target, load_target  # noqa: F401
    from leakaudit.workflow import memorization_records, write_records_report

    from leakaudit.runs.staged import REPORT_OUTPUTS, check_output_location
    from leakaudit.targets.checks import check_device

    _quiet_libraries()
    try:
        if index_backend not in INDEX_BACKENDS:
            raise InputError(f"--index must be one of {', '.join(INDEX_BACKENDS)}, got {index_backend!r}")
        check_output_location(out, produces=REPORT_OUTPUTS, inputs=[corpus, *model])
        check_device(device)
        if preset is not None and preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        ks, ell = PRESETS[preset or "carlini2022"]
        if prefix is not None:
            ks = _parse_ints(prefix, what="--prefix")
        ell = suffix if suffix is not None else ell
        cfg = MemorizationConfig(
            prefix_lengths=ks, suffix_length=ell, n_sequences=sequences or None, stride=stride,
            stratify=not no_stratify, greedy_check=greedy_check, recheck_batch1=recheck_batch1,
            sampling=SamplingConfig(temperature=temperature, top_k=top_k or None),
            batch_size=batch_size, seed=seed)
        cfg.validate()
        docs = load_corpus(corpus, text_field=text_field)
        models = {}
        for i, m in enumerate(model):
            name = Path(m).name or f"model{i}"
            name = name if name not in models else f"{name}-{i}"
            models[name] = load_target(m, name=name, device=device, allow_download=allow_download)
        index = build_index([d.text for d in docs], [d.id for d in docs], backend=index_backend,
                            directory=index_dir or Path(f"{out}-index"))
        pairs, msum = memorization_records(models, texts=[d.text for d in docs],
                                           doc_ids=[d.id for d in docs], index=index, config=cfg,
                                           show_pii=show_pii, progress=_progress(), log=_log)
        run_record = {
            **versions(), "command": _command(), "seed": seed,
            "config": {"memorization": cfg.to_dict(), "show_pii": show_pii},
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "models": {k: {"path": str(v.source), **describe_target(v)} for k, v in models.items()},
            "corpus": {"path": str(corpus), "n_docs": len(docs), "n_bytes": index.n_bytes},
        }
        with staged_output(out, produces=REPORT_OUTPUTS) as stage:
            write_records_report(stage, run_record=run_record, records=pairs,
                                 summary={"attack": "memorization", "memorization": msum})
            render_html(stage)
    except LeakauditError as e:
        _fail(e)
    kmax = max(cfg.prefix_lengths)
    for name, v in msum["exact_rate"].items():
        out_console.print(f"{name}: {v:.1%} of {msum['n_sequences']} windows memorized exactly "
                          f"(k={kmax}, ℓ={cfg.suffix_length})", highlight=False)
    out_console.print(f"report: {out / 'report.html'}", highlight=False)


canaries_app = typer.Typer(no_args_is_help=True, help="Secret Sharer canaries: insert them, then measure exposure.")
app.add_typer(canaries_app, name="canaries")


@canaries_app.command("insert")
def canaries_insert(
    corpus: Annotated[Path, typer.Option("--corpus", help="The corpus to insert canaries into (JSONL, .txt, Parquet or a folder).")],
    template: Annotated[list[str], typer.Option("--template", help="Canary sentence with one {secret}; repeatable.")],
    space: Annotated[list[str], typer.Option("--space", help="Secret space per template: ssn, api_key, phone, credit_card, or a pattern such as 'ddd-dd-dddd' (d digit, a/A letter, x base62, h hex). One for all templates, or one per template.")],
    repeats: Annotated[str, typer.Option("--repeats", help="Repetition counts, comma-separated: one canary per template and count.")] = "1,2,4,8,16,32",
    out: Annotated[Path, typer.Option("--out", help="Output folder: corpus.jsonl + manifest.json.")] = Path("leakaudit-canaries"),
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL/Parquet field holding the text.")] = "text",
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Insert canaries at chosen repetition counts; writes the new corpus and a manifest."""
    import json

    from dataclasses import replace

    from leakaudit.attacks.canaries.insert import CanarySpec, insert_canaries
    from leakaudit.corpus.load import load_corpus, save_jsonl
    from leakaudit.report.records import staged_output

    from leakaudit.runs.staged import check_output_location

    try:
        check_output_location(out, produces=("corpus.jsonl", "manifest.json"), inputs=[corpus])
        if len(space) not in (1, len(template)):
            raise InputError(f"give one --space for all templates or one per template "
                             f"({len(template)} templates, {len(space)} spaces)")
        specs = [CanarySpec(t, space[i] if len(space) > 1 else space[0]) for i, t in enumerate(template)]
        counts = _parse_ints(repeats, what="--repeats")
        docs = load_corpus(corpus, text_field=text_field)
        new_docs, records = insert_canaries([{"id": d.id, "text": d.text} for d in docs], specs,
                                            counts, seed=seed)
        with staged_output(out, produces=("corpus.jsonl", "manifest.json"), inputs=[corpus]) as stage:
            save_jsonl([replace(d, text=n["text"]) for d, n in zip(docs, new_docs)],
                       stage / "corpus.jsonl")
            (stage / "manifest.json").write_text(json.dumps(
                {"source_corpus": str(corpus), "seed": seed, "repeats": list(counts),
                 "canaries": records}, indent=1, ensure_ascii=False), encoding="utf-8")
    except LeakauditError as e:
        _fail(e)
    out_console.print(f"inserted {len(records)} canaries into {len(docs)} documents: "
                      f"{out / 'corpus.jsonl'}, manifest {out / 'manifest.json'} (it holds the secrets: "
                      "keep it private)", highlight=False)


@canaries_app.command("exposure")
def canaries_exposure(
    model: Annotated[str, typer.Option("--model", help="Model trained on the canaried corpus.")],
    manifest: Annotated[Path, typer.Option("--manifest", help="manifest.json from 'canaries insert' or a lab corpus.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("leakaudit-exposure"),
    references: Annotated[int, typer.Option("--references", min=10, help="Never-inserted reference candidates per canary.")] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    show_pii: Annotated[bool, typer.Option("--show-pii", help="Write the secrets into the report (masked by default).")] = False,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching a hub model (leakaudit works offline by default).")] = False,
) -> None:
    """Exposure of each canary by rank among reference candidates and by extrapolation."""
    _check_out(out, ("report.jsonl", "summary.json", "report.html"), [manifest, model])
    _check_specs([model], allow_download)  # a typo in a path answers at once
    import json

    from leakaudit.lab.run import versions
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output
    from leakaudit.targets import check_spec, default_name, describe_target, load_target  # noqa: F401
    from leakaudit.workflow import exposure_records, write_records_report

    from leakaudit.runs.staged import REPORT_OUTPUTS, check_output_location
    from leakaudit.targets.checks import check_device

    _quiet_libraries()
    try:
        check_output_location(out, produces=REPORT_OUTPUTS, inputs=[manifest, model])
        check_device(device)
        if not manifest.is_file():
            raise InputError("no such file", path=str(manifest))
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON: {e.msg}", path=str(manifest), line=e.lineno) from None
        except UnicodeDecodeError:
            raise InputError("not UTF-8 text", path=str(manifest)) from None
        canaries = data.get("canaries") if isinstance(data, dict) else None
        if not canaries or not isinstance(canaries, list):
            raise InputError("the manifest has no canaries", path=str(manifest))
        from leakaudit.attacks.canaries.spaces import space_of

        for c in canaries:
            if not isinstance(c, dict):
                raise InputError("every canary must be a JSON object", path=str(manifest))
            for key in ("secret", "template", "repeats"):
                if key not in c:
                    raise InputError(f"canary {c.get('id')!r} has no {key!r} field", path=str(manifest))
            try:
                space_of(c)
            except ValueError as e:
                raise InputError(str(e), path=str(manifest)) from None
        target = load_target(model, name=default_name(model), device=device,
                             allow_download=allow_download)
        pairs, by_rep = exposure_records(target, canaries, n_references=references, seed=seed,
                                         batch_size=batch_size, show_pii=show_pii,
                                         progress=_progress())
        run_record = {**versions(), "command": _command(), "seed": seed,
                      "config": {"references": references, "show_pii": show_pii},
                      "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "models": {target.name: {"path": model, "fingerprint": target.fingerprint()}},
                      "manifest": str(manifest)}
        with staged_output(out, produces=REPORT_OUTPUTS) as stage:
            write_records_report(stage, run_record=run_record, records=pairs,
                                 summary={"attack": "canary_exposure", "by_repeats": by_rep})
            render_html(stage)
    except (LeakauditError, ValueError) as e:
        _fail(e)
    for r in by_rep:
        out_console.print(f"repeats {r['repeats']:>4}: exposure {r['mean_exposure_rank']:.2f} bits by rank, "
                          f"{r['mean_exposure_extrapolated']:.2f} extrapolated ({r['n_canaries']} canaries)",
                          highlight=False)
    out_console.print(f"report: {out / 'report.html'}", highlight=False)
def _shape(text: str, option: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.lower().replace("x", ",").split(",") if v.strip())
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise LeakauditError(f"{option} must look like 64 or 8x8, got {text!r}")
    return dims


@app.command()
def invert(
    model: Annotated[Optional[Path], typer.Argument(help="A classifier folder written by leakaudit (classifier.json + model.safetensors): white-box.")] = None,
    endpoint: Annotated[Optional[str], typer.Option("--endpoint", help="HTTP endpoint: POST {\"inputs\": [[...]]} -> {\"probabilities\": [[...]]} (black-box).")] = None,
    input_shape: Annotated[Optional[str], typer.Option("--input-shape", help="Input shape for --endpoint, e.g. 64 or 8x8.")] = None,
    n_classes: Annotated[Optional[int], typer.Option("--n-classes", min=2, help="Number of classes for --endpoint.")] = None,
    classes: Annotated[Optional[str], typer.Option("--classes", help="Classes to invert, e.g. 0,3,7 (default: all).")] = None,
    attack: Annotated[Optional[str], typer.Option("--attack", help="mi_face (white-box) or nes (black-box; default for --endpoint).")] = None,
    budget: Annotated[Optional[int], typer.Option("--budget", min=1, help="Black-box query budget per class (default 504).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the black-box search (same seed, same images).")] = 0,
    reference_data: Annotated[Optional[Path], typer.Option("--reference-data", help=".npz with x, y: labelled data that is NOT the training data; trains the evaluation classifier, gives class means and the start.")] = None,
    image_shape: Annotated[Optional[str], typer.Option("--image-shape", help="2-D layout of flat inputs (e.g. 8x8) for the image grid and the smoothness prior.")] = None,
    clip: Annotated[str, typer.Option("--clip", help="Input domain lo,hi.")] = "0,1",
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds per endpoint request.")] = 30.0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Inputs per endpoint request.")] = 256,
    out: Annotated[Path, typer.Option("--out", help="Output folder (report.jsonl, report.html).")] = Path("leakaudit-invert"),
) -> None:
    """Model inversion (Fredrikson et al. 2015) of your own classifier: one reconstruction per class."""
    import numpy as np

    from leakaudit.attacks.inversion.audit import (load_reference_data, make_attack, run_inversion_audit,
                                                   write_inversion_report)
    from leakaudit.lab.run import versions
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output

    from leakaudit.runs.staged import REPORT_OUTPUTS, check_output_location
    from leakaudit.targets.checks import check_device

    _quiet_libraries()
    try:
        check_output_location(out, produces=REPORT_OUTPUTS, inputs=[model, reference_data])
        if (model is None) == (endpoint is None):
            raise LeakauditError("give either a classifier folder or --endpoint URL (not both)")
        if model is not None:
            from leakaudit.targets.classifier import TorchClassifier
            from leakaudit.training.classifier import load_classifier

            module, spec, meta = load_classifier(model)
            shape = tuple(meta.get("input_shape") or (spec.input_dim,))
            target = TorchClassifier(module, n_classes=spec.n_classes, input_shape=shape)
            source = {"path": str(model), "fingerprint": target.fingerprint(), "kind": "white-box folder"}
            attack = attack or "mi_face"
            img = meta.get("image_shape")
        else:
            from leakaudit.targets.http_classifier import HTTPClassifier

            if input_shape is None or n_classes is None:
                raise LeakauditError("--endpoint needs --input-shape and --n-classes")
            shape = _shape(input_shape, "--input-shape")
            target = HTTPClassifier(endpoint, n_classes=n_classes, input_shape=shape, batch_size=batch_size,
                                    timeout_s=timeout)
            source = {"path": endpoint, "fingerprint": target.fingerprint(), "kind": "black-box endpoint"}
            attack = attack or "nes"
            img = None
        if image_shape is not None:
            img = _shape(image_shape, "--image-shape")
        if img is None and len(shape) >= 2:
            img = shape[-2:]
        if img is not None and len(img) != 2:
            raise LeakauditError(f"--image-shape must have two dimensions, got {img}")
        try:
            lo_hi = tuple(float(v) for v in clip.split(","))
        except ValueError:
            raise LeakauditError(f"--clip must be lo,hi with lo < hi, got {clip!r}") from None
        if len(lo_hi) != 2 or not lo_hi[0] < lo_hi[1] or not all(np.isfinite(lo_hi)):
            raise LeakauditError(f"--clip must be lo,hi with lo < hi, got {clip!r}")
        try:
            cls = list(range(target.n_classes)) if classes is None else [int(c) for c in classes.split(",") if c.strip()]
        except ValueError:
            raise LeakauditError(f"--classes must be comma-separated integers, got {classes!r}") from None
        if not cls or min(cls) < 0 or max(cls) >= target.n_classes:
            raise LeakauditError(f"--classes must lie in 0..{target.n_classes - 1}, got {classes!r}")
        if attack == "mi_face" and budget is not None:
            raise LeakauditError("--budget applies to the black-box attack (--attack nes)")
        try:
            atk = make_attack(attack, budget=budget, clip=lo_hi, image_shape=tuple(img) if img else None,
                              tv_weight=None)
        except KeyError as e:
            raise LeakauditError(e.args[0]) from None
        reference = None
        if reference_data is not None:
            reference = load_reference_data(reference_data, input_shape=shape, n_classes=target.n_classes)
            start = reference[0].mean(0)
            start_desc = f"mean of the reference data ({len(reference[0])} examples, class-agnostic)"
        else:
            start = np.zeros(shape)
            start_desc = "all-zero input (no reference data)"
        context = {"target": Path(model).name if model is not None else "endpoint", "seed": seed,
                   "image_shape": list(img) if img else None, "target_description": source["kind"]}
        run_record = {**versions(), "command": _command(), "seed": seed,
                      "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "config": {"attack": attack, "params": atk.params(), "classes": cls, "budget_per_class": budget,
                                 "seed": seed, "start": start_desc, "reference_data": str(reference_data) if reference_data else None},
                      "models": {"target": source}}
        with staged_output(out, produces=REPORT_OUTPUTS) as stage:
            records = run_inversion_audit(target, attack=atk, classes=cls, seeds=[seed], start=start,
                                          start_description=start_desc, reference=reference,
                                          evaluator_epochs=60, context=context, progress=_progress(), log=_log)
            write_inversion_report(stage, run_record=run_record, records=records)
            render_html(stage)
    except LeakauditError as e:
        _fail(e)
    ev = records[0][1]
    judged = ev.get("top1")
    out_console.print(f"{attack} on {len(cls)} classes: mean target confidence "
                      f"{ev['mean_target_confidence']:.1%}, {ev['queries_total']} queries", highlight=False)
    if judged:
        out_console.print(f"evaluation classifier top-1: {judged['k']}/{judged['n']} "
                          f"(95% CI {judged['ci_low']:.0%}–{judged['ci_high']:.0%}); nearest own class mean: "
                          f"{ev['nearest_own_mean']['k']}/{ev['nearest_own_mean']['n']}", highlight=False)
    else:
        out_console.print("not judged (no --reference-data): look at the images in the report", highlight=False)
    out_console.print(f"report: {out / 'report.html'}\nrecords: {out / 'report.jsonl'}", highlight=False)


@app.command()
def membership(
    model: Annotated[Optional[str], typer.Option("--model", help="Target causal LM: a local HF directory (with --members/--nonmembers).")] = None,
    members: Annotated[Optional[Path], typer.Option("--members", help="Documents known to be in training (JSONL, .txt, Parquet, folder).")] = None,
    nonmembers: Annotated[Optional[Path], typer.Option("--nonmembers", help="Documents known NOT to be in training, from the same distribution.")] = None,
    reference: Annotated[Optional[list[str]], typer.Option("--reference", help="Reference LM(s) for the ratio attack; repeatable.")] = None,
    k: Annotated[float, typer.Option("--k", min=0.0, max=1.0, help="Fraction of lowest-probability tokens for Min-K% and Min-K%++.")] = 0.2,
    scores: Annotated[Optional[Path], typer.Option("--scores", help="Precomputed outputs (CSV/JSONL/.npy: member + score, or member + label + probs/logits).")] = None,
    lab: Annotated[bool, typer.Option("--lab", help="Run the classifier lab: overfit MLPs on the digits with shadow models.")] = False,
    classifier: Annotated[Optional[Path], typer.Option("--classifier", help="A classifier folder written by leakaudit (model.safetensors + classifier.json); needs --data.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help=".npz with x_members, y_members, x_nonmembers, y_nonmembers and optionally x_population, y_population (reference models).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs of each reference model (--classifier).")] = 100,
    rmia_a: Annotated[float, typer.Option("--rmia-a", min=0.0, max=1.0, help="RMIA's offline parameter a (--classifier).")] = 0.3,
    shadows: Annotated[int, typer.Option("--shadows", min=4, help="Shadow models for --lab.")] = 16,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("leakaudit-membership"),
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL/Parquet field holding the text.")] = "text",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    show_pii: Annotated[bool, typer.Option("--show-pii", help="Write raw PII into the report (masked by default).")] = False,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching a hub model (leakaudit works offline by default).")] = False,
) -> None:
    """Membership inference, reported as TPR at low FPR with a model-free baseline next to LLM results."""
    _check_out(out, ("report.jsonl", "summary.json", "report.html", "shadows"),
               [model, members, nonmembers, scores, classifier, data, *(reference or [])])
    _check_specs([m for m in [model, *(reference or [])] if m], allow_download)  # a typo in a path answers at once
    from leakaudit.lab.run import versions
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output

    from leakaudit.runs.staged import REPORT_OUTPUTS, check_output_location
    from leakaudit.targets.checks import check_device

    _quiet_libraries()
    modes = [m for m, on in (("--model", model), ("--scores", scores), ("--lab", lab),
                             ("--classifier", classifier)) if on]
    try:
        check_output_location(out, produces=REPORT_OUTPUTS + ("shadows",),
                              inputs=[model, members, nonmembers, scores, classifier, data, *(reference or [])])
        check_device(device)
        if not 0.0 < k <= 1.0:
            raise InputError(f"--k must be in (0, 1] (a fraction of the tokens), got {k}")
        if len(modes) != 1:
            raise LeakauditError("give exactly one of --model (with --members and --nonmembers), "
                                 "--classifier DIR (with --data FILE.npz), --scores FILE, or --lab")
        run_record = {**versions(), "command": _command(), "seed": seed,
                      "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "config": {"show_pii": show_pii}}
        if lab:
            from leakaudit.lab.membership import ClassifierLabConfig, run_classifier_membership_lab

            summary = run_classifier_membership_lab(out, ClassifierLabConfig(n_shadow=shadows, seed=seed),
                                                    progress=_progress(), log=_log, command=_command())
        elif scores is not None:
            summary = _membership_scores(scores, out, run_record)
        elif classifier is not None:
            summary = _membership_classifier(classifier, data, out, run_record, shadows=shadows,
                                             epochs=epochs, rmia_a=rmia_a, seed=seed)
        else:
            from leakaudit.attacks.membership.audit_llm import audit_llm_membership
            from leakaudit.attacks.membership.evaluate import summarize, write_membership_report
            from leakaudit.corpus.load import load_corpus
            from leakaudit.runs.store import RunStore
            from leakaudit.targets import check_spec, default_name, describe_target, load_target  # noqa: F401

            if members is None or nonmembers is None:
                raise LeakauditError("--model needs --members FILE and --nonmembers FILE")
            mdocs = load_corpus(members, text_field=text_field)
            ndocs = load_corpus(nonmembers, text_field=text_field)
            target = load_target(model, name="target", device=device, allow_download=allow_download)
            refs = {}
            for i, r in enumerate(reference or []):
                name = Path(r).name or f"ref{i}"
                refs[name if name not in refs else f"{name}-{i}"] = load_target(r, name=name, device=device, allow_download=allow_download)
            run_record["models"] = {"target": {"path": model, **describe_target(target, model)},
                                    **{n: {"path": str(v.source), **describe_target(v)}
                                       for n, v in refs.items()}}
            run_record["config"].update({"k": k, "members": str(members), "nonmembers": str(nonmembers)})
            with staged_output(out, produces=REPORT_OUTPUTS, log=_log) as stage:
                store = RunStore.for_output(out, log=_log)
                audit = audit_llm_membership(
                    target, refs, [d.text for d in mdocs], [d.text for d in ndocs], k=k,
                    member_ids=[d.id for d in mdocs], nonmember_ids=[d.id for d in ndocs],
                    batch_size=batch_size, show_pii=show_pii, progress=_progress(), log=_log,
                    cache_dir=store.cache_dir)
                summary = {**summarize(audit.evaluations, world="llm"), "cost": audit.cost,
                           "warnings": audit.warnings, "skipped": audit.skipped,
                           "blind_baseline_auc": next(iter(audit.baseline.values())).metrics.auc}
                write_membership_report(stage, run_record=run_record, pairs=audit.records(),
                                        summary=summary)
                render_html(stage)
    except LeakauditError as e:
        _fail(e)
    for name, r in summary["results"].items():
        tprs = "  ".join(f"TPR@{k_[4:]}FPR " + ("n/r" if v is None else f"{v:.2%}")
                         for k_, v in r.items() if k_.startswith("tpr@"))
        out_console.print(f"{name:48s} AUC {r['auc']:.3f}  {tprs}", highlight=False)
    for sk in summary.get("skipped") or []:
        out_console.print(f"{sk['label']:48s} skipped: {sk['reason']}", highlight=False)
    out_console.print(f"report: {out / 'report.html'}\nrecords: {out / 'report.jsonl'}", highlight=False)


def _check_xy_arrays(arrs: dict, path: Path) -> None:
    """x_* arrays: finite numbers; y_*: integer labels (never rounded); matching lengths."""
    import numpy as np

    for name in sorted(arrs):
        a = arrs[name]
        if name.startswith("x_"):
            if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
                raise InputError(f"{name} must hold numbers, got dtype {a.dtype}", path=str(path))
            bad = int(np.size(a) - np.isfinite(a).sum())
            if bad:
                raise InputError(f"{name} holds {bad} NaN or infinite values", path=str(path))
        elif name.startswith("y_"):
            if a.ndim != 1:
                raise InputError(f"{name} must be 1-D labels, got shape {a.shape}", path=str(path))
            if not np.issubdtype(a.dtype, np.integer):
                if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) \
                        or not np.all(a == np.round(a)):
                    raise InputError(f"{name} must hold integer class labels, got {a.dtype} values "
                                     "that are not whole numbers", path=str(path))
            if len(a) and a.min() < 0:
                raise InputError(f"{name} holds negative class labels", path=str(path))
            x = arrs.get("x_" + name[2:])
            if x is not None and len(x) != len(a):
                raise InputError(f"x_{name[2:]} has {len(x)} rows but {name} has {len(a)}",
                                 path=str(path))


def _membership_classifier(folder: Path, data: Optional[Path], out: Path, run_record: dict, *,
                           shadows: int, epochs: int, rmia_a: float, seed: int) -> dict:
    import numpy as np

    from leakaudit.attacks.membership.audit_clf import audit_classifier_membership
    from leakaudit.attacks.membership.evaluate import (EvalConfig, exposed_records, summarize,
                                                       write_membership_report)
    from leakaudit.attacks.membership.shadow import TorchMLPTrainer
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output
    from leakaudit.runs.staged import REPORT_OUTPUTS
    from leakaudit.targets.classifier import TorchClassifier
    from leakaudit.training.classifier import TrainConfig, load_classifier

    if data is None:
        raise LeakauditError("--classifier needs --data FILE.npz")
    if not data.is_file():
        raise InputError("no such file", path=str(data))
    try:
        with np.load(data, allow_pickle=False) as z:
            arrs = {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:
        raise InputError(f"not a plain numeric .npz ({e})", path=str(data)) from None
    need = ["x_members", "y_members", "x_nonmembers", "y_nonmembers"]
    missing = [k for k in need if k not in arrs]
    if missing:
        raise InputError(f"missing arrays: {', '.join(missing)}", path=str(data))
    _check_xy_arrays(arrs, data)
    module, spec, _ = load_classifier(folder)
    for name in ("y_members", "y_nonmembers", "y_population"):
        if name in arrs and len(arrs[name]) and arrs[name].max() >= spec.n_classes:
            raise InputError(f"{name} holds label {int(arrs[name].max())}; the classifier has "
                             f"{spec.n_classes} classes (0..{spec.n_classes - 1})", path=str(data))
        if name in arrs:
            arrs[name] = arrs[name].astype(np.int64)
    for name in ("x_members", "x_nonmembers", "x_population"):
        if name in arrs and arrs[name].reshape(len(arrs[name]), -1).shape[1] != spec.input_dim:
            raise InputError(f"{name} rows have {arrs[name].reshape(len(arrs[name]), -1).shape[1]} "
                             f"values; the classifier takes {spec.input_dim}", path=str(data))
    target = TorchClassifier(module, n_classes=spec.n_classes, input_shape=(spec.input_dim,))
    has_pop = "x_population" in arrs and "y_population" in arrs
    cfg = EvalConfig()
    run_record["config"].update({"classifier": str(folder), "data": str(data), "shadows": shadows if has_pop else 0,
                                 "epochs": epochs, "rmia_a": rmia_a})
    from leakaudit.runs.files import link_tree
    from leakaudit.runs.store import RunStore, stage_key

    trainer = TorchMLPTrainer(spec, TrainConfig(epochs=epochs, seed=seed))
    with staged_output(out, produces=REPORT_OUTPUTS, log=_log) as stage:
        # shadow models resume from the run store (each is saved when done)
        import hashlib

        store = RunStore.for_output(out, log=_log)
        shadow_dir = store.workspace("shadows", stage_key(
            "shadows", hashlib.sha256(data.read_bytes()).hexdigest(), trainer.describe(),
            shadows if has_pop else 0, seed))
        evals = audit_classifier_membership(
            target, arrs["x_members"], arrs["y_members"], arrs["x_nonmembers"], arrs["y_nonmembers"],
            x_population=arrs.get("x_population"), y_population=arrs.get("y_population"),
            trainer=trainer,
            n_shadow=shadows if has_pop else 0, shadow_dir=shadow_dir, rmia_a=rmia_a,
            seed=seed, eval_config=cfg, progress=_progress(), log=_log)
        if not has_pop:
            _log("warning: no x_population/y_population in --data: LOSS only; reference-model "
                 "attacks (LiRA, RMIA) are typically far stronger at low FPR")
        ids = [f"member-{i}" for i in range(len(arrs["y_members"]))] + \
              [f"nonmember-{i}" for i in range(len(arrs["y_nonmembers"]))]
        pairs = [("membership", e.record()) for e in evals]
        for e in evals:
            pairs += [("membership_record", r) for r in exposed_records(e, ids=ids, texts=None, top_n=cfg.top_n)]
        summary = summarize(evals, world="classifier")
        write_membership_report(stage, run_record=run_record, pairs=pairs, summary=summary)
        render_html(stage)
        if has_pop:
            link_tree(shadow_dir, stage / "shadows")
            for tmp in (stage / "shadows").rglob("*.tmp.npy"):
                tmp.unlink()
    return summary


def _membership_scores(path: Path, out: Path, run_record: dict) -> dict:
    import numpy as np

    from leakaudit.attacks.membership.classifier import ClassifierLossAttack, ClassifierSignals
    from leakaudit.attacks.membership.evaluate import (EvalConfig, evaluate_scores, exposed_records,
                                                       summarize, write_membership_report)
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output
    from leakaudit.runs.staged import REPORT_OUTPUTS
    from leakaudit.targets.scores_file import load_outputs

    po = load_outputs(path)
    n_mem = int(po.member.sum())
    if min(n_mem, len(po.member) - n_mem) < 2:
        raise InputError(f"needs at least 2 members and 2 non-members to measure anything (got "
                         f"{n_mem} members, {len(po.member) - n_mem} non-members)", path=str(path))
    cfg = EvalConfig()
    if po.score is not None:
        ev = evaluate_scores(po.score, po.member, world="precomputed", method="precomputed",
                             label="precomputed score", params={"file": str(path)},
                             threat_model="scores computed outside leakaudit", doc_uri="https://arxiv.org/abs/2112.03570",
                             subset=path.name, config=cfg)
    else:
        atk = ClassifierLossAttack()
        s = atk.score(ClassifierSignals(y=po.label, target_probs=po.probs))
        ev = evaluate_scores(s, po.member, world="classifier", method=atk.name, label=atk.label,
                             params={}, threat_model=atk.threat_model, doc_uri=atk.doc_uri,
                             subset=path.name, config=cfg)
    run_record["config"].update({"scores": str(path)})
    summary = summarize([ev], world=ev.world)
    both = set(np.asarray(po.ids)[po.member == 1]) & set(np.asarray(po.ids)[po.member == 0])
    if both:
        msg = (f"{len(both)} id(s) appear as both member and non-member (e.g. {sorted(both)[0]!r}): "
               "the labels contradict each other there")
        _log(f"warning: {msg}")
        summary.setdefault("warnings", []).append(msg)
    pairs = [("membership", ev.record())] + [("membership_record", r) for r in
                                            exposed_records(ev, ids=po.ids, texts=None, top_n=cfg.top_n)]
    with staged_output(out, produces=REPORT_OUTPUTS, inputs=[path]) as stage:
        write_membership_report(stage, run_record=run_record, pairs=pairs, summary=summary)
        render_html(stage)
    return summary


@app.command()
def report(directory: Annotated[Path, typer.Argument(help="A leakaudit output folder.")]) -> None:
    """Re-render report.html from a folder's report.jsonl."""
    from leakaudit.report.html import render_html

    try:
        path = render_html(directory)
    except LeakauditError as e:
        _fail(e)
    out_console.print(f"report: {path}", highlight=False)


@app.command()
def version() -> None:
    """Print the versions of leakaudit and its main dependencies."""
    from leakaudit.lab.run import versions

    for k, v in versions().items():
        out_console.print(f"{k} {v}", highlight=False)


# Commands that live in their own modules (leakaudit/commands/*.py, each with register(app)).
from leakaudit.commands import register_all  # noqa: E402

register_all(app)

if __name__ == "__main__":  # pragma: no cover
    main()
