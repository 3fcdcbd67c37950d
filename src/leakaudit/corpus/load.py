"""Load a training corpus as the auditor has it: JSONL, JSON, plain text, Parquet or a folder.

Every loader reads bytes and decodes them line by line, so a problem is reported with the exact
file and line (``path:line: message``, see :class:`~leakaudit.errors.InputError`):

- ``.jsonl`` / ``.json``: one JSON object per line, the text under ``text_field``. Blank lines are
  skipped. A ``.json`` file whose first non-blank character is ``[`` is read as one JSON array
  of objects instead.
- ``.txt``: one document per non-blank line.
- ``.parquet``: the column ``text_field`` (and ``id_field`` when the file has it).
- a directory: every ``*.txt`` file below it (recursively) is one document, and every ``*.jsonl``
  and ``*.parquet`` file below it is loaded as above; files are visited in sorted path order and
  hidden files and folders (name starting with ``.``) are ignored.

Documents whose text is empty or only whitespace are skipped; a corpus left with no documents at
all is an error. A document's id is its ``id_field`` value (stringified) when the record has one,
otherwise ``"<file>:<line>"`` (``"<file>:<row>"`` for Parquet, the path relative to the folder
for a whole ``.txt`` file).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leakaudit.runs.atomic import atomic_open
from leakaudit.errors import InputError

__all__ = ["Document", "load_corpus", "save_jsonl", "SUPPORTED_SUFFIXES"]

#: File suffixes :func:`load_corpus` accepts (besides a directory).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".txt", ".parquet")

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Document:
    """One training document.

    ``source`` is the file it came from; ``line`` the 1-based line number within that file for
    line-oriented formats (JSONL, line-per-document text), ``None`` for whole-file text documents
    and Parquet rows.
    """

    id: str
    text: str
    source: str
    line: int | None


def load_corpus(
    path: str | Path, *, text_field: str = "text", id_field: str | None = "id"
) -> list[Document]:
    """Load every document under ``path`` (a file or a directory); see the module docstring.

    Raises :class:`~leakaudit.errors.InputError` for a missing path, an unsupported format, a
    malformed record (with its line number), bytes that are not UTF-8, or an empty corpus.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or directory", path=str(path))
    if p.is_dir():
        docs = list(_load_dir(p, text_field=text_field, id_field=id_field))
        if not docs:
            raise InputError(
                "corpus is empty: no documents with text "
                "(looked for .txt, .jsonl and .parquet files)",
                path=str(path),
            )
        return docs
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"unsupported corpus format {p.suffix or '(no suffix)'!r}; supported: "
            f"{', '.join(SUPPORTED_SUFFIXES)} files, or a directory of .txt/.jsonl/.parquet files",
            path=str(path),
        )
    docs = list(_load_file(p, p.name, text_field=text_field, id_field=id_field))
    if not docs:
        raise InputError("corpus is empty: no documents with text", path=str(path))
    return docs


def save_jsonl(docs: Iterable[Document], path: str | Path) -> Path:
    """Write ``docs`` as JSONL (``{"id", "text"}`` per line), atomically; returns the path.

    The file is written to a temporary file in the same folder and moved into place with
    :func:`os.replace`, so readers never see a half-written corpus.
    """
    out = Path(path)
    with atomic_open(out) as fh:
        for d in docs:
            fh.write(json.dumps({"id": d.id, "text": d.text}, ensure_ascii=False))
            fh.write("\n")
    return out


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------


def _load_file(p: Path, label: str, *, text_field: str, id_field: str | None) -> Iterator[Document]:
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        yield from _load_jsonl(p, label, text_field=text_field, id_field=id_field)
    elif suffix == ".json":
        if _starts_with_bracket(p):
            yield from _load_json_array(p, label, text_field=text_field, id_field=id_field)
        else:
            yield from _load_jsonl(p, label, text_field=text_field, id_field=id_field)
    elif suffix == ".txt":
        yield from _load_txt_lines(p, label)
    elif suffix == ".parquet":
        yield from _load_parquet(p, label, text_field=text_field, id_field=id_field)
    else:  # pragma: no cover - callers check the suffix first
        raise AssertionError(suffix)


def _load_dir(root: Path, *, text_field: str, id_field: str | None) -> Iterator[Document]:
    files = sorted(
        f
        for f in root.rglob("*")
        if f.is_file()
        and f.suffix.lower() in (".txt", ".jsonl", ".parquet")
        and not any(part.startswith(".") for part in f.relative_to(root).parts)
    )
    for f in files:
        rel = f.relative_to(root).as_posix()
        if f.suffix.lower() == ".txt":
            text = _decode_whole(f.read_bytes(), f)
            if text.strip():
                yield Document(id=rel, text=text, source=str(f), line=None)
        else:
            yield from _load_file(f, rel, text_field=text_field, id_field=id_field)


