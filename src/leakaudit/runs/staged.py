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

A single named file (``triage --json FILE``, ``endpoint export-gguf MODEL OUT.gguf``) is written
with :func:`owned_file`: atomically, recorded in ``FOLDER/.leakaudit/owned.json`` of the folder it
is in (the same record), and never over a file that record does not list unless ``--overwrite``.
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
    """Read, extend and rewrite the record under an exclusive ``flock`` of the ``.leakaudit``
    folder itself: writers that do not hold the output folder's lock (a single-file output
    beside a running audit) never drop each other's entries."""
    import fcntl

    from leakaudit.runs.atomic import atomic_write_text

    rels = set(rels)
    mkdir_private(out / META)
    fd = os.open(out / META, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        owned = owned_files(out) | rels
        atomic_write_text(_owned_path(out), json.dumps({"files": sorted(owned)}, indent=0) + "\n")
    finally:
        os.close(fd)  # releases the flock


def _resolved(p: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(p))))


def _foreign_in_folder(out: Path, rel: str, owned: set[str]) -> str | None:
    """The first thing at ``out/rel`` (a folder the run writes in place) that leakaudit did not
    write, as a relative path; None when there is nothing there or all of it is leakaudit's."""
    dest = out / rel
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        return None if rel in owned else rel
    if dest.is_dir():
        for f in _walk_files(dest):
            r = f"{rel}/{f}"
            if r not in owned:
                return r
    return None


def folder_files(out: str | Path, folders: Iterable[str]) -> list[str]:
    """Every file (relative to ``out``) under the folders ``folders`` of ``out`` that exist."""
    out = Path(out)
    return [f"{rel}/{f}" for rel in folders if (out / rel).is_dir() and not (out / rel).is_symlink()
            for f in _walk_files(out / rel)]


def check_output_location(out: str | Path, *, produces: Iterable[str] = (),
                          inputs: Iterable[str | Path | None] = (),
                          overwrite: bool | None = None, folders: Iterable[str] = (),
                          option: str = "--out") -> Path:
    """Fail now, before any work, if ``out`` cannot receive this run's files.

    ``out`` must be a folder (or not exist yet) that can be created and written; none of
    ``produces`` (relative paths the run writes) may be a foreign file unless ``overwrite``; no
    input file may be among the outputs (inputs are never outputs, even with ``--overwrite``).
    ``folders`` are sub-folders the run writes (and may replace) whole, e.g. one model folder
    per method: one that holds anything leakaudit did not write is refused unless ``overwrite``.
    ``option`` names what to choose instead in the refusal (``--out``, or ``folder``).
    """
    overwrite = _overwrite if overwrite is None else overwrite
    out = Path(out)
    produces, folders = tuple(produces), tuple(folders)
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
    outputs = {_resolved(out / rel) for rel in (*produces, *folders)}
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
                raise foreign_file_error(dest, option)
        for rel in folders:
            foreign = None if overwrite else _foreign_in_folder(out, rel, owned)
            if foreign is not None:
                raise foreign_file_error(out / rel, option, holds=foreign)
    return out


def file_owned(path: str | Path) -> bool:
    """Whether leakaudit wrote the single file ``path`` (it is listed in the ownership record of
    its folder, ``FOLDER/.leakaudit/owned.json``, as output folders' files are)."""
    p = _resolved(path)
    return p.name in owned_files(p.parent)


def foreign_file_error(path: str | Path, option: str, holds: str | None = None) -> InputError:
    """The one line for a foreign file (or a folder holding one, ``holds``) at an output path:
    what it is and how to proceed (``--overwrite`` is a global option: before the command)."""
    what = "" if holds is None else f" (it holds {holds})"
    return InputError(f"exists and was not written by leakaudit{what}; to replace it run "
                      f"'leakaudit --overwrite <command> ...', or choose another {option}",
                      path=str(path))


