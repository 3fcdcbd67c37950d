"""Where work runs: in-process (default) or as Ray tasks on a cluster, behind one interface.

An audit cuts its work into **shards** (JSON-able dicts) whose results depend only on the shard
itself (its inputs, the run seed and the shard's index, never on which worker runs it), and hands
them to an :class:`Executor` with the name of a registered task (:mod:`leakaudit.exec.tasks`).
Every finished shard is written at once to the :class:`ShardStore` under a hash of its task,
target specs and payload, so

- the same seed gives the same findings with 1 worker or many, and the same as the in-process
  executor (which runs exactly the same shard functions);
- a worker killed mid-shard has its shard retried (Ray ``max_retries``); a shard is stored once,
  under its key, so nothing is lost or counted twice;
- a driver killed midway resumes on rerun: stored shards are read back, only the rest run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.errors import InputError

__all__ = ["Executor", "LocalExecutor", "ShardStore", "StageStore", "shard_seed", "shard_key", "get_executor",
           "RAY_EXTRA_HINT"]

RAY_EXTRA_HINT = "pip install 'leakaudit[ray]'"


def shard_seed(run_seed: int, *labels: int | str) -> int:
    """A 31-bit seed (small enough for every RNG API, torch's ``seed * 1_000_003 + batch``
    included) from the run seed and the shard's labels (task name, shard index, ...),
    via numpy's ``SeedSequence`` (independent streams, no worker identity involved).

    >>> shard_seed(0, "extraction", 3) == shard_seed(0, "extraction", 3)
    True
    >>> shard_seed(0, "extraction", 3) != shard_seed(0, "extraction", 4)
    True
    """
    words = [int(run_seed) & 0xFFFFFFFF, (int(run_seed) >> 32) & 0xFFFFFFFF]
    for lab in labels:
        if isinstance(lab, str):
            words.append(int.from_bytes(hashlib.sha256(lab.encode()).digest()[:4], "little"))
        else:
            words.append(int(lab) & 0xFFFFFFFF)
    return int(np.random.SeedSequence(words).generate_state(1, np.uint32)[0] >> np.uint32(1))


def shard_key(task: str, specs: dict[str, Any], shard: dict[str, Any]) -> str:
    """Hash of everything a shard's result depends on."""
    blob = json.dumps({"task": task, "specs": specs, "shard": shard}, sort_keys=True,
                      ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class ShardStore:
    """Finished shards of one output folder: ``<dir>/<key>.json`` (0600), written atomically.

    ``None`` as the directory keeps results in memory only (no resume)."""

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory is not None else None
        self._mem: dict[str, Any] = {}
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)

    def get(self, key: str) -> Any | None:
        if key in self._mem:
            return self._mem[key]
        if self.directory is None:
            return None
        p = self.directory / f"{key}.json"
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))["result"]
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
            return None  # a torn file from a crash: the shard simply runs again

    def put(self, key: str, task: str, result: Any) -> None:
        self._mem[key] = result
        if self.directory is None:
            return
        tmp = self.directory / f".{key}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"task": task, "key": key, "result": result}, f)
        os.replace(tmp, self.directory / f"{key}.json")

    def __len__(self) -> int:
        if self.directory is None:
            return len(self._mem)
        return sum(1 for _ in self.directory.glob("*.json"))


