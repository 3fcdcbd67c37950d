"""What every audit returns, the environment it runs in, and :func:`execute` (check the output
folder → prepare → run inside a staged output → write the report in the requested formats)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from leakaudit.progress import null_progress


@dataclass
class AuditEnv:
    """Where an audit runs: the output folder (its run store lives there), the staging folder
    its files go into, the command line, progress and log callbacks."""

    out: Path
    stage: Path
    command: str = "leakaudit"
    progress: Any = null_progress
    log: Callable[[str], None] = print

    def store(self):
        from leakaudit.runs.store import RunStore

        return RunStore.for_output(self.out, log=self.log)


@dataclass
class AuditResult:
    """A finished audit: the run record, its report records (``Finding`` objects or
    ``(entry_type, dict)`` pairs), the summary, and optionally files to add to the stage after the
    report is written (e.g. shadow models)."""

    run_record: dict[str, Any]
    records: list
    summary: dict[str, Any]
    after_write: Callable[[Path], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def started() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def base_run_record(command: str, seed: int | None, config: dict[str, Any]) -> dict[str, Any]:
    from leakaudit.versions import versions

    return {**versions(), "command": command, "seed": seed, "started": started(), "config": config}


def execute(out: Path, *, produces: Iterable[str], inputs: Iterable[Any], prepare: Callable[[], Any],
            run: Callable[[Any, AuditEnv], AuditResult], formats: Iterable[str] = ("jsonl", "html"),
            fail_on: list[str] | None = None, command: str = "leakaudit", progress=null_progress,
            log=print):
    """Run one audit end to end and return ``(result, written)``.

    The output folder is checked first, then ``prepare()`` checks inputs and loads targets, then
    ``run(prepared, env)`` runs inside a staged output whose files are merged into ``out`` only
    when everything succeeded.
    """
    from leakaudit.report.writer import format_files, write_report
    from leakaudit.runs.lock import output_lock
    from leakaudit.runs.staged import check_output_location, staged_output

    formats = tuple(formats)
    produces = tuple(produces) + format_files(formats)
    inputs = [i for i in inputs if i is not None]
    check_output_location(out, produces=produces, inputs=inputs)
    with output_lock(out, log=log):  # one run at a time into ``out``, from the check to the merge
        prepared = prepare()
        with staged_output(out, produces=produces, inputs=inputs, log=log) as stage:
            env = AuditEnv(Path(out), stage, command, progress, log)
            result = run(prepared, env)
            written = write_report(stage, run_record=result.run_record, records=result.records,
                                   summary=result.summary, formats=formats, fail_on=fail_on)
            if result.after_write is not None:
                result.after_write(stage)
    return result, written
