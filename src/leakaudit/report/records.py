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

Non-finite numbers: JSON has none, so an infinity is written as the string ``"Infinity"`` or
``"-Infinity"`` (as protobuf's JSON mapping does) and a missing or undefined value (NaN) as
``null``; :func:`read_jsonl` turns the strings back into floats. An unreachable extraction
(``n_for_p = ∞``) therefore never reads as a missing one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
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
               # defenses judged by re-running the attacks: one per variant (lab/defenses.py)
               "defense_comparison",
               # empirical DP audit: one per audit (one-run or multi-run) of a training pipeline
               "dp_audit",
               # endpoint audits: probed capabilities, one per HTTP request, the request
               # summary, attacks skipped for a missing capability, divergence, PII probes
               "capabilities", "api_request", "api_summary", "skipped", "divergence",
               "pii_probe")


#: How infinities are spelled in JSONL (strings: JSON has no infinity).
INF, NEG_INF = "Infinity", "-Infinity"


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: numpy scalars/arrays to Python, ±inf to ``"Infinity"`` /
    ``"-Infinity"``, NaN (missing) to None."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return INF if value > 0 else NEG_INF
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class JsonlWriter:
    """Writes records one per line. Pass it explicitly; there is no global handle."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        from leakaudit.runs.files import file_mode

        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file_mode())
        os.fchmod(fd, file_mode())
        self._fh = os.fdopen(fd, "w", encoding="utf-8")
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


def _restore(value: Any) -> Any:
    """Inverse of :func:`_clean` for infinities."""
    if isinstance(value, str):
        return float("inf") if value == INF else float("-inf") if value == NEG_INF else value
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


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
                rec = _restore(json.loads(raw.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise InputError(f"malformed report line: {e}", path=str(path), line=lineno) from None
            if not isinstance(rec, dict):
                raise InputError(f"a report line must be a JSON object, got {type(rec).__name__}",
                                 path=str(path), line=lineno)
            if not isinstance(rec.get("entry_type", ""), str):
                raise InputError("entry_type must be a string", path=str(path), line=lineno)
            yield rec


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


from leakaudit.runs.staged import staged_output  # noqa: E402,F401  (moved; re-exported)


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    with atomic_open(path) as fh:
        for rec in records:
            fh.write(json.dumps(_clean(rec), ensure_ascii=False) + "\n")
