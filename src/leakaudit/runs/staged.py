"""A staged output that never loses data.

A run writes into a hidden staging folder inside ``--out`` and the result is merged into ``--out``
only when the run succeeded. The merge moves *files*, one at a time: a folder of the same name
(``models/``, ``shadows/``) is merged into, never deleted, so the user's own files in it stay. A
file that already exists is replaced only if leakaudit wrote it (it is listed in
``OUT/.leakaudit/owned.json``) or ``--overwrite`` was given; otherwise the run fails, naming the
file, before anything is moved. The same check runs before any work for the names a command
knows it will write (:func:`check_output_location`), so a conflict costs nothing.

A staging folder left behind by a process that was killed (``kill -9``, power loss) is removed by
the next run into the same folder; the run store (``OUT/.leakaudit/store``) keeps what that
process had finished, so nothing is lost.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from leakaudit.errors import InputError
from leakaudit.runs.files import apply_modes, mkdir_private, private_umask

from leakaudit.runs.files import META, PARTIAL, STORE  # noqa: E402,F401  (bookkeeping names)

_overwrite = False

#: what the report-writing commands put into --out (checked before any work)
REPORT_OUTPUTS = ("report.jsonl", "summary.json", "report.html")
EXTRACT_OUTPUTS = REPORT_OUTPUTS + ("hits.jsonl",)


def set_overwrite(flag: bool) -> None:
    """Allow runs to replace files in their output folder that leakaudit did not write."""
    global _overwrite
    _overwrite = bool(flag)


def overwriting() -> bool:
    return _overwrite


def _owned_path(out: Path) -> Path:
    return out / META / "owned.json"


#: files SQLite makes beside a database and removes or keeps as it checkpoints: they belong to
#: the database file, whenever they appear (a WAL can outlive the ownership record's writing)
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def owned_files(out: str | Path) -> set[str]:
    """Paths (relative, POSIX) that leakaudit wrote into ``out``, with the SQLite companion
    files of every database among them."""
    p = _owned_path(Path(out))
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        files = {str(x) for x in data.get("files", [])}
    except (OSError, ValueError, AttributeError):
        return set()
    return files | {f + c for f in files if f.endswith(".sqlite") for c in SQLITE_COMPANIONS}


def record_owned(out: str | Path, rels: Iterable[str]) -> None:
    """Add ``rels`` (relative paths) to the files leakaudit wrote into ``out``."""
    _record_owned(Path(out), rels)


def _record_owned(out: Path, rels: Iterable[str]) -> None:
    from leakaudit.runs.atomic import atomic_write_text

    owned = owned_files(out) | set(rels)
    mkdir_private(out / META)
    atomic_write_text(_owned_path(out), json.dumps({"files": sorted(owned)}, indent=0) + "\n")


def _resolved(p: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(p))))


def check_output_location(out: str | Path, *, produces: Iterable[str] = (),
                          inputs: Iterable[str | Path | None] = (),
                          overwrite: bool | None = None) -> Path:
    """Fail now, before any work, if ``out`` cannot receive this run's files.

    ``out`` must be a folder (or not exist yet) that can be created and written; none of
    ``produces`` (relative paths the run writes) may be a foreign file unless ``overwrite``; no
    input file may be among the outputs (inputs are never outputs, even with ``--overwrite``).
    """
    overwrite = _overwrite if overwrite is None else overwrite
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("--out is a file, not a folder", path=str(out))
    # the nearest existing ancestor must be a writable folder
    p = _resolved(out)
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise InputError(f"cannot create the output folder: {p} is a file", path=str(out))
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError("output folder is not writable" if p == _resolved(out) else
                         f"cannot create the output folder: {p} is not writable", path=str(out))
    outputs = {_resolved(out / rel) for rel in produces}
    for inp in inputs:
        if inp is None:
            continue
        r = _resolved(inp)
        if r in outputs or any(o in r.parents for o in outputs if o.is_dir()) or \
                (r.is_dir() and any(r in o.parents for o in outputs)):
            raise InputError(f"this run would overwrite its own input; choose another --out than "
                             f"{out}", path=str(inp))
    if out.is_dir():
        owned = owned_files(out)
        for rel in produces:
            dest = out / rel
            if dest.is_dir() and not dest.is_symlink():
                continue  # merged into, file by file, at the end
            if (dest.exists() or dest.is_symlink()) and rel not in owned and not overwrite:
                raise InputError("exists and was not written by leakaudit; give --overwrite to "
                                 "replace it, or another --out", path=str(dest))
    return out


def check_output_file(path: str | Path, option: str) -> Path:
    """Fail now, before any work, if the single file ``path`` (given with ``option``) cannot be
    written: it is a folder, or its folder cannot be created (a file on the way) or written."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} is a folder, not a file", path=str(path))
    p = _resolved(path).parent
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise InputError(f"cannot write {option}: {p} is a file, not a folder", path=str(path))
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {option}: {p} is not writable", path=str(path))
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(out: Path, log=None) -> list[Path]:
    """Remove staging folders of processes that no longer run (``.leakaudit-partial-<pid>-*``)."""
    removed = []
    for p in out.glob(PARTIAL + "*"):
        rest = p.name[len(PARTIAL):]
        pid_s = rest.split("-", 1)[0]
        if pid_s.isdigit() and _pid_alive(int(pid_s)) and int(pid_s) != os.getpid():
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
        if log is not None:
            log(f"removed the partial output of an interrupted run: {p}")
    return removed


