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
