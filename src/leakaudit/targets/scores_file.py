"""Precomputed outputs from a file: audit a model the tool cannot run.

Each row is one record with its ground truth ``member`` (1 = in the training set, 0 = not) and
either a membership ``score`` already computed by the user (higher = member) or the model's
output on the record's true ``label``: class ``probs`` or ``logits``.

Formats (chosen by extension):

- ``.csv``: header with ``member`` and ``score``, or ``member``, ``label`` and ``p0..p{C-1}``
  (probabilities) or ``logit0..logit{C-1}``; an optional ``id`` column.
- ``.jsonl``: one object per line: ``{"id": ..., "member": 0|1, "score": x}`` or
  ``{"member": 0|1, "label": y, "probs": [...]}`` / ``"logits": [...]``.
- ``.npy``: a 2-D float array (``allow_pickle=False``): columns ``[member, score]`` or
  ``[member, label, p_0, …, p_{C-1}]``.

A malformed row raises :class:`~leakaudit.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leakaudit.errors import InputError


@dataclass
class PrecomputedOutputs:
    ids: list[str]
    member: np.ndarray  #: int (n,) 0/1
    score: np.ndarray | None = None  #: float (n,), higher = member
    label: np.ndarray | None = None  #: int (n,)
    probs: np.ndarray | None = None  #: float (n, C)
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)


def _integer(v, what, path, line) -> int:
    """An integer given as 1, 1.0 or "1"; 0.5, 1.7 or "x" is an error, never rounded."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    x = _float(v, what, path, line)
    if x != int(x):
        raise InputError(f"{what} must be an integer, got {v!r}", path=path, line=line)
    return int(x)


def _member(v, path, line) -> int:
    try:
        m = _integer(v, "member", path, line)
    except InputError:
        raise InputError(f"member must be 0 or 1, got {v!r}", path=path, line=line) from None
    if m not in (0, 1):
        raise InputError(f"member must be 0 or 1, got {v!r}", path=path, line=line)
    return m


def _float(v, what, path, line) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{what} is not a number: {v!r}", path=path, line=line) from None
    if not math.isfinite(x):
        raise InputError(f"{what} is not finite: {v!r}", path=path, line=line)
    return x


def _row(d: dict, path: str, line: int, n_classes: list) -> tuple:
    if "member" not in d:
        raise InputError("missing field 'member'", path=path, line=line)
    m = _member(d["member"], path, line)
    if d.get("score") not in (None, ""):
        return ("score", m, _float(d["score"], "score", path, line), None, None)
    vec, kind = None, None
    if d.get("probs") is not None:
        vec, kind = d["probs"], "probs"
    elif d.get("logits") is not None:
        vec, kind = d["logits"], "logits"
    if vec is None or d.get("label") in (None, ""):
        raise InputError("each row needs 'score', or 'label' with 'probs' or 'logits'",
                         path=path, line=line)
    if not isinstance(vec, list) or not vec:
        raise InputError(f"{kind} must be a non-empty list of numbers", path=path, line=line)
    v = np.array([_float(x, kind, path, line) for x in vec])
    if n_classes and len(v) != n_classes[0]:
        raise InputError(f"{kind} has {len(v)} classes; earlier rows have {n_classes[0]}",
                         path=path, line=line)
    n_classes[:] = [len(v)]
    label = _integer(d["label"], "label", path, line)
    if not 0 <= label < len(v):
        raise InputError(f"label {label} is outside 0..{len(v) - 1}", path=path, line=line)
    if kind == "logits":
        v = np.exp(v - v.max())
        v /= v.sum()
    elif abs(v.sum() - 1) > 1e-3 or (v < 0).any():
        raise InputError(f"probs must be non-negative and sum to 1 (sum {v.sum():.4f})",
                         path=path, line=line)
    return ("probs", m, None, label, v)


def _read_csv(path, p: str, rows: list, ids: list, n_classes: list) -> None:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        pc = sorted((c for c in cols if c.startswith("p") and c[1:].isdigit()), key=lambda c: int(c[1:]))
        lc = sorted((c for c in cols if c.startswith("logit") and c[5:].isdigit()), key=lambda c: int(c[5:]))
        for line, r in enumerate(reader, start=2):
            d = {"member": r.get("member"), "score": r.get("score"), "label": r.get("label")}
            if pc:
                d["probs"] = [r[c] for c in pc]
            elif lc:
                d["logits"] = [r[c] for c in lc]
            rows.append(_row(d, p, line, n_classes))
            ids.append(str(r.get("id") or len(ids)))


def load_outputs(path: str | Path) -> PrecomputedOutputs:
    """Read a scores/outputs file (see the module docstring)."""
    path = Path(path)
    p = str(path)
    if not path.is_file():
        raise InputError("no such file", path=p)
    rows, ids = [], []
    n_classes: list = []
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise InputError(f"not a plain numeric .npy array ({e})", path=p) from None
        if a.ndim != 2 or a.shape[1] == 3 or a.shape[1] < 2:
            raise InputError(f"expected a 2-D array with columns [member, score] or [member, label, "
                             f"probs...]; got shape {a.shape}", path=p)
        for i, r in enumerate(a):
            d = ({"member": r[0], "score": r[1]} if a.shape[1] == 2
                 else {"member": r[0], "label": r[1], "probs": r[2:].tolist()})
            rows.append(_row(d, p, i + 1, n_classes))  # "line" = row number, 1-based
            ids.append(str(i))
    elif suffix == ".jsonl":
        with open(path, "rb") as fh:
            for line, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    d = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise InputError(f"malformed JSON: {e}", path=p, line=line) from None
                if not isinstance(d, dict):
                    raise InputError("each line must be a JSON object", path=p, line=line)
                rows.append(_row(d, p, line, n_classes))
                ids.append(str(d.get("id", len(ids))))
    elif suffix == ".csv":
        try:
            _read_csv(path, p, rows, ids, n_classes)
        except UnicodeDecodeError:
            raise InputError("not UTF-8 text", path=p) from None
        except csv.Error as e:
            raise InputError(f"malformed CSV: {e}", path=p) from None
    else:
        raise InputError("unknown format: use .csv, .jsonl or .npy", path=p)
    if not rows:
        raise InputError("no rows", path=p)
    kinds = {r[0] for r in rows}
    if len(kinds) > 1:
        raise InputError("mixes rows with 'score' and rows with class outputs; use one kind", path=p)
    member = np.array([r[1] for r in rows], dtype=np.int64)
    if member.min() == member.max():
        raise InputError("needs both members (1) and non-members (0)", path=p)
    if kinds == {"score"}:
        return PrecomputedOutputs(ids, member, score=np.array([r[2] for r in rows]), source=p)
    return PrecomputedOutputs(ids, member, label=np.array([r[3] for r in rows], dtype=np.int64),
                              probs=np.stack([r[4] for r in rows]), source=p)
