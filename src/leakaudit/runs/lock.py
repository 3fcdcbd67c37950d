"""One run at a time per output folder.

Every writer of an output folder holds ``OUT/.leakaudit/lock`` for the whole run: an exclusive
``fcntl.flock`` (so two processes can never both pass the check), and in the file the holder's
pid, command line and start time (so the second run can say who holds it). A second run into a
busy folder fails at once: ``error: OUT: in use by another leakaudit run (pid …, started …: …)``.

The kernel releases a ``flock`` when its process dies, so a lock left by a crash (``kill -9``,
power loss) is free: the next run takes it over and logs whose it was. The file itself is never
deleted while held (deleting a lock file lets two processes lock two different files); a run
empties it when it ends.

Holding is re-entrant within one process (the audit driver and the staged output it uses take
the same lock). A folder that the lock itself had to create is removed again when the lock is
released and nothing else was written there.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from leakaudit.errors import InputError
from leakaudit.runs.files import META, mkdir_private, private_umask

LOCK = "lock"


@dataclass
class _Held:
    fd: int
    count: int
    created_out: bool
    created_meta: bool


_held: dict[Path, _Held] = {}
_mutex = threading.RLock()


def lock_path(out: str | Path) -> Path:
    return Path(out) / META / LOCK


def _key(out: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(out))))


def _holder_text(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 65536).decode("utf-8", "replace")
    except OSError:
        return ""
    return raw


def describe_holder(raw: str) -> str:
    """``pid 123, started 2026-…: leakaudit extract …`` from the lock file's text (what is
    known of it; an unreadable record is "an unknown process")."""
    try:
        rec = json.loads(raw)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        return "an unknown process"
    parts = [f"pid {rec.get('pid', '?')}"]
    if rec.get("started"):
        parts.append(f"started {rec['started']}")
    text = ", ".join(parts)
    if rec.get("command"):
        text += f": {rec['command']}"
    return text


def _record() -> str:
    cmd = "leakaudit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else "python"
    return json.dumps({"pid": os.getpid(), "command": cmd[:500],
                       "started": datetime.now(UTC).isoformat(timespec="seconds")}) + "\n"


def acquire(out: str | Path, log=None) -> None:
    """Hold the lock of ``out`` (creating ``out`` if needed); re-entrant within this process.
    Raises :class:`InputError` naming the holder when another process holds it."""
    key = _key(out)
    with _mutex:
        h = _held.get(key)
        if h is not None:
            h.count += 1
            return
        created_out = not key.exists()
        created_meta = not (key / META).exists()
        with private_umask():
            try:
                mkdir_private(key / META)
                fd = os.open(lock_path(key), os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as e:
                raise InputError(f"cannot create the output folder's lock: {e.strerror}",
                                 path=str(out)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raw = _holder_text(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InputError(f"in use by another leakaudit run ({describe_holder(raw)}); wait "
                                 "for it to finish or choose another --out", path=str(out)) from None
            raise InputError(f"cannot lock the output folder: {e.strerror}", path=str(out)) from None
        stale = _holder_text(fd).strip()
        if stale and log is not None:
            log(f"took over the lock of {out} from a run that ended without releasing it "
                f"({describe_holder(stale)}; that process no longer runs)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, _record().encode("utf-8"), 0)
        _held[key] = _Held(fd, 1, created_out, created_meta)


def release(out: str | Path) -> None:
    """Release one hold of ``out``'s lock; the last one empties the lock file, unlocks it, and
    removes what the lock alone had created."""
    key = _key(out)
    with _mutex:
        h = _held.get(key)
        if h is None:
            return
        h.count -= 1
        if h.count > 0:
            return
        del _held[key]
        try:
            os.ftruncate(h.fd, 0)
        except OSError:  # pragma: no cover  (the folder was removed under us)
            pass
        if h.created_out and _only_lock_inside(key):
            shutil.rmtree(key, ignore_errors=True)
        elif h.created_meta and _only_lock_inside(key / META, top=False):
            shutil.rmtree(key / META, ignore_errors=True)
        fcntl.flock(h.fd, fcntl.LOCK_UN)
        os.close(h.fd)


def _only_lock_inside(folder: Path, top: bool = True) -> bool:
    try:
        names = {p.name for p in folder.iterdir()}
        if top:
            return names <= {META} and {p.name for p in (folder / META).iterdir()} <= {LOCK}
        return names <= {LOCK}
    except OSError:
        return False


def created_by_lock(out: str | Path) -> tuple[bool, bool] | None:
    """``(created_out, created_meta)`` of a lock held by this process, else ``None``."""
    h = _held.get(_key(out))
    return None if h is None else (h.created_out, h.created_meta)


def held(out: str | Path) -> bool:
    return _key(out) in _held


@contextmanager
def output_lock(out: str | Path, log=None) -> Iterator[None]:
    """Hold ``out``'s lock for the ``with`` block (see :func:`acquire`)."""
    acquire(out, log=log)
    try:
        yield
    finally:
        release(out)