def _load_jsonl(
    p: Path, label: str, *, text_field: str, id_field: str | None
) -> Iterator[Document]:
    with p.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = _decode_line(raw, p, lineno)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(
                    f"malformed JSON: {e.msg} (column {e.colno})", path=str(p), line=lineno
                ) from None
            doc = _record_to_doc(obj, p, label, lineno, text_field=text_field, id_field=id_field)
            if doc is not None:
                yield doc


def _load_json_array(
    p: Path, label: str, *, text_field: str, id_field: str | None
) -> Iterator[Document]:
    raw = p.read_bytes()
    text = _decode_whole(raw, p)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"malformed JSON: {e.msg} (column {e.colno})", path=str(p), line=e.lineno
        ) from None
    if not isinstance(data, list):
        raise InputError(
            "expected a JSON array of objects or one JSON object per line", path=str(p)
        )
    for i, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            raise InputError(f"item {i} of the JSON array is {_json_type(obj)}, expected an object",
                             path=str(p))
        if not isinstance(obj.get(text_field), str):
            raise InputError(_field_problem(obj, text_field) + f" (item {i} of the JSON array)",
                             path=str(p))
        doc = _record_to_doc(obj, p, label, i, text_field=text_field, id_field=id_field)
        if doc is not None:
            yield Document(id=doc.id, text=doc.text, source=doc.source, line=None)


def _load_txt_lines(p: Path, label: str) -> Iterator[Document]:
    with p.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = _decode_line(raw, p, lineno).rstrip("\r\n")
            if text.strip():
                yield Document(id=f"{label}:{lineno}", text=text, source=str(p), line=lineno)


def _load_parquet(
    p: Path, label: str, *, text_field: str, id_field: str | None
) -> Iterator[Document]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", path=str(p)) from None
    schema = pf.schema_arrow
    names = list(schema.names)
    if text_field not in names:
        raise InputError(
            f"no column {text_field!r} (columns: {', '.join(names) or 'none'})", path=str(p)
        )
    ttype = schema.field(text_field).type
    if not (pa.types.is_string(ttype) or pa.types.is_large_string(ttype)
            or getattr(pa.types, "is_string_view", lambda _t: False)(ttype)):
        raise InputError(f"column {text_field!r} has type {ttype}, expected strings", path=str(p))
    use_id = id_field is not None and id_field in names and id_field != text_field
    columns = [text_field] + ([id_field] if use_id else [])
    row = 0
    try:
        for batch in pf.iter_batches(columns=columns):
            texts = batch.column(0).to_pylist()
            ids = batch.column(1).to_pylist() if use_id else [None] * len(texts)
            for text, doc_id in zip(texts, ids):
                row += 1
                if text is None or not text.strip():
                    continue
                did = _stringify_id(doc_id) if doc_id is not None else f"{label}:{row}"
                yield Document(id=did, text=text, source=str(p), line=None)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", path=str(p)) from None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _record_to_doc(
    obj: Any, p: Path, label: str, lineno: int, *, text_field: str, id_field: str | None
) -> Document | None:
    """The document of one JSON record, ``None`` when its text is blank."""
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {_json_type(obj)}", path=str(p), line=lineno)
    text = obj.get(text_field)
    if not isinstance(text, str):
        raise InputError(_field_problem(obj, text_field), path=str(p), line=lineno)
    if not text.strip():
        return None
    raw_id = obj.get(id_field) if id_field is not None else None
    doc_id = _stringify_id(raw_id) if raw_id is not None else f"{label}:{lineno}"
    return Document(id=doc_id, text=text, source=str(p), line=lineno)


def _field_problem(obj: dict[str, Any], field: str) -> str:
    if field not in obj:
        fields = ", ".join(repr(k) for k in list(obj)[:10]) or "none"
        return f"no field {field!r} holding the text (fields: {fields})"
    return f"field {field!r} is {_json_type(obj[field])}, expected a string"


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _stringify_id(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)


def _decode_line(raw: bytes, p: Path, lineno: int) -> str:
    if lineno == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"not valid UTF-8 (byte 0x{raw[e.start]:02X} at column {e.start + 1})",
            path=str(p), line=lineno,
        ) from None


def _decode_whole(raw: bytes, p: Path) -> str:
    """Decode a whole file; a bad byte is reported with its line and column."""
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = raw.rfind(b"\n", 0, e.start) + 1
        lineno = raw.count(b"\n", 0, e.start) + 1
        raise InputError(
            f"not valid UTF-8 (byte 0x{raw[e.start]:02X} at column {e.start - line_start + 1})",
            path=str(p), line=lineno,
        ) from None


def _starts_with_bracket(p: Path) -> bool:
    """Whether the first non-blank character of the file (after a BOM) is ``[``."""
    with p.open("rb") as fh:
        chunk = fh.read(4096)
        if chunk.startswith(_BOM):
            chunk = chunk[len(_BOM):]
        while chunk:
            stripped = chunk.lstrip(b" \t\r\n")
            if stripped:
                return stripped.startswith(b"[")
            chunk = fh.read(4096)
    return False
