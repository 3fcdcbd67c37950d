"""``leakaudit invert``: model inversion of your own classifier, white-box or behind an endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import FAIL_ON, FORMAT, _audit, _verdicts, out_console


def invert(
    model: Annotated[Optional[str], typer.Argument(help="The classifier: a leakaudit classifier folder, hf:DIR, onnx:FILE or skops:FILE (leakaudit list backends); MI-Face needs gradients, NES only probabilities.")] = None,
    endpoint: Annotated[Optional[str], typer.Option("--endpoint", help="HTTP endpoint: POST {\"inputs\": [[...]]} -> {\"probabilities\": [[...]]} (black-box).")] = None,
    input_shape: Annotated[Optional[str], typer.Option("--input-shape", help="Input shape for --endpoint, e.g. 64 or 8x8; for an hf: image folder, a flat shape (64 for 1x8x8 pixels) takes flat inputs.")] = None,
    n_classes: Annotated[Optional[int], typer.Option("--n-classes", min=2, help="Number of classes for --endpoint.")] = None,
    classes: Annotated[Optional[str], typer.Option("--classes", help="Classes to invert, e.g. 0,3,7 (default: all).")] = None,
    attack: Annotated[Optional[str], typer.Option("--attack", help="mi_face (white-box) or nes (black-box; default for --endpoint).")] = None,
    budget: Annotated[Optional[int], typer.Option("--budget", min=1, help="Black-box query budget per class (default 504).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the black-box search (same seed, same images).")] = 0,
    reference_data: Annotated[Optional[Path], typer.Option("--reference-data", help=".npz with x, y: labelled data that is NOT the training data; trains the evaluation classifier, gives class means and the start.")] = None,
    image_shape: Annotated[Optional[str], typer.Option("--image-shape", help="2-D layout of flat inputs (e.g. 8x8) for the image grid and the smoothness prior.")] = None,
    clip: Annotated[str, typer.Option("--clip", help="Input domain lo,hi.")] = "0,1",
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds per endpoint request.")] = 30.0,
    answers: Annotated[str, typer.Option("--answers", help="What --endpoint answers: probabilities, or labels (then no inversion attack applies and each is recorded as skipped).")] = "probabilities",
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
        clip=clip, timeout=timeout, batch_size=batch_size, answers=answers)
    result, written = _audit(inversion, req, out, produces=REPORT_OUTPUTS, inputs=[model, reference_data],
                             formats=formats, fail_on=fail_on)
    _print_inversion(result, out)
    _verdicts(written, out)


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


def register(app: typer.Typer) -> None:
    app.command("invert")(invert)
