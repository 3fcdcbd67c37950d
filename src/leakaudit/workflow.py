"""Deprecated home of the audit glue; it lives in ``leakaudit.audits`` now (one module per audit)
and every report is written by ``leakaudit.report.writer.write_report``. Kept as re-exports so
open branches keep importing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leakaudit.audits.exposure import exposure_records  # noqa: F401
from leakaudit.audits.extraction import Pairs, extraction_records  # noqa: F401
from leakaudit.audits.memorization import memorization_records  # noqa: F401


def write_extraction_report(out: Path, *, run_record: dict[str, Any], extra_records=(),
                            summary_extra: dict[str, Any] | None = None,
                            formats=("jsonl",), **kwargs) -> dict[str, Any]:
    """Deprecated: :func:`leakaudit.audits.extraction.extraction_records` and then
    :func:`leakaudit.report.writer.write_report` (the one writer)."""
    from leakaudit.report.writer import write_report

    pairs, summary = extraction_records(**kwargs)
    summary.update(summary_extra or {})
    write_report(out, run_record=run_record, records=pairs + list(extra_records), summary=summary,
                 formats=formats)
    return summary


def write_records_report(out: Path, *, run_record: dict[str, Any],
                         records: list[tuple[str, dict[str, Any]]],
                         summary: dict[str, Any]) -> None:
    """Deprecated: use :func:`leakaudit.report.writer.write_report` (the one writer)."""
    from leakaudit.report.writer import write_report

    write_report(out, run_record=run_record, records=records, summary=summary, formats=("jsonl",))
