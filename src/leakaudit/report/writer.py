"""The one writer of every leakaudit command: typed records → ``report.jsonl`` (plus
``hits.jsonl``, ``summary.json``) and the requested renderings (HTML, SARIF 2.1.0, JUnit XML).

Every command and the lab call :func:`write_report` (or, for streaming, :class:`FindingsWriter`).
Records are :class:`~leakaudit.findings.Finding` / :class:`~leakaudit.findings.Record` objects or
``(entry_type, dict)`` pairs that the entry type's adapter turns into findings (see
``leakaudit.findings``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leakaudit import registry
from leakaudit.runs.atomic import atomic_open
from leakaudit.findings import Finding, Record, RunContext, clean, to_record

#: Output formats are the ``formats`` entries of :mod:`leakaudit.registry` (jsonl, html, sarif,
#: junit, and any a plugin adds); jsonl is always written (it is the source of the others). A
#: renderer is ``render(report_dir, verdicts) -> Path`` and writes the file its entry produces.
DEFAULT_FORMATS = ("jsonl", "html")


def parse_formats(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"jsonl,html,sarif"`` → a tuple of known formats (jsonl always included)."""
    from leakaudit.errors import InputError

    if value is None:
        return DEFAULT_FORMATS
    items = value.split(",") if isinstance(value, str) else list(value)
    out = ["jsonl"]
    known = registry.names("formats")
    for f in (i.strip().lower() for i in items):
        if not f:
            continue
        if f not in known:
            raise InputError(f"unknown --format {f!r}; choose from {', '.join(known)}")
        if f not in out:
            out.append(f)
    return tuple(out)


def format_files(formats: Iterable[str]) -> tuple[str, ...]:
    """The files ``formats`` write beyond ``report.jsonl`` and ``report.html`` (which every
    command declares already), e.g. ``("report.sarif",)``."""
    return tuple(registry.entry("formats", f).produces for f in formats
                 if f not in DEFAULT_FORMATS)


class FindingsWriter:
    """Writes records to a JSONL file, one per line, in the current schema. Pass it explicitly;
    there is no global handle. The first record should be the ``run`` record: its models'
    fingerprints and seed fill the envelope of findings written as plain dicts."""

    def __init__(self, path: str | Path, *, context: RunContext | None = None):
        self.path = Path(path)
        self._fh = atomic_open(self.path)
        self._file = self._fh.__enter__()
        self.context = context or RunContext()
        self.counts: dict[str, int] = {}
        self.findings: list[Finding] = []

    def write(self, entry_type: str | Finding | Record, record: Any = None) -> Finding | Record:
        if isinstance(entry_type, (Finding, Record)):
            typed = entry_type
        else:
            if entry_type == "run" and isinstance(record, dict):
                self.context = RunContext.from_run(record)
            typed = to_record(entry_type, record, self.context)
        row = typed.to_dict()
        self._file.write(json.dumps(clean(row), ensure_ascii=False) + "\n")
        self.counts[typed.entry_type] = self.counts.get(typed.entry_type, 0) + 1
        if isinstance(typed, Finding):
            self.findings.append(typed)
        return typed

    def close(self) -> None:
        if self._fh is not None:
            self._fh.__exit__(None, None, None)
            self._fh = None

    def __enter__(self) -> "FindingsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is not None and self._fh is not None:
            self._fh.__exit__(*exc)  # discard the partial file
            self._fh = None
            return
        self.close()


@dataclass
class Written:
    """What :func:`write_report` wrote: files by format, and the ``--fail-on`` verdicts."""

    files: dict[str, Path]
    verdicts: list = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        from leakaudit.report.thresholds import exit_code

        return exit_code(self.verdicts)


def write_report(out: str | Path, *, run_record: dict[str, Any],
                 records: Iterable[Finding | Record | tuple[str, dict[str, Any]]],
                 summary: dict[str, Any] | None, formats: Iterable[str] = DEFAULT_FORMATS,
                 fail_on: list[str] | None = None) -> Written:
    """Write ``report.jsonl`` (run, records, summary), ``hits.jsonl`` (verified extraction
    samples, when the run sampled), ``summary.json`` and every requested rendering into ``out``;
    evaluate the ``fail_on`` thresholds on the findings (see ``leakaudit.report.thresholds``)."""
    out = Path(out)
    hits: list[dict[str, Any]] = []
    sampled = False
    with FindingsWriter(out / "report.jsonl") as w:
        w.write("run", run_record)
        for item in records:
            typed = w.write(item) if isinstance(item, (Finding, Record)) else w.write(*item)
            if typed.entry_type == "sample":
                sampled = True
                if typed.data.get("verified"):
                    hits.append(typed.to_dict())
        if summary is not None:
            w.write("summary", summary)
    files = {"jsonl": out / "report.jsonl"}
    if sampled:
        with atomic_open(out / "hits.jsonl") as fh:
            for h in hits:
                fh.write(json.dumps(clean(h), ensure_ascii=False) + "\n")
    if summary is not None:
        with atomic_open(out / "summary.json") as fh:
            fh.write(json.dumps(clean(summary), indent=1, default=str))
    written = render(out, formats, fail_on)
    written.files = {**files, **written.files}
    _record_written(out, [out / "report.jsonl", *written.files.values(),
                          *([out / "hits.jsonl"] if sampled else []),
                          *([out / "summary.json"] if summary is not None else [])])
    return written


def _record_written(out: Path, paths: Iterable[Path]) -> None:
    """Record what :func:`write_report` wrote straight into a folder (a library caller's) as
    leakaudit's, so ``leakaudit report`` may render there again. Into a staging folder nothing
    is recorded: the merge into the output folder records every file it moves."""
    from leakaudit.runs.files import PARTIAL
    from leakaudit.runs.staged import record_owned

    if any(p.name.startswith(PARTIAL) for p in (out.absolute(), *out.absolute().parents)):
        return
    record_owned(out, sorted({Path(p).relative_to(out).as_posix() for p in paths}))


def render(out: str | Path, formats: Iterable[str], fail_on: list[str] | None = None) -> Written:
    """Render the non-JSONL formats from ``out/report.jsonl`` and evaluate ``fail_on``."""
    out = Path(out)
    files: dict[str, Path] = {}
    verdicts = []
    if fail_on:
        from leakaudit.report.reader import load_report
        from leakaudit.report.thresholds import check

        verdicts = check(load_report(out), fail_on)
    for f in formats:
        if f != "jsonl":  # written above, the source of every rendering
            files[f] = registry.load("formats", f)(out, verdicts)
    return Written(files, verdicts)
