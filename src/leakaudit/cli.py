"""The ``leakaudit`` command line. Thin: every command is a call into the library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.errors import InputError, LeakauditError

from leakaudit.commands._kit import OneLineErrorGroup  # noqa: E402

app = typer.Typer(cls=OneLineErrorGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure how much a trained model leaks its training data.")
from leakaudit.commands._kit import (  # noqa: E402,F401  (re-exported for tests)
    _command, _fail, _log, _progress, _quiet_libraries, _terminate, console, out_console,
)
import leakaudit.commands._kit as _clikit  # noqa: E402


@app.callback()
def _global_options(
    share: Annotated[bool, typer.Option("--share", help="Write outputs with the usual umask modes instead of owner-only (0600 files, 0700 folders).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Let a run replace files in --out that leakaudit did not write (never its own inputs).")] = False,
) -> None:
    """Measure how much a trained model leaks its training data."""
    _clikit._apply_global_options(share=share, overwrite=overwrite)


def main() -> None:
    """The console entry point: ``app`` plus a clean exit status after SIGINT (130) or SIGTERM (143).

    The SIGTERM handler raises ``SystemExit`` wherever the main thread is. If that is inside an
    import or a ``__set_name__`` hook, Python wraps it in another exception; the staged output is
    still removed on the way out, and here the process still exits with 128 + signal.
    """
    import signal

    signal.signal(signal.SIGINT, _terminate)  # exit 130 (not click's "Aborted!" exit 1)
    signal.signal(signal.SIGTERM, _terminate)  # exit 143
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



FORMAT = Annotated[Optional[str], typer.Option("--format", help=_clikit.FORMAT_HELP)]
FAIL_ON = Annotated[Optional[list[str]], typer.Option("--fail-on", help=_clikit.FAIL_ON_HELP)]


def _audit(module, request, out: Path, *, produces, inputs, formats, fail_on, catch=(LeakauditError,)):
    """Run one audit module (``prepare`` + ``run``) into ``out``; bad input exits 2."""
    fmts, thresholds = _clikit._outputs(formats, fail_on)
    _quiet_libraries()
    from leakaudit.audits.base import execute

    try:
        return execute(out, produces=produces, inputs=inputs, prepare=lambda: module.prepare(request),
                       run=lambda t, env: module.run(t, request, env), formats=fmts,
                       fail_on=thresholds, command=_command(), progress=_progress(), log=_log)
    except catch as e:
        _fail(e)


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
    after_training: Annotated[bool, typer.Option("--after-training", help="On the finished lab in --out: the MemFree output filter with its bypasses (OUT/output-filter), and the erasure of one data subject by GA, GD, NPO, the retrained oracle and SISA, verified with relapse (OUT/erasure).")] = False,
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """Run the embedded lab: synthetic corpus → small target models → extraction, memorization,
    canary exposure, membership inference and classifier inversion → report."""
    from dataclasses import replace

    from leakaudit.lab.run import LAB_OUTPUTS, LabConfig, run_lab
    from leakaudit.runs.staged import check_output_location

    fmts, thresholds = _clikit._outputs(formats, fail_on)
    _quiet_libraries()
    if endpoint is not None:
        return _lab_endpoint(out, endpoint, api_key_env=api_key_env, show_pii=show_pii, seed=seed)
    if defenses:
        return _lab_defenses(out, quick=quick, seed=seed, samples=samples)
    if after_training:
        return _lab_after_training(out, seed=seed)
    cfg = LabConfig.tiny(seed) if tiny else LabConfig.quick(seed) if quick else LabConfig(seed=seed)
    cfg = replace(cfg, extraction=replace(cfg.extraction, show_pii=show_pii,
                                          **({"n_samples": samples} if samples is not None else {})))
    try:
        check_output_location(out, produces=LAB_OUTPUTS, inputs=[cache])
        summary = run_lab(out, cfg, progress=_progress(), log=_log, command=_command(), cache_dir=cache,
                          formats=fmts, fail_on=thresholds)
    except LeakauditError as e:
        _fail(e)
    _print_summary(out, summary)
    _clikit._verdicts(summary.pop("written"), out)


def _lab_endpoint(out: Path, endpoint: str, *, api_key_env, show_pii: bool, seed: int) -> None:
    """``lab --endpoint``: audit the finished lab's target served behind an OpenAI-compatible URL."""
    from leakaudit.audits.endpoint import EndpointAuditConfig
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
                      f"cached, {r['failed']} failed); report in {out / 'endpoint'}", highlight=False)