class StageStore:
    """The :class:`ShardStore` interface over a run store (:class:`~leakaudit.runs.store.RunStore`):
    the shard with key ``k`` is the run-store stage ``(names[k], k)``, so shards finished by any
    executor are the same stages a single-process run writes and reads (``NullStore``: nothing
    is kept)."""

    def __init__(self, run_store, names: dict[str, str]):
        self.run_store = run_store
        self.names = dict(names)
        self._keeps = hasattr(run_store, "is_done")

    def get(self, key: str) -> Any | None:
        if not self._keeps:
            return None
        name = self.names[key]
        if not self.run_store.is_done(name, key):
            return None
        try:
            value = json.loads((self.run_store.path(name, key) / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        self.run_store._found(name, self.run_store.path(name, key), quiet=True)
        return value

    def put(self, key: str, task: str, result: Any) -> None:
        if self._keeps:
            self.run_store.json(self.names[key], key, lambda: result, describe={"task": task})

    @property
    def shares(self) -> bool:
        """Whether another process may compute these shards beside this one (a run store with
        locks): the in-process executor then takes each shard's lock before computing it."""
        return self._keeps and hasattr(self.run_store, "claim")

    def claim(self, key: str) -> bool:
        return self.run_store.claim(self.names[key], key)

    def release(self, key: str) -> None:
        self.run_store.release(self.names[key], key)

    def waiting(self, key: str):
        return self.run_store.locked(self.names[key], key)


#: the executor-side halves of the attack pipelines, by name (filled by leakaudit.exec)
HALVES: dict[str, Any] = {}


class Executor:
    """Runs registered shard tasks; see the module docstring.

    ``map(task, specs, shards, store)`` returns the shards' results in shard order; ``specs``
    names what the workers load once (model directories, an index directory) and is part of every
    shard's key. ``stats`` counts shards run and reused (resume)."""

    name = "base"

    def __init__(self) -> None:
        self.stats = {"run": 0, "reused": 0}

    # The attack pipelines reach their executor-side halves through the executor they are
    # given, so that attacks/ never imports exec/ (exec/ runs attacks; tests/test_imports.py).
    # leakaudit/exec/__init__.py fills HALVES when the package is imported.
    @property
    def extraction(self):
        """:mod:`leakaudit.exec.extraction` (sampling, scoring and verification shards)."""
        return HALVES["extraction"]

    @property
    def shadows(self):
        """:mod:`leakaudit.exec.shadows` (one task per shadow model)."""
        return HALVES["shadows"]

    def map(self, task: str, specs: dict[str, Any], shards: Sequence[dict[str, Any]],
            store: ShardStore | StageStore | None = None,
            progress: Callable[[int], None] | None = None,
            keys: Sequence[str] | None = None) -> list[Any]:
        """``keys``: the store key of each shard (default: :func:`shard_key`); a
        :class:`StageStore` names each key's run-store stage."""
        store = store if store is not None else ShardStore(None)
        keys = list(keys) if keys is not None else [shard_key(task, specs, s) for s in shards]
        if len(keys) != len(shards):
            raise ValueError(f"{len(keys)} keys for {len(shards)} shards")
        results: list[Any] = [None] * len(shards)
        todo = []
        for i, k in enumerate(keys):
            r = store.get(k)
            if r is None:
                todo.append(i)
            else:
                results[i] = r
                self.stats["reused"] += 1
                if progress:
                    progress(1)
        if todo and self.name == "local" and getattr(store, "shares", False):
            todo = self._run_shared(task, specs, shards, keys, todo, store, results, progress)
        for i, r in self._run(task, specs, [(i, shards[i]) for i in todo]):
            store.put(keys[i], task, r)
            results[i] = r
            self.stats["run"] += 1
            if progress:
                progress(1)
        return results

    def _run(self, task, specs, items):  # yields (index, result) as shards finish
        raise NotImplementedError

    def _run_shared(self, task, specs, shards, keys, todo, store, results, progress) -> list:
        """In-process shards beside another process on the same run store (the lab's helper
        lane): each shard is claimed (its run-store lock) just before it is computed; a shard the
        other process holds is skipped and, once the rest are done, waited for and read back (or
        computed, when that process died). No shard is computed twice; returns nothing left."""
        def one(i: int) -> None:
            r = store.get(keys[i])
            if r is None:
                r = next(iter(self._run(task, specs, [(i, shards[i])])))[1]
                store.put(keys[i], task, r)  # releases the shard's lock
                self.stats["run"] += 1
            else:
                self.stats["reused"] += 1
            results[i] = r
            if progress:
                progress(1)

        deferred = []
        for i in todo:
            if not store.claim(keys[i]):
                deferred.append(i)
                continue
            try:
                one(i)
            finally:
                store.release(keys[i])
        for i in deferred:
            with store.waiting(keys[i]):
                one(i)
        return []

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    """In-process: the single-machine default, and the reference the Ray path must equal."""

    name = "local"

    def _run(self, task, specs, items):
        run_task = HALVES["tasks"].run_task

        for i, shard in items:
            yield i, _keep_threads(run_task, task, specs, shard)


def _keep_threads(fn, *args):
    """Run ``fn`` and restore torch's thread count (a shard sets its own)."""
    import sys

    torch = sys.modules.get("torch")
    n = torch.get_num_threads() if torch is not None else None
    try:
        return fn(*args)
    finally:
        torch = sys.modules.get("torch")
        if torch is not None and n is not None and torch.get_num_threads() != n:
            torch.set_num_threads(n)
