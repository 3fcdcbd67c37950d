"""Typed report records and the JSONL writer.

A report directory holds:

- ``report.jsonl``: one JSON object per line in the findings schema (``leakaudit.findings``):
  ``run`` first, then findings (``sample``, ``eval``, ``canary``, ``pii``, ``memorization``,
  ``exposure``, ``membership``, ``inversion``, … each with the finding envelope), ``summary`` last.
- ``hits.jsonl``: the ``sample`` records whose memorization was verified against the corpus.
- ``report.html``: a self-contained page rendered from ``report.jsonl`` (``leakaudit report DIR``).

Text fields hold PII masked unless the run was made with ``show_pii=True`` (recorded in the run
record as ``config.show_pii``). Every score is oriented "higher = more likely memorized".

Non-finite numbers: JSON has none, so an infinity is written as the string ``"Infinity"`` or
``"-Infinity"`` (as protobuf's JSON mapping does) and a missing or undefined value (NaN) as
``null``; :func:`read_jsonl` turns the strings back into floats. An unreachable extraction
(``n_for_p = ∞``) therefore never reads as a missing one.

This module re-exports the pieces that used to live here: the writer (``leakaudit.report.writer``),
the reader (``leakaudit.report.reader``), the taxonomy (``leakaudit.taxonomy``) and the staged
output (``leakaudit.runs.staged``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from leakaudit.runs.atomic import atomic_open
from leakaudit.findings import INF, NEG_INF  # noqa: F401  (re-exported)
from leakaudit.findings import clean as _clean  # noqa: F401  (kept for callers)
from leakaudit.report.reader import entry_types, load_report, read_jsonl  # noqa: F401  (re-exported)
from leakaudit.report.writer import FindingsWriter
from leakaudit.runs.staged import staged_output  # noqa: F401  (moved; re-exported)
from leakaudit.taxonomy import TAXONOMY, TAXONOMY_NAMES  # noqa: F401  (re-exported)

#: The JSONL writer of every command (see leakaudit.report.writer); the old name stays.
JsonlWriter = FindingsWriter


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    with atomic_open(path) as fh:
        for rec in records:
            fh.write(json.dumps(_clean(rec), ensure_ascii=False) + "\n")