def _lab_after_training(out: Path, *, seed: int) -> None:
    """``lab --after-training``: the output filter and the erasure studies on a finished lab."""
    from leakaudit.lab.after_training import run_after_training_lab

    try:
        s = run_after_training_lab(out, seed=seed, command=_command(), log=_log)
    except LeakauditError as e:
        _fail(e)
    for line in s["erasure"]["lines"]:
        out_console.print(line, highlight=False, markup=False)
    out_console.print(f"reports: {out / 'output-filter' / 'report.html'}, "
                      f"{out / 'erasure' / 'report' / 'report.html'}", highlight=False, markup=False)


def _lab_defenses(out: Path, *, quick: bool, seed: int, samples) -> None:
    """``lab --defenses``: every defense variant on one corpus, the same attacks on each."""
    from dataclasses import replace

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
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Run sampling shards, scoring batches and verification as Ray tasks: auto (the running cluster, else a local one) or ADDRESS; 'local' runs the same shards in this process. Same findings as without it. Needs pip install 'leakaudit[ray]'.")] = None,
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
    _clikit._verdicts(written, out)


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
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Run the teacher-forced passes as Ray tasks (the same batches as in one process, so the same records): auto (the running cluster, else a local one) or ADDRESS; 'local' runs the same tasks in this process; the greedy cross-check stays on this machine. Needs pip install 'leakaudit[ray]'.")] = None,
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
    _clikit._verdicts(written, out)


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
    from leakaudit.audits.canaries import insert_into_corpus

    try:
        n, n_docs = insert_into_corpus(corpus, out, templates=list(template), spaces=list(space),
                                       repeats=_parse_ints(repeats, what="--repeats"),
                                       text_field=text_field, seed=seed)
    except LeakauditError as e:
        _fail(e)
    out_console.print(f"inserted {n} canaries into {n_docs} documents: "
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
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """Exposure of each canary by rank among reference candidates and by extrapolation."""
    from leakaudit.runs.staged import REPORT_OUTPUTS

    _check_out(out, REPORT_OUTPUTS, [manifest, model])
    _check_specs([model], allow_download)  # a typo in a path answers at once
    from leakaudit.audits import exposure

    req = exposure.ExposureRequest(model=model, manifest=manifest, references=references, seed=seed,
                                   batch_size=batch_size, device=device, show_pii=show_pii,
                                   allow_download=allow_download)
    result, written = _audit(exposure, req, out, produces=REPORT_OUTPUTS, inputs=[manifest, model],
                             formats=formats, fail_on=fail_on, catch=(LeakauditError, ValueError))
    for r in result.summary["by_repeats"]:
        out_console.print(f"repeats {r['repeats']:>4}: exposure {r['mean_exposure_rank']:.2f} bits by rank, "
                          f"{r['mean_exposure_extrapolated']:.2f} extrapolated ({r['n_canaries']} canaries)",
                          highlight=False)
    out_console.print(f"report: {out / 'report.html'}", highlight=False)
    _clikit._verdicts(written, out)


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
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """Model inversion (Fredrikson et al. 2015) of your own classifier: one reconstruction per class."""
    from leakaudit.audits import inversion
    from leakaudit.runs.staged import REPORT_OUTPUTS

    req = inversion.InversionRequest(
        model=model, endpoint=endpoint, input_shape=input_shape, n_classes=n_classes, classes=classes,
        attack=attack, budget=budget, seed=seed, reference_data=reference_data, image_shape=image_shape,
        clip=clip, timeout=timeout, batch_size=batch_size)
    result, written = _audit(inversion, req, out, produces=REPORT_OUTPUTS, inputs=[model, reference_data],
                             formats=formats, fail_on=fail_on)
    _print_inversion(result, out)
    _clikit._verdicts(written, out)


def _print_inversion(result, out: Path) -> None:
    ev = result.records[0][1]
    judged = ev.get("top1")
    out_console.print(f"{result.run_record['config']['attack']} on {len(result.run_record['config']['classes'])} "
                      f"classes: mean target confidence {ev['mean_target_confidence']:.1%}, "
                      f"{ev['queries_total']} queries", highlight=False)
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
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="With --classifier: train the reference models as Ray tasks, one per model; with --model: run the teacher-forced passes (target, lowercased, references) as Ray tasks in the same batches as in one process. auto (the running cluster, else a local one) or ADDRESS; 'local' runs the same tasks in this process. Same findings as without it. Needs pip install 'leakaudit[ray]'.")] = None,
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """Membership inference, reported as TPR at low FPR with a model-free baseline next to LLM results."""
    from leakaudit.runs.staged import REPORT_OUTPUTS

    _check_out(out, REPORT_OUTPUTS + ("shadows",),
               [model, members, nonmembers, scores, classifier, data, *(reference or [])])
    _check_specs([m for m in [model, *(reference or [])] if m], allow_download)  # a typo in a path answers at once
    from leakaudit.audits import membership as audit

    modes = [m for m, on in (("--model", model), ("--scores", scores), ("--lab", lab),
                             ("--classifier", classifier)) if on]
    if len(modes) != 1:
        _fail(LeakauditError("give exactly one of --model (with --members and --nonmembers), "
                             "--classifier DIR (with --data FILE.npz), --scores FILE, or --lab"))
    if cluster and not (classifier or model):
        _fail(InputError("--cluster trains the reference models of --classifier or runs the "
                         "scoring passes of --model; --scores and --lab run in this process"))
    if lab:
        summary, written = _membership_lab(out, shadows=shadows, seed=seed, formats=formats, fail_on=fail_on)
    else:
        req = audit.MembershipRequest(
            model=model, members=members, nonmembers=nonmembers, references=tuple(reference or ()), k=k,
            scores=scores, classifier=classifier, data=data, epochs=epochs, rmia_a=rmia_a, shadows=shadows,
            text_field=text_field, seed=seed, batch_size=batch_size, device=device, show_pii=show_pii,
            allow_download=allow_download, cluster=cluster)
        result, written = _audit(audit, req, out, produces=REPORT_OUTPUTS + ("shadows",), formats=formats,
                                 fail_on=fail_on, inputs=[model, members, nonmembers, scores, classifier,
                                                          data, *(reference or [])])
        summary = result.summary
    for name, r in summary["results"].items():
        tprs = "  ".join(f"TPR@{k_[4:]}FPR " + ("n/r" if v is None else f"{v:.2%}")
                         for k_, v in r.items() if k_.startswith("tpr@"))
        out_console.print(f"{name:48s} AUC {r['auc']:.3f}  {tprs}", highlight=False)
    for sk in summary.get("skipped") or []:
        out_console.print(f"{sk['label']:48s} skipped: {sk['reason']}", highlight=False)
    out_console.print(f"report: {out / 'report.html'}\nrecords: {out / 'report.jsonl'}", highlight=False)
    _clikit._verdicts(written, out)


