"""Reading report folders: ``report.jsonl`` lines, grouped by entry type and migrated to the
current findings schema on load (``leakaudit.findings.upgrade``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from leakaudit.errors import InputError
from leakaudit.findings import ENTRY_TYPES, SchemaVersionError, restore, upgrade


def entry_types() -> list[str]:
    """Names of the registered entry types (the registry is open: leakaudit.findings)."""
    return ENTRY_TYPES.names()


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
                rec = restore(json.loads(raw.decode("utf-8")))
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
    grouped: dict[str, list[dict[str, Any]]] = {t: [] for t in entry_types()}
    try:
        records = upgrade(list(read_jsonl(path)))
    except (SchemaVersionError, InputError) as e:
        if getattr(e, "path", None) is not None:
            raise
        raise InputError(str(e), path=str(path)) from None
    for rec in records:
        grouped.setdefault(rec.get("entry_type", "unknown"), []).append(rec)
    if not grouped["run"]:
        raise InputError("report.jsonl has no run record", path=str(path))
    return grouped
