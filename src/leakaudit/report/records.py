"""Typed report records and the JSONL writer.

A report directory holds:

- ``report.jsonl``: one JSON object per line in the findings schema (``leakaudit.findings``):
  ``run`` first, then findings (``sample``, ``eval``, ``canary``, ``pii``, ``memorization``,
  ``exposure``, ``membership``, ``inversion``, … each with the finding envelope), ``summary`` last.
- ``hits.jsonl``: the ``sample`` records whose memorization was verified against the corpus.
- ``report.html``: a self-contained page rendered from ``report.jsonl`` (``leakaudit report DIR``).

Text fields hold PII masked unless the run was made with ``show_pii=True`` (recorded in the run
record as ``config.show_pii``). Every score is oriented "higher = more likely memorized".
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from leakaudit.atomic import atomic_open
from leakaudit.errors import InputError  # noqa: F401
from leakaudit.findings import clean as _clean  # noqa: F401  (kept for callers)
from leakaudit.report.reader import entry_types, load_report, read_jsonl  # noqa: F401  (re-exported)
from leakaudit.report.writer import FindingsWriter
from leakaudit.taxonomy import TAXONOMY, TAXONOMY_NAMES  # noqa: F401  (re-exported)

#: The JSONL writer of every command (see leakaudit.report.writer); the old name stays.
JsonlWriter = FindingsWriter


@contextmanager
def staged_output(out_dir: str | Path) -> Iterator[Path]:
    """Write a run's files into a staging folder and move them into ``out_dir`` only on success.

    On any exception the staging folder is removed, and ``out_dir`` itself too if this run created
    it, so a failed run leaves nothing half-written.
    """
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".leakaudit-partial-", dir=out_dir))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    for item in sorted(stage.iterdir()):
        dest = out_dir / item.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists():
            dest.unlink()
        os.replace(item, dest)
    stage.rmdir()


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    with atomic_open(path) as fh:
        for rec in records:
            fh.write(json.dumps(_clean(rec), ensure_ascii=False) + "\n")
