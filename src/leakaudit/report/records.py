"""Typed report records and the JSONL writer.

A report directory holds:

- ``report.jsonl``: one JSON object per line, each with an ``entry_type``:
  ``run`` (first line: versions, command, config, seeds, models), ``sample`` (one per generated
  sample), ``eval`` (one per (sampler, ranking) precision measurement), ``canary`` (lab only: one
  per inserted canary), ``pii`` (counts of PII kinds found in verified hits), ``summary`` (last line).
- ``hits.jsonl``: the ``sample`` records whose memorization was verified against the corpus.
- ``report.html``: a self-contained page rendered from ``report.jsonl`` (``leakaudit report DIR``).

Text fields hold PII masked unless the run was made with ``show_pii=True`` (recorded in the run
record as ``config.show_pii``). Every score is oriented "higher = more likely memorized".
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from leakaudit.atomic import atomic_open
from leakaudit.errors import InputError

#: Taxonomy tags carried by every finding of each attack family.
TAXONOMY: dict[str, list[str]] = {
    "extraction": ["owasp:LLM02:2025", "atlas:AML.T0057"],
    "membership": ["owasp:LLM02:2025", "atlas:AML.T0024.000"],
    "inversion": ["owasp:LLM02:2025", "atlas:AML.T0024.001"],
}

TAXONOMY_NAMES: dict[str, str] = {
    "owasp:LLM02:2025": "OWASP LLM02:2025 Sensitive Information Disclosure",
    "atlas:AML.T0057": "MITRE ATLAS AML.T0057 LLM Data Leakage",
    "atlas:AML.T0024.000": "MITRE ATLAS AML.T0024.000 Infer Training Data Membership",
    "atlas:AML.T0024.001": "MITRE ATLAS AML.T0024.001 Invert AI Model",
}

ENTRY_TYPES = ("run", "sample", "eval", "canary", "pii", "summary",
               # memorization and canary exposure
               "memorization", "exposure",
               # membership inference: one per (attack, target) evaluation; one per exposed record
               "membership", "membership_record",
               # model inversion: one per (attack, target, defense) evaluation; one per class image
               "inversion", "inversion_record", "attribute_inference",
               # endpoint audits: probed capabilities, one per HTTP request, the request
               # summary, attacks skipped for a missing capability, divergence, PII probes
               "capabilities", "api_request", "api_summary", "skipped", "divergence",
               "pii_probe")


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: numpy scalars/arrays to Python, non-finite floats to None."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class JsonlWriter:
    """Writes records one per line. Pass it explicitly; there is no global handle."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fh = open(self.path, "w", encoding="utf-8")
        self.counts: dict[str, int] = {}

    def write(self, entry_type: str, record: dict[str, Any]) -> None:
        if entry_type not in ENTRY_TYPES:
            raise ValueError(f"unknown entry_type {entry_type!r}; expected one of {ENTRY_TYPES}")
        row = {"entry_type": entry_type, **_clean(record)}
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.counts[entry_type] = self.counts.get(entry_type, 0) + 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSONL file; a malformed line raises InputError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=str(path))
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise InputError(f"malformed report line: {e}", path=str(path), line=lineno) from None


def load_report(directory: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Group the records of ``DIR/report.jsonl`` by entry_type."""
    directory = Path(directory)
    path = directory / "report.jsonl"
    if not path.is_file():
        raise InputError("no report.jsonl in this directory (is it a leakaudit output folder?)",
                         path=str(directory))
    grouped: dict[str, list[dict[str, Any]]] = {t: [] for t in ENTRY_TYPES}
    for rec in read_jsonl(path):
        grouped.setdefault(rec.get("entry_type", "unknown"), []).append(rec)
    if not grouped["run"]:
        raise InputError("report.jsonl has no run record", path=str(path))
    return grouped


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