def _membership_lab(out: Path, *, shadows: int, seed: int, formats, fail_on):
    """The classifier lab (overfit MLPs on the digits, shadow models); stages its own output."""
    from leakaudit.lab.membership import ClassifierLabConfig, run_classifier_membership_lab
    from leakaudit.report.writer import render
    from leakaudit.runs.staged import REPORT_OUTPUTS, check_output_location

    fmts, thresholds = _clikit._outputs(formats, fail_on)
    _quiet_libraries()
    try:
        check_output_location(out, produces=REPORT_OUTPUTS + ("shadows",))
        summary = run_classifier_membership_lab(out, ClassifierLabConfig(n_shadow=shadows, seed=seed),
                                                progress=_progress(), log=_log, command=_command(),
                                                formats=fmts)
        written = render(out, [f for f in fmts if f == "junit"], thresholds)  # verdicts into junit.xml
    except LeakauditError as e:
        _fail(e)
    return summary, written


@app.command()
def report(directory: Annotated[Path, typer.Argument(help="A leakaudit output folder.")],
           formats: Annotated[Optional[str], typer.Option("--format", help=_clikit.FORMAT_HELP + " Default: html.")] = None,
           fail_on: FAIL_ON = None) -> None:
    """Re-render report.html (and report.sarif, junit.xml) from a folder's report.jsonl and evaluate --fail-on on it."""
    from leakaudit.report.writer import render

    fmts, thresholds = _clikit._outputs(formats or "html", fail_on)
    try:
        written = render(directory, fmts, thresholds)
    except LeakauditError as e:
        _fail(e)
    if "html" in written.files:
        out_console.print(f"report: {written.files['html']}", highlight=False)
    _clikit._verdicts(written, directory)


@app.command()
def version() -> None:
    """Print the versions of leakaudit and its main dependencies."""
    from leakaudit.versions import versions

    for k, v in versions().items():
        out_console.print(f"{k} {v}", highlight=False)


# Commands that live in their own modules (leakaudit/commands/*.py, each with register(app)).
from leakaudit.commands import register_all  # noqa: E402

register_all(app)

if __name__ == "__main__":  # pragma: no cover
    main()
