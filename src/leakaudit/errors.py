"""Errors that leakaudit raises on bad input.

Every message is one line that names the problem and, where there is one, the file and line
(``path:line: what is wrong``). The CLI prints it as ``error: <message>`` and exits with code 2.
"""

from __future__ import annotations


class LeakauditError(Exception):
    """Base class: a problem the user can fix (bad input, missing file, missing capability)."""


class InputError(LeakauditError):
    """A file or directory given by the user is missing, malformed or empty."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class CapabilityError(LeakauditError):
    """The target model lacks a capability an attack needs (e.g. prompt log-probs, gradients)."""


def read_json_object(path, *, missing: str = "no such file", missing_at=None) -> dict:
    """The JSON object in the file ``path``, or an :class:`InputError` naming the file (and the
    line of a syntax error): ``missing`` when there is no such file (reported at ``missing_at``,
    e.g. the folder that should hold it), "invalid JSON", "not UTF-8 text", or "must hold a JSON
    object"."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise InputError(missing, path=str(missing_at if missing_at is not None else p))
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg}", path=str(p), line=e.lineno) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=str(p)) from None
    if not isinstance(data, dict):
        raise InputError(f"{p.name} must hold a JSON object", path=str(p))
    return data
