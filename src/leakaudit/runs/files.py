"""Private by default: everything leakaudit writes is readable by its owner only.

Reports hold memorized training text and PII, canary manifests hold secrets, models hold their
training data: files are created 0600 and folders 0700 unless the user asked to share them
(``leakaudit --share ...``, or :func:`set_share` for library callers), in which case the process
umask decides, as for any other program.

The mechanism is the umask (so files written by other libraries, e.g. ``save_pretrained`` or
``safetensors``, are covered too) plus an explicit mode for files created by :mod:`tempfile`
(which are always 0600, whatever the umask).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PRIVATE_UMASK = 0o077

_share = False
_lock = threading.Lock()

#: Names inside an output folder: leakaudit's bookkeeping folder, staging folders, the run store.
META = ".leakaudit"
PARTIAL = ".leakaudit-partial-"
STORE = "store"


def set_share(flag: bool) -> None:
    """Share outputs (umask decides) instead of writing them private."""
    global _share
    _share = bool(flag)


def sharing() -> bool:
    return _share


def current_umask() -> int:
    with _lock:
        u = os.umask(0)
        os.umask(u)
    return u


def file_mode() -> int:
    """The mode of a new file: 0600, or 0666 less the umask when sharing."""
    return (0o666 & ~current_umask()) if _share else 0o600


def dir_mode() -> int:
    """The mode of a new folder: 0700, or 0777 less the umask when sharing."""
    return (0o777 & ~current_umask()) if _share else 0o700


@contextmanager
def private_umask() -> Iterator[None]:
    """Within the block every file and folder the process creates is private (unless sharing)."""
    if _share:
        yield
        return
    with _lock:
        old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        with _lock:
            os.umask(old)


def apply_modes(path: str | Path) -> None:
    """Give ``path`` (recursively) the modes of new files and folders. Used on a staging folder
    before it is merged: tempfile creates 0700 folders and 0600 files whatever the umask."""
    path = Path(path)
    fm, dm = file_mode(), dir_mode()
    if path.is_symlink():
        return
    if path.is_dir():
        os.chmod(path, dm)
        for root, dirs, files in os.walk(path):
            for d in dirs:
                p = os.path.join(root, d)
                if not os.path.islink(p):
                    os.chmod(p, dm)
            for f in files:
                p = os.path.join(root, f)
                if not os.path.islink(p):
                    os.chmod(p, fm)
    elif path.exists():
        os.chmod(path, fm)


def mkdir_private(path: str | Path) -> Path:
    """``mkdir -p`` whose new folders get :func:`dir_mode`; existing folders keep theirs."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for p in reversed(missing):
        try:
            p.mkdir(mode=dir_mode())
        except FileExistsError:
            pass
        os.chmod(p, dir_mode())  # mkdir's mode is filtered by the umask
    return path


def link_tree(src: str | Path, dst: str | Path) -> Path:
    """Put a copy of ``src`` (a file or folder) at ``dst``: hard links where the file system
    allows (a finished stage of the run store is never modified, so sharing its inodes is safe),
    plain copies otherwise."""
    import shutil

    src, dst = Path(src), Path(dst)

    def one(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    if src.is_dir():
        shutil.copytree(src, dst, copy_function=one, dirs_exist_ok=True)
    else:
        mkdir_private(dst.parent)
        one(str(src), str(dst))
    return dst