def check_output_file(path: str | Path, option: str, *, overwrite: bool | None = None) -> Path:
    """Fail now, before any work, if the single file ``path`` (given with ``option``) cannot be
    written: it is a folder, its folder cannot be created (a file on the way) or written, or it
    exists and leakaudit did not write it (unless ``overwrite``, by default ``--overwrite``)."""
    overwrite = _overwrite if overwrite is None else overwrite
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
    if (path.exists() or path.is_symlink()) and not overwrite and not file_owned(path):
        raise foreign_file_error(path, option)
    return path


@contextmanager
def owned_file(path: str | Path, option: str, *, overwrite: bool | None = None) -> Iterator[Path]:
    """Write the single file ``path`` (given with ``option``) atomically, never over a file
    leakaudit did not write.

    ``with owned_file(path, "--json") as tmp: <write tmp>``: the content goes to a temporary
    file beside ``path``; when the block ends without error, the check of
    :func:`check_output_file` is repeated (a file may have appeared meanwhile), the temporary
    file replaces ``path`` with :func:`os.replace` and ``path`` is recorded in its folder's
    ownership record (``FOLDER/.leakaudit/owned.json``, the record output folders keep), so a
    rerun may replace it. On any error the temporary file is removed and ``path`` is untouched.
    """
    from leakaudit.runs.files import file_mode

    check_output_file(path, option, overwrite=overwrite)
    dest = _resolved(path)
    with private_umask():
        mkdir_private(dest.parent)
        mine = f".{dest.name}.{os.getpid()}."  # this process's temporary files for ``dest``
        before = set(dest.parent.glob(f"{mine}*.partial"))
        tmp = None
        try:  # mkstemp inside: a signal landing in it must not leave the file behind
            fd, tmp = tempfile.mkstemp(prefix=mine, suffix=".partial", dir=dest.parent)
            os.close(fd)
            os.chmod(tmp, file_mode())
            yield Path(tmp)
            check_output_file(path, option, overwrite=overwrite)
            os.replace(tmp, dest)
        except BaseException:
            for partial in ([Path(tmp)] if tmp is not None else
                            set(dest.parent.glob(f"{mine}*.partial")) - before):
                partial.unlink(missing_ok=True)
            raise
        _record_owned(dest.parent, [dest.name])


def write_owned_text(path: str | Path, option: str, text: str, *,
                     overwrite: bool | None = None) -> Path:
    """:func:`owned_file` for a text (UTF-8) file."""
    with owned_file(path, option, overwrite=overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


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
            raise foreign_file_error(dest, "--out")
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
        stage = None
        try:
            # inside the try: a signal that lands in mkdtemp after the folder exists must not
            # leave it behind (a flaky SIGTERM test caught that window under load)
            stage = Path(tempfile.mkdtemp(prefix=f"{PARTIAL}{os.getpid()}-", dir=out_dir))
            yield stage
            apply_modes(stage)
            merge_stage(stage, out_dir, overwrite=overwrite)
        except BaseException:
            for partial in ([stage] if stage is not None
                            else out_dir.glob(f"{PARTIAL}{os.getpid()}-*")):
                shutil.rmtree(partial, ignore_errors=True)
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
                 overwrite: bool | None = None, log=None, folders: Iterable[str] = (),
                 option: str = "--out") -> Iterator[Path]:
    """For a writer that writes into ``out`` directly (not through a staging folder): hold the
    folder's lock, refuse a foreign file among ``produces`` or a foreign file in one of
    ``folders`` (sub-folders written whole, see :func:`check_output_location`) before and under
    the lock, and record every one of ``produces`` and every file under ``folders`` that exists
    at the end (success or failure) as written by leakaudit, so a rerun may replace it and
    nothing else."""
    from leakaudit.runs.lock import output_lock

    out = Path(out)
    produces = tuple(produces)
    inputs = tuple(inputs)
    folders = tuple(folders)
    check_output_location(out, produces=produces, inputs=inputs, overwrite=overwrite,
                          folders=folders, option=option)
    with output_lock(out, log=log):
        check_output_location(out, produces=produces, inputs=inputs, overwrite=overwrite,
                              folders=folders, option=option)
        try:
            yield out
        finally:
            made = [rel for rel in produces if (out / rel).exists()] + folder_files(out, folders)
            if made:
                _record_owned(out, made)
