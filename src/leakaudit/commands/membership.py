"""``leakaudit membership``: membership inference, one subcommand per world:

- ``membership llm --model M --members F --nonmembers F``: a causal LM on member / non-member
  documents, with a model-free baseline next to its results;
- ``membership classifier DIR --data F.npz``: a classifier, with reference (shadow) models;
- ``membership scores FILE``: precomputed outputs of a model leakaudit cannot run;
- ``membership lab``: the classifier lab (overfit MLPs on the digits, shadow models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import (NEEDS_RAY, 
    FAIL_ON,
    FORMAT,
    _audit,
    _check_out,
    _check_specs,
    _command,
    _fail,
    _log,
    _outputs,
    _progress,
    _quiet_libraries,
    _verdicts,
    mode_group,
    out_console,
)
from leakaudit.errors import LeakauditError

RENAMED = {
    "--model": "'leakaudit membership --model M' is now 'leakaudit membership llm --model M'",
    "--classifier": "'leakaudit membership --classifier DIR' is now 'leakaudit membership classifier DIR'",
    "--scores": "'leakaudit membership --scores FILE' is now 'leakaudit membership scores FILE'",
    "--lab": "'leakaudit membership --lab' is now 'leakaudit membership lab'",
}

membership_app = typer.Typer(
    cls=mode_group(RENAMED), no_args_is_help=True, add_completion=False,
    help="Membership inference, reported as TPR at low FPR with a model-free baseline next to LLM results.")

OUT = Annotated[Path, typer.Option("--out", help="Output folder.")]
SEED = Annotated[int, typer.Option("--seed")]
FPR = Annotated[Optional[list[float]], typer.Option(
    "--fpr", help="A false-positive rate at which to report TPR with its interval; repeatable "
                  "(default: 0.1, 0.01, 0.001 and 0.0001). TPR at an FPR below 1/(non-members) "
                  "is reported as not resolvable.")]
CLUSTER_HELP = (" auto (the running cluster, else a local one) or ADDRESS; 'local' runs the same tasks "
                "in this process. Same findings as without it. " + NEEDS_RAY)


def register(app: typer.Typer) -> None:
    app.add_typer(membership_app, name="membership")


def _outputs_of_membership() -> tuple[str, ...]:
    from leakaudit.runs.staged import REPORT_OUTPUTS

    return REPORT_OUTPUTS + ("shadows",)


def _run(request, out: Path, inputs: list, formats, fail_on) -> None:
    """Run the membership audit for ``request`` into ``out`` and print its results."""
    from leakaudit.audits import membership as audit

    result, written = _audit(audit, request, out, produces=_outputs_of_membership(), formats=formats,
                             fail_on=fail_on, inputs=inputs)
    _print_results(result.summary, out)
    _verdicts(written, out)


def _fprs(fpr: list[float] | None) -> dict:
    """``--fpr`` as MembershipRequest's ``fprs`` (absent: the request's default)."""
    return {} if not fpr else {"fprs": tuple(fpr)}


def _print_results(summary: dict, out: Path) -> None:
    for name, r in summary["results"].items():
        tprs = "  ".join(f"TPR@{k_[4:]}FPR " + ("n/r" if v is None else f"{v:.2%}")
                         for k_, v in r.items() if k_.startswith("tpr@"))
        out_console.print(f"{name:48s} AUC {r['auc']:.3f}  {tprs}", highlight=False)
    for sk in summary.get("skipped") or []:
        out_console.print(f"{sk['label']:48s} skipped: {sk['reason']}", highlight=False)
    out_console.print(f"report: {out / 'report.html'}\nrecords: {out / 'report.jsonl'}", highlight=False)


@membership_app.command("llm")
def llm(
    model: Annotated[str, typer.Option("--model", help="Target causal LM: a local HF directory (with --members/--nonmembers).")],
    members: Annotated[Path, typer.Option("--members", help="Documents known to be in training (JSONL, .txt, Parquet, folder).")],
    nonmembers: Annotated[Path, typer.Option("--nonmembers", help="Documents known NOT to be in training, from the same distribution.")],
    reference: Annotated[Optional[list[str]], typer.Option("--reference", help="Reference LM(s) for the ratio attack; repeatable.")] = None,
    attack: Annotated[Optional[list[str]], typer.Option("--attack", help="Attacks by name (leakaudit list attacks; repeatable; default: every LLM attack the target serves).")] = None,
    k: Annotated[float, typer.Option("--k", min=0.0, max=1.0, help="Fraction of lowest-probability tokens for Min-K% and Min-K%++.")] = 0.2,
    fpr: FPR = None,
    out: OUT = Path("leakaudit-membership"),
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL/Parquet field holding the text.")] = "text",
    seed: SEED = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    show_pii: Annotated[bool, typer.Option("--show-pii", help="Write raw PII into the report (masked by default).")] = False,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching a hub model (leakaudit works offline by default).")] = False,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Run the teacher-forced passes (target, lowercased, references) as Ray tasks in the same batches as in one process." + CLUSTER_HELP)] = None,
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """A causal LM on member and non-member documents: LOSS, zlib, lowercase, the reference ratio,
    Min-K% and Min-K%++, with a model-free baseline next to them."""
    inputs = [model, members, nonmembers, *(reference or [])]
    _check_out(out, _outputs_of_membership(), inputs)
    _check_specs([model, *(reference or [])], allow_download)  # a typo in a path answers at once
    from leakaudit.audits.membership import MembershipRequest

    req = MembershipRequest(model=model, members=members, nonmembers=nonmembers,
                            references=tuple(reference or ()), attacks=tuple(attack or ()), k=k,
                            text_field=text_field, seed=seed, **_fprs(fpr),
                            batch_size=batch_size, device=device, show_pii=show_pii,
                            allow_download=allow_download, cluster=cluster)
    _run(req, out, inputs, formats, fail_on)


@membership_app.command("classifier")
def classifier(
    classifier: Annotated[str, typer.Argument(help="The classifier: a leakaudit classifier folder, hf:DIR (image or text classification), onnx:FILE, skops:FILE, or an http(s):// endpoint (leakaudit list backends).")],
    data: Annotated[Path, typer.Option("--data", help=".npz with x_members, y_members, x_nonmembers, y_nonmembers and optionally x_population, y_population (reference models).")],
    budget: Annotated[int, typer.Option("--budget", min=0, help="Queries per record for the label-only attacks (each attack's hard cap; 0: do not run them).")] = 100,
    answers: Annotated[str, typer.Option("--answers", help="What an http(s) endpoint answers: probabilities, or labels (label-only).")] = "probabilities",
    n_classes: Annotated[Optional[int], typer.Option("--n-classes", min=2, help="Number of classes (an endpoint's).")] = None,
    input_shape: Annotated[Optional[str], typer.Option("--input-shape", help="Shape of one input for an endpoint, e.g. 64 or 1x8x8; for an hf: image folder, a flat shape (64 for 1x8x8 pixels) takes flat inputs.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds per endpoint request.")] = 30.0,
    classifier_batch_size: Annotated[int, typer.Option("--classifier-batch-size", min=1, help="Inputs per call to the classifier.")] = 256,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs of each reference model.")] = 100,
    rmia_a: Annotated[float, typer.Option("--rmia-a", min=0.0, max=1.0, help="RMIA's offline parameter a.")] = 0.3,
    shadows: Annotated[int, typer.Option("--shadows", min=4, help="Reference (shadow) models trained on x_population, y_population.")] = 16,
    fpr: FPR = None,
    out: OUT = Path("leakaudit-membership"),
    seed: SEED = 0,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Train the reference models as Ray tasks, one per model." + CLUSTER_HELP)] = None,
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """A classifier on member and non-member examples: LOSS, and offline LiRA and RMIA with
    reference models trained on population data."""
    _check_out(out, _outputs_of_membership(), [classifier, data])
    from leakaudit.audits.membership import MembershipRequest

    req = MembershipRequest(classifier=classifier, data=data, epochs=epochs, rmia_a=rmia_a,
                            shadows=shadows, seed=seed, cluster=cluster, budget=budget,
                            answers=answers, n_classes=n_classes, input_shape=input_shape,
                            timeout=timeout, classifier_batch_size=classifier_batch_size,
                            **_fprs(fpr))
    _run(req, out, [classifier, data], formats, fail_on)


@membership_app.command("scores")
def scores(
    scores: Annotated[Path, typer.Argument(help="Precomputed outputs (CSV/JSONL/.npy: member + score, or member + label + probs/logits).")],
    fpr: FPR = None,
    out: OUT = Path("leakaudit-membership"),
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """Precomputed outputs of a model leakaudit cannot run: member + score, or member + label +
    class probabilities (scored by LOSS)."""
    _check_out(out, _outputs_of_membership(), [scores])
    from leakaudit.audits.membership import MembershipRequest

    _run(MembershipRequest(scores=scores, **_fprs(fpr)), out, [scores], formats, fail_on)


@membership_app.command("lab")
def lab(
    shadows: Annotated[int, typer.Option("--shadows", min=4, help="Shadow models.")] = 16,
    out: OUT = Path("leakaudit-membership"),
    seed: SEED = 0,
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """Run the classifier lab: overfit MLPs on the digits with shadow models."""
    from leakaudit.lab.membership import ClassifierLabConfig, run_classifier_membership_lab
    from leakaudit.report.writer import render
    from leakaudit.runs.staged import check_output_location

    fmts, thresholds = _outputs(formats, fail_on)
    _quiet_libraries()
    try:
        from leakaudit.report.writer import format_files
        from leakaudit.runs.staged import owned_output

        check_output_location(out, produces=_outputs_of_membership() + format_files(fmts))
        summary = run_classifier_membership_lab(out, ClassifierLabConfig(n_shadow=shadows, seed=seed),
                                                progress=_progress(), log=_log, command=_command(),
                                                formats=fmts)
        junit = [f for f in fmts if f == "junit"]
        # verdicts into junit.xml, written in place: never over a file leakaudit did not write
        with owned_output(out, produces=format_files(junit)):
            written = render(out, junit, thresholds)
    except LeakauditError as e:
        _fail(e)
    _print_results(summary, out)
    _verdicts(written, out)
