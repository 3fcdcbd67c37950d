"""``leakaudit report``: re-render a folder's report and evaluate --fail-on on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import FAIL_ON, FORMAT_HELP, _fail, _outputs, _verdicts, out_console
from leakaudit.errors import LeakauditError


def report(directory: Annotated[Path, typer.Argument(help="A leakaudit output folder.")],
           formats: Annotated[Optional[str], typer.Option("--format", help=FORMAT_HELP + " Default: html.")] = None,
           fail_on: FAIL_ON = None) -> None:
    """Re-render report.html (and report.sarif, junit.xml) from a folder's report.jsonl and evaluate --fail-on on it."""
    from leakaudit import registry
    from leakaudit.report.writer import render
    from leakaudit.runs.staged import owned_output

    fmts, thresholds = _outputs(formats or "html", fail_on)
    # the files the formats write into the folder: a foreign one there is refused, not replaced
    produces = [registry.entry("formats", f).produces for f in fmts if f != "jsonl"]
    try:
        with owned_output(directory, produces=produces, inputs=[directory / "report.jsonl"],
                          option="folder (or move that file away)"):
            written = render(directory, fmts, thresholds)
    except LeakauditError as e:
        _fail(e)
    if "html" in written.files:
        out_console.print(f"report: {written.files['html']}", highlight=False)
    _verdicts(written, directory)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
