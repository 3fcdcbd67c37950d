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

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure how much a trained model leaks its training data.")
console = Console(stderr=True)
out_console = Console()


_terminated_by: int | None = None


def _terminate(signum, frame):  # pragma: no cover - exercised by a subprocess test
    global _terminated_by
    _terminated_by = signum
    raise SystemExit(128 + signum)


def main() -> None:
    """The console entry point: ``app`` plus a clean exit status after SIGTERM.

    The SIGTERM handler raises ``SystemExit`` wherever the main thread is. If that is inside an
    import or a ``__set_name__`` hook, Python wraps it in another exception; the staged output is
    still removed on the way out, and here the process still exits with 128 + signal.
    """
    try:
        app(prog_name="leakaudit")
    except BaseException:
        if _terminated_by is not None:
            raise SystemExit(128 + _terminated_by) from None
        raise


def _quiet_libraries() -> None:
    # SIGTERM becomes an exception, so staged outputs are cleaned up as on Ctrl-C.
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    import rich.progress  # noqa: F401  (imported before any output is staged)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)


def _fail(e: Exception) -> None:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    console.print(f"[bold red]error:[/] {msg}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


def _log(msg: str) -> None:
    console.print(msg, highlight=False, markup=False, soft_wrap=True)  # one line, even in a log file


def _progress():
    from leakaudit.progress import make_rich_progress

    return make_rich_progress(console)


def _command() -> str:
    return "leakaudit " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _print_summary(out: Path, summary: dict) -> None:
    best = summary.get("best") or {}
    out_console.print(f"[bold]samples[/] {summary['n_samples']}  [bold]candidates[/] "
                      f"{summary['n_candidates']}  [bold]verified memorized candidates[/] "
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
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes for tests and CI (a minute or two).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the corpus, training and sampling.")] = 0,
    samples: Annotated[Optional[int], typer.Option("--samples", min=1, help="Generations per sampler (default: 1000, quick: 100).")] = None,
    show_pii: Annotated[bool, typer.Option("--show-pii", help="Write raw PII into the report (masked by default).")] = False,
) -> None:
    """Run the embedded lab: synthetic corpus → small target models → extraction → report."""
    from dataclasses import replace

    from leakaudit.lab.run import LabConfig, run_lab

    _quiet_libraries()
    cfg = LabConfig.quick(seed) if quick else LabConfig(seed=seed)
    ext = cfg.extraction
    if samples is not None:
        ext = replace(ext, n_samples=samples)
    cfg = replace(cfg, extraction=replace(ext, show_pii=show_pii))
    try:
        summary = run_lab(out, cfg, progress=_progress(), log=_log, command=_command())
    except LeakauditError as e:
        _fail(e)
    _print_summary(out, summary)


@app.command()
def extract(
    model: Annotated[str, typer.Option("--model", help="Target model: a local HF directory, a .gguf file, or a hub name.")],
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
    show_pii: Annotated[bool, typer.Option("--show-pii", help="Write raw PII into the report (masked by default).")] = False,
) -> None:
    """Untargeted training-data extraction (Carlini et al. 2021) on your own causal LM and corpus."""
    from leakaudit.attacks.extraction.pipeline import ExtractionConfig
    from leakaudit.attacks.extraction.samplers import SAMPLERS
    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.corpus.load import load_corpus
    from leakaudit.lab.run import versions
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output
    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.workflow import write_extraction_report

    _quiet_libraries()
    try:
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
        target = HFCausalLM.load(model, name="target", device=device)
        if "internet" in samplers:  # fail here, naming the file, not mid-run
            lo, hi = ExtractionConfig.prompt_tokens
            if not any(len(t) >= lo for t in target.tokenize([d.text for d in prompt_docs])):
                raise InputError(f"no text has at least {lo} tokens (the internet sampler cuts "
                                 f"{lo}–{hi}-token prefixes from it)", path=str(prompts))
        refs = {}
        for i, r in enumerate(reference or []):
            name = Path(r).name or f"ref{i}"
            refs[name if name not in refs else f"{name}-{i}"] = HFCausalLM.load(r, name=name, device=device)
        index = CorpusIndex.build([d.text for d in docs], [d.id for d in docs]) if docs else None
        cfg = ExtractionConfig(samplers=tuple(samplers), n_samples=samples, select=select,
                               max_new_tokens=new_tokens, top_k=top_k, seed=seed,
                               generate_batch_size=batch_size,
                               score_batch_size=max(1, batch_size // 2), show_pii=show_pii)
        from dataclasses import asdict

        run_record = {
            **versions(), "command": _command(), "seed": seed, "config": asdict(cfg),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "models": {"target": {"path": model, "fingerprint": target.fingerprint()},
                       **{k: {"path": str(v.source), "fingerprint": v.fingerprint()} for k, v in refs.items()}},
            "corpus": {"path": str(corpus), "n_docs": len(docs), "n_bytes": index.n_bytes} if docs else None,
        }
        with staged_output(out) as stage:
            summary = write_extraction_report(
                stage, target=target, references=refs, index=index,
                prompt_texts=[d.text for d in prompt_docs] if prompt_docs else None, canaries=None,
                config=cfg, run_record=run_record, progress=_progress(), log=_log,
            )
            render_html(stage)
    except LeakauditError as e:
        _fail(e)
    _print_summary(out, summary)


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
) -> None:
    """Membership inference, reported as TPR at low FPR with a model-free baseline next to LLM results."""
    from leakaudit.lab.run import versions
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output

    _quiet_libraries()
    modes = [m for m, on in (("--model", model), ("--scores", scores), ("--lab", lab),
                             ("--classifier", classifier)) if on]
    try:
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
            from leakaudit.targets.hf import HFCausalLM

            if members is None or nonmembers is None:
                raise LeakauditError("--model needs --members FILE and --nonmembers FILE")
            mdocs = load_corpus(members, text_field=text_field)
            ndocs = load_corpus(nonmembers, text_field=text_field)
            target = HFCausalLM.load(model, name="target", device=device)
            refs = {}
            for i, r in enumerate(reference or []):
                name = Path(r).name or f"ref{i}"
                refs[name if name not in refs else f"{name}-{i}"] = HFCausalLM.load(r, name=name, device=device)
            run_record["models"] = {"target": {"path": model, "fingerprint": target.fingerprint()},
                                    **{n: {"path": str(v.source), "fingerprint": v.fingerprint()}
                                       for n, v in refs.items()}}
            run_record["config"].update({"k": k, "members": str(members), "nonmembers": str(nonmembers)})
            with staged_output(out) as stage:
                audit = audit_llm_membership(
                    target, refs, [d.text for d in mdocs], [d.text for d in ndocs], k=k,
                    member_ids=[d.id for d in mdocs], nonmember_ids=[d.id for d in ndocs],
                    batch_size=batch_size, show_pii=show_pii, progress=_progress(), log=_log)
                summary = {**summarize(audit.evaluations, world="llm"), "cost": audit.cost,
                           "warnings": audit.warnings,
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
    out_console.print(f"report: {out / 'report.html'}\nrecords: {out / 'report.jsonl'}", highlight=False)


def _membership_classifier(folder: Path, data: Optional[Path], out: Path, run_record: dict, *,
                           shadows: int, epochs: int, rmia_a: float, seed: int) -> dict:
    import numpy as np

    from leakaudit.attacks.membership.audit_clf import audit_classifier_membership
    from leakaudit.attacks.membership.evaluate import (EvalConfig, exposed_records, summarize,
                                                       write_membership_report)
    from leakaudit.attacks.membership.shadow import TorchMLPTrainer
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output
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
    module, spec, _ = load_classifier(folder)
    target = TorchClassifier(module, n_classes=spec.n_classes, input_shape=(spec.input_dim,))
    has_pop = "x_population" in arrs and "y_population" in arrs
    cfg = EvalConfig()
    run_record["config"].update({"classifier": str(folder), "data": str(data), "shadows": shadows if has_pop else 0,
                                 "epochs": epochs, "rmia_a": rmia_a})
    with staged_output(out) as stage:
        evals = audit_classifier_membership(
            target, arrs["x_members"], arrs["y_members"], arrs["x_nonmembers"], arrs["y_nonmembers"],
            x_population=arrs.get("x_population"), y_population=arrs.get("y_population"),
            trainer=TorchMLPTrainer(spec, TrainConfig(epochs=epochs, seed=seed)),
            n_shadow=shadows if has_pop else 0, shadow_dir=stage / "shadows", rmia_a=rmia_a,
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
    return summary


def _membership_scores(path: Path, out: Path, run_record: dict) -> dict:
    from leakaudit.attacks.membership.classifier import ClassifierLossAttack, ClassifierSignals
    from leakaudit.attacks.membership.evaluate import (EvalConfig, evaluate_scores, exposed_records,
                                                       summarize, write_membership_report)
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output
    from leakaudit.targets.scores_file import load_outputs

    po = load_outputs(path)
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
    pairs = [("membership", ev.record())] + [("membership_record", r) for r in
                                            exposed_records(ev, ids=po.ids, texts=None, top_n=cfg.top_n)]
    with staged_output(out) as stage:
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


if __name__ == "__main__":  # pragma: no cover
    main()