def _walk_files(root: Path) -> list[str]:
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            rels.append(Path(os.path.relpath(os.path.join(dirpath, f), root)).as_posix())
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                rels.append(Path(os.path.relpath(full, root)).as_posix())
    return rels


def merge_stage(stage: Path, out: Path, *, overwrite: bool | None = None) -> list[str]:
    """Move every file of ``stage`` into ``out`` (same relative path). Checks first, moves second:
    a conflict (a foreign file, or a file where a folder goes) raises before anything moves."""
    overwrite = _overwrite if overwrite is None else overwrite
    owned = owned_files(out)
    rels = _walk_files(stage)
    for rel in rels:
        dest = out / rel
        for parent in list(Path(rel).parents)[:-1]:
            q = out / parent
            if (q.exists() or q.is_symlink()) and not (q.is_dir() and not q.is_symlink()):
                raise InputError(f"is not a folder, but this run writes {rel}; remove it or choose "
                                 "another --out", path=str(q))
        if dest.is_dir() and not dest.is_symlink():
            raise InputError(f"is a folder, but this run writes a file there; choose another "
                             f"--out", path=str(dest))
        if (dest.exists() or dest.is_symlink()) and rel not in owned and not overwrite:
            raise InputError("exists and was not written by leakaudit; give --overwrite to "
                             "replace it, or another --out", path=str(dest))
    for rel in rels:
        src, dest = stage / rel, out / rel
        mkdir_private(dest.parent)
        os.replace(src, dest)
    _record_owned(out, rels)
    return rels


@contextmanager
def staged_output(out_dir: str | Path, *, produces: Iterable[str] = (),
                  inputs: Iterable[str | Path | None] = (), overwrite: bool | None = None,
                  log=None) -> Iterator[Path]:
    """Write a run's files into a staging folder and merge them into ``out_dir`` on success.

    On any exception the staging folder is removed; ``out_dir`` too if this run created it and
    it holds nothing worth keeping (a run store with finished stages is kept, so a rerun resumes).
    """
    from leakaudit.runs.lock import created_by_lock, output_lock

    out_dir = Path(out_dir)
    produces = tuple(produces)
    inputs = tuple(inputs)
    check_output_location(out_dir, produces=produces, inputs=inputs, overwrite=overwrite)
    with output_lock(out_dir, log=log), private_umask():
        created, meta_created = created_by_lock(out_dir)
        # checked again under the lock: another run may have written here meanwhile
        check_output_location(out_dir, produces=produces, inputs=inputs, overwrite=overwrite)
        remove_stale_partials(out_dir, log=log)
        stage = Path(tempfile.mkdtemp(prefix=f"{PARTIAL}{os.getpid()}-", dir=out_dir))
        try:
            yield stage
            apply_modes(stage)
            merge_stage(stage, out_dir, overwrite=overwrite)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            if created:
                _remove_created(out_dir)
            elif meta_created and not _has_finished_stages(out_dir):
                shutil.rmtree(out_dir / META, ignore_errors=True)
            raise
        shutil.rmtree(stage, ignore_errors=True)


def _has_finished_stages(out_dir: Path) -> bool:
    store = out_dir / META / STORE
    return store.is_dir() and any(p.is_dir() and not p.name.startswith(".") and any(p.iterdir())
                                  for p in store.iterdir())


def _remove_created(out_dir: Path) -> None:
    keep = _has_finished_stages(out_dir)
    if not keep:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for p in out_dir.iterdir():  # keep only the run store (finished stages resume)
        if p.name == META:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                p.unlink()
            except OSError as e:  # pragma: no cover
                if e.errno != errno.ENOENT:
                    raise


@contextmanager
def owned_output(out: str | Path, *, produces: Iterable[str], inputs: Iterable[str | Path | None] = (),
                 overwrite: bool | None = None, log=None) -> Iterator[Path]:
    """For a writer that writes into ``out`` directly (not through a staging folder): hold the
    folder's lock, refuse a foreign file among ``produces`` (before and under the lock), and
    record every one of ``produces`` that exists at the end (success or failure) as written by
    leakaudit, so a rerun may replace it and nothing else."""
    from leakaudit.runs.lock import output_lock

    out = Path(out)
    produces = tuple(produces)
    inputs = tuple(inputs)
    check_output_location(out, produces=produces, inputs=inputs, overwrite=overwrite)
    with output_lock(out, log=log):
        check_output_location(out, produces=produces, inputs=inputs, overwrite=overwrite)
        try:
            yield out
        finally:
            made = [rel for rel in produces if (out / rel).exists()]
            if made:
                _record_owned(out, made)
