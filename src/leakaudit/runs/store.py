"""The run store: stages that finish once and are reused after a crash.

Each stage of a run (the corpus, each model's training, each sampling shard, each scoring pass,
the verification, each model's exposure references, the shadow models, …) is recorded under a
*key*: a hash of everything its result depends on (its inputs and config, the leakaudit version).
A stage is computed in a hidden temporary folder and becomes visible (``os.replace`` of the
folder) only when complete, so after ``kill -9`` a rerun of the same command finds every finished
stage, reuses it, and recomputes only the unfinished ones; the results equal those of an
uninterrupted run, because every stage is deterministic given its key. Temporary folders of dead
processes are removed when the store is opened.

Two processes may share a store (the lab's helper lane, or the same command started twice): a
stage is computed under an exclusive lock on ``.locks/<name>-<key[:24]>.lock`` (``flock``), so the
second process waits for the first and reads its result instead of computing it again; a stage
that a helper of the same run (the same ``run_id``) computed counts as computed, not reused.

Layout of ``OUT/.leakaudit/store/``::

    <name>-<key[:24]>/          a finished stage: its files, and stage.json (name, key, inputs)
    .<name>-<key[:24]>.<pid>.partial/   a stage being computed (removed if its process is gone)
    cache/                      the LLM signal cache (one file per (model, texts) scoring pass)
    .locks/<name>-<key[:24]>.lock   each stage's lock (empty files; flock)
    helper-lane.log             the output of the lab's helper process (leakaudit.lab.lanes)

The store lives inside the output folder, so it is as private as the outputs (0700/0600). Stages
are cheap to list (``RunStore.finished()``) and can be deleted at will: they are recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leakaudit.runs.files import mkdir_private, private_umask

from leakaudit.runs.files import STORE  # noqa: E402  (the run store's folder name)
_MARK = "stage.json"


def _canonical(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def stage_key(*parts: Any) -> str:
    """A hex key over ``parts`` (dicts, dataclasses, lists, strings, numbers; order-insensitive
    within dicts) and the leakaudit version."""
    from leakaudit import __version__

    blob = json.dumps([__version__, _canonical(list(parts))], sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, other objects their ``str``):
    what a stage's JSON result is whether it was computed now or reused."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def texts_key(texts) -> str:
    """A hash of a sequence of strings (order matters)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", name)[:80]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """The run store of one output folder (``RunStore.for_output(out)``), or of any folder."""

    def __init__(self, root: str | Path, *, log: Callable[[str], None] | None = None,
                 run_id: str | None = None):
        import uuid

        self.root = Path(root)
        self.log = log or (lambda msg: None)
        self.reused: list[str] = []
        self.computed: list[str] = []
        #: who computed a stage (in its stage.json): the helper lane of a run shares its id
        self.run_id = run_id or uuid.uuid4().hex
        self._held: dict[str, int] = {}  # lock files this process holds: path -> fd
        with private_umask():
            mkdir_private(self.root)
        self._remove_stale()

    @classmethod
    def for_output(cls, out: str | Path, *, log=None, run_id: str | None = None) -> "RunStore":
        from leakaudit.runs.files import META

        return cls(Path(out) / META / STORE, log=log, run_id=run_id)

    @property
    def cache_dir(self) -> Path:
        """Where the LLM signal cache lives by default (``--cache DIR`` shares one elsewhere)."""
        return self.root / "cache"

    def _remove_stale(self) -> None:
        for p in self.root.glob(".*.partial"):
            m = re.search(r"\.(\d+)\.partial$", p.name)
            if m and _alive(int(m.group(1))) and int(m.group(1)) != os.getpid():
                continue
            shutil.rmtree(p, ignore_errors=True)
            self.log(f"run store: removed the unfinished stage of an interrupted run ({p.name})")

    def path(self, name: str, key: str) -> Path:
        return self.root / f"{_safe(name)}-{key[:24]}"

    def is_done(self, name: str, key: str) -> bool:
        return (self.path(name, key) / _MARK).is_file()

    def finished(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.root.iterdir()):
            mark = p / _MARK
            if mark.is_file():
                try:
                    out.append(json.loads(mark.read_text(encoding="utf-8")))
                except ValueError:
                    pass
        return out

    def _lock_path(self, name: str, key: str) -> Path:
        locks = self.root / ".locks"
        if not locks.is_dir():
            with private_umask():
                mkdir_private(locks)
        return locks / f"{self.path(name, key).name}.lock"

    def claim(self, name: str, key: str) -> bool:
        """Take stage ``(name, key)``'s lock without waiting: ``True`` when this process holds it
        now (or already did), ``False`` when another process is computing the stage. A claimed
        lock is held until :meth:`release` (``directory``/``json`` of the stage release it)."""
        return self._acquire(self._lock_path(name, key), wait=False)

    def release(self, name: str, key: str) -> None:
        self._release(self._lock_path(name, key))

    def _acquire(self, path: Path, *, wait: bool) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock (Windows): one process per store
            return True
        p = str(path)
        if p in self._held:
            return True
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._held[p] = fd
        return True

    def _release(self, path: Path) -> None:
        fd = self._held.pop(str(path), None)
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    def locked(self, name: str, key: str):
        """A context holding stage ``(name, key)``'s lock, waiting while another process holds
        it; re-entrant within a process (threads of one process share its locks)."""
        from contextlib import contextmanager

        @contextmanager
        def held():
            path = self._lock_path(name, key)
            mine = str(path) in self._held
            self._acquire(path, wait=True)
            try:
                yield
            finally:
                if not mine:
                    self._release(path)
        return held()

    def _found(self, name: str, final: Path, *, quiet: bool = False) -> Path:
        """A finished stage: computed by this run (its helper lane) or reused from an earlier one."""
        try:
            mark = json.loads((final / _MARK).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            mark = {}
        if mark.get("run") == self.run_id and mark.get("pid") != os.getpid():
            self.computed.append(name)  # by the helper lane of this run
        else:
            self.reused.append(name)
            if not quiet:
                self.log(f"run store: reused finished stage {name}")
        return final

    def directory(self, name: str, key: str, build: Callable[[Path], Any], *,
                  describe: dict[str, Any] | None = None) -> Path:
        """The folder of stage ``(name, key)``: reused if finished, else ``build(tmp)`` fills a
        temporary folder that then becomes the stage, atomically (under the stage's lock: a
        process that finds another computing it waits and reads its result)."""
        final = self.path(name, key)
        if (final / _MARK).is_file():
            self.release(name, key)
            return self._found(name, final)
        with self.locked(name, key):
            try:
                if (final / _MARK).is_file():
                    return self._found(name, final)
                self._build(name, key, final, build, describe)
            finally:
                self.release(name, key)  # also a lock taken by claim()
        self.computed.append(name)
        return final

    def _build(self, name: str, key: str, final: Path, build: Callable[[Path], Any],
               describe: dict[str, Any] | None) -> None:
        tmp = self.root / f".{final.name}.{os.getpid()}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        with private_umask():
            try:
                mkdir_private(tmp)
                build(tmp)
                (tmp / _MARK).write_text(json.dumps({"name": name, "key": key, "run": self.run_id,
                                                     "pid": os.getpid(),
                                                     **(describe or {})}, default=str),
                                         encoding="utf-8")
                if final.exists():
                    if (final / _MARK).is_file():  # finished meanwhile (a thread of this process,
                        shutil.rmtree(tmp, ignore_errors=True)  # or a store without flock)
                        return
                    shutil.rmtree(final)  # an unmarked leftover
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

    def workspace(self, name: str, key: str) -> Path:
        """A persistent folder for work that resumes by itself (e.g. shadow models, each saved
        atomically when done): kept across runs with the same key, never marked finished."""
        p = self.root / f"ws-{_safe(name)}-{key[:24]}"
        with private_umask():
            mkdir_private(p)
        return p

    def json(self, name: str, key: str, compute: Callable[[], Any], *,
             describe: dict[str, Any] | None = None) -> Any:
        """The JSON result of stage ``(name, key)``: reused if finished, else ``compute()``.

        The result is returned *as read back from JSON* in both cases (tuples become lists,
        non-finite floats stay as the writer allows), so a resumed run and an uninterrupted one
        continue with identical values."""
        def build(d: Path) -> None:
            value = compute()
            (d / "result.json").write_text(json.dumps(value, ensure_ascii=False, default=str),
                                           encoding="utf-8")

        d = self.directory(name, key, build, describe=describe)
        return json.loads((d / "result.json").read_text(encoding="utf-8"))


class NullStore:
    """A store that keeps nothing: every stage is computed (library calls without an output
    folder)."""

    reused: list[str] = []
    computed: list[str] = []
    cache_dir = None

    def directory(self, name, key, build, *, describe=None):  # pragma: no cover - trivial
        raise RuntimeError("NullStore has no folders")

    def json(self, name, key, compute, *, describe=None):
        return jsonable(compute())
