"""Atomic file writes: a reader never sees a half-written file.

Files are private (0600) unless sharing was asked for (:mod:`leakaudit.runs.files`).
Content goes to a temporary file in the destination's folder and is moved into place with
:func:`os.replace` only when it is complete; on any error the temporary file is removed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_open(path: str | Path, *, binary: bool = False) -> Iterator[IO]:
    """``with atomic_open(path) as fh: fh.write(...)``: the file appears whole or not at all."""
    path = Path(path)
    from leakaudit.runs.files import file_mode, mkdir_private

    mkdir_private(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, file_mode())  # mkstemp makes 0600; with --share the umask decides
    try:
        if binary:
            fh = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)
