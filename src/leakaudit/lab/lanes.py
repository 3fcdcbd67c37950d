"""A second lane for the labs: a helper process that walks the same stages in the other order.

On a small machine the lab's models are too small for torch's threads to pay: on 2 cores a whole
quick lab at 2 threads took 160 s (132% CPU) and at 1 thread 178 s, and the generation-heavy
stages were *faster* at 1 thread (memorization 5.0 s vs 8.5 s, PII probes 4.3 s vs 9.3 s). Two
processes of one thread each use both cores fully. So :func:`start_helper_lane` starts one
(``spawn``; it dies with the lab's process) that runs the lab's stages on the same run store with
the models' and the post-training stages in reverse order (it trains the small model and the
reference while the lab trains the target; it starts on extraction while the lab measures
memorization), without writing any output.

Nothing is computed twice and nothing depends on which lane computed what: every stage is a
run-store stage under a lock (:mod:`leakaudit.runs.store`), so the lane that comes second waits for
the first and reads its result; extraction's shards are claimed one at a time
(:meth:`leakaudit.exec.base.Executor.map`), so both lanes share them. Both lanes use the same
thread count, so the records equal those of one process at that count; the stages the helper
computed count as computed by this run (its stages carry the run's id). If the helper fails, the
lab computes what it left (its output is kept in ``.leakaudit/store/helper-lane.log``).
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HELPER_LOG = "helper-lane.log"


def lane_threads(threads: int) -> tuple[int, int] | None:
    """``(lab, helper)`` thread counts for a budget of ``threads``, or ``None`` (one lane) below 2
    or where the run store cannot lock a stage (no ``fcntl``: both lanes would compute it).

    >>> lane_threads(1), lane_threads(2), lane_threads(3), lane_threads(16)
    (None, (1, 1), (1, 2), (8, 8))
    """
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - Windows
        return None
    if threads < 2:
        return None
    return threads // 2, threads - threads // 2


class HelperLane:
    """The running helper process (:func:`start_helper_lane`); :meth:`finish` ends it."""

    def __init__(self, proc, log_path: Path, log):
        self.proc = proc
        self.log_path = log_path
        self.log = log

    def finish(self, *, ok: bool) -> None:
        """Stop the helper: once the lab has every stage (``ok``) nothing it could still compute
        is needed; after a failure of the lab it must not go on. It exits cleanly on SIGTERM
        (its unfinished stage and scratch folder removed). A helper that had already failed is
        reported."""
        p = self.proc
        failed = p.exitcode not in (0, None)
        if p.is_alive():
            p.terminate()
            p.join(timeout=10)
            if p.is_alive():  # pragma: no cover - a helper stuck in native code
                p.kill()
                p.join()
        if ok and failed:
            self.log(f"warning: the lab's helper lane failed (exit {p.exitcode}); the lab computed "
                     f"its stages itself; its output: {self.log_path}")


def start_helper_lane(run, stages, *, threads: int, log) -> HelperLane:
    """Start the helper process for ``run`` walking ``stages`` (no outputs written) at
    ``threads`` threads. ``run`` is a lab's run object (:class:`leakaudit.lab.run.LabRun`,
    :class:`leakaudit.lab.finetune.FinetuneLabRun`): ``run.helper_args()`` are the picklable
    settings from which its class's ``for_helper(store=, stage=, threads=, log=, **args)`` builds
    the helper's own run, in reverse order. The stage functions and the run's class travel by
    reference (pickled as module and name), so this module imports neither."""
    import multiprocessing as mp

    log_path = run.store.root / HELPER_LOG
    ctx = mp.get_context("spawn")
    proc = ctx.Process(
        target=_helper_main, name="leakaudit-lab-helper", daemon=True,
        args=(os.getpid(), str(run.store.root), run.store.run_id, type(run), run.helper_args(),
              threads, list(stages), str(log_path)))
    proc.start()
    log(f"helper lane: a second process (pid {proc.pid}, {threads} thread"
        f"{'s' if threads > 1 else ''}) computes stages beside this one; its output: "
        f"{log_path}")
    return HelperLane(proc, log_path, log)


@contextmanager
def helper_lane_beside(run, stages, lanes: tuple[int, int] | None, *, budget: int, log):
    """The block runs the lab's own lane; with ``lanes`` (:func:`lane_threads`), this process
    at ``lanes[0]`` threads and a helper walking ``stages`` at ``lanes[1]``, stopped when the
    block ends (reported if it had failed and the lab did not). Torch's thread count is back at
    ``budget`` afterwards, whatever fails."""
    import torch

    helper, ok = None, False
    try:
        if lanes:
            torch.set_num_threads(lanes[0])
            helper = start_helper_lane(run, stages, threads=lanes[1], log=log)
        yield
        ok = True
    finally:
        if helper is not None:
            helper.finish(ok=ok)
        torch.set_num_threads(budget)


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when the lab's process dies (Linux ``PR_SET_PDEATHSIG``), so a
    ``kill -9`` of the lab leaves no helper behind."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux: the daemon flag remains
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def _thread_lock_for_tqdm() -> None:
    """Give tqdm a thread lock before its first bar (transformers' and datasets' bars). Its
    default lock includes a multiprocessing lock, a semaphore registered with the lab's
    resource tracker; this process ends with ``os._exit``, which never unregisters it, and the
    lab then warned of "leaked semaphore objects" when it exited. One process needs no
    cross-process lock: the helper's output goes to its own log file."""
    import threading

    import tqdm

    tqdm.tqdm.set_lock(threading.RLock())


def _helper_main(parent: int, store_root: str, run_id: str, run_class, args: dict,
                 threads: int, stages: list, log_path: str) -> None:
    # SIGTERM (the lab is done, or died: PR_SET_PDEATHSIG) unwinds like an exception, so the
    # run store removes the stage being computed and the scratch folder goes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _die_with_parent(parent)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from leakaudit.targets.threads import configure_threads

    configure_threads(threads)
    _thread_lock_for_tqdm()
    import shutil
    import traceback

    from leakaudit.lab.stages import run_stages
    from leakaudit.runs.store import RunStore

    store = RunStore(store_root, run_id=run_id)
    scratch = Path(store_root) / f".lane.{os.getpid()}.partial"  # removed as stale if we die
    scratch.mkdir(mode=0o700)
    run: Any = run_class.for_helper(store=store, stage=scratch, threads=threads,
                                    log=lambda msg: print(msg, flush=True), **args)
    code = 0
    try:
        run_stages(stages, run)
    except SystemExit:  # stopped by the lab
        pass
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.flush()
    os._exit(code)


def helper_stages(stages, *, after: str = "index") -> list:
    """A lab's stages as the helper walks them: up to ``after`` in order (the order of the
    models, or variants, is reversed inside their stage by the run's ``reverse``), the stages
    after it in reverse, no report."""
    names = [n for n, _ in stages]
    cut = names.index(after) + 1
    return list(stages[:cut]) + [s for s in reversed(stages[cut:]) if s[0] != "report"]


__all__ = ["lane_threads", "start_helper_lane", "helper_lane_beside", "helper_stages", "HelperLane", "HELPER_LOG"]
