"""How many torch/OpenMP threads leakaudit uses: the CPUs this process may run on, or (asked for
with ``--threads 0``) those the machine's load leaves free.

``cpu_budget()`` is the number of CPUs the process may use: its CPU affinity
(``os.sched_getaffinity``) capped by the cgroup CPU quota (v2 ``cpu.max``; v1
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up.

``configure_threads(n)`` picks and applies the thread count, in this order: ``n`` (``--threads``
or the API's ``threads=``; 0 means :func:`default_threads`, the budget less the machine's
1-minute load average, at least one), then ``OMP_NUM_THREADS`` when it is set, then the budget.

Why the load-based count is not the default: a torch thread pool larger than the CPUs that are
actually free thrashes (beside one ``while True: pass`` loop on a 2-core machine, 2 threads took
1.94× the time of 1 for the same ``extract``; a fixed training run 8.5 s vs 3.5 s of CPU), but
training is not bitwise equal across thread counts (LayerNorm's backward splits its sums by
thread: on the tiny lab, 608 of 696 records differ between 1 and 2 threads). A default that
followed the load would make the same command on the same machine train different models
depending on what else runs. So the default is reproducible (the budget), and a user on a busy
machine asks for ``--threads 0`` (or 1). Scoring, sampling and every later stage are keyed by
the trained models' fingerprints, so a resume at another thread count reuses what finished.

Spinning is the thrashing: libgomp's threads wait for work by spinning, so beside another busy
process each parallel region waits for a descheduled spinner. ``import leakaudit`` sets
``OMP_WAIT_POLICY=PASSIVE`` (unless the user set it) before torch loads; beside one busy
process, training the test suite's two small LMs at 2 threads took 208 s spinning and 5.7 s
waiting passively (5.6 s at 1 thread). With it, the reproducible default (the budget) is also
the fast one on a busy machine.

The count goes to ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (read by OpenMP when torch is first
imported) and, when torch is already imported, to ``torch.set_num_threads``.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

__all__ = ["cpu_budget", "cgroup_quota", "default_threads", "configure_threads", "configured"]

_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_chosen: int | None = None


def cgroup_quota(root: str | Path = "/sys/fs/cgroup") -> float | None:
    """The cgroup CPU quota in CPUs (``quota / period``), or ``None`` when unlimited or unknown.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "cpu.max").write_text("150000 100000\\n")
    >>> cgroup_quota(d)
    1.5
    >>> _ = (d / "cpu.max").write_text("max 100000\\n"); cgroup_quota(d) is None
    True
    """
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for v1 in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota = int((v1 / "cpu.cfs_quota_us").read_text())
            period = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cpu_budget(*, affinity: int | None = None, quota: float | None | str = "read") -> int:
    """The CPUs this process may use: its affinity capped by the cgroup quota (rounded up).

    >>> cpu_budget(affinity=8, quota=2.5)
    3
    >>> cpu_budget(affinity=2, quota=None)
    2
    >>> cpu_budget(affinity=4, quota=0.2)
    1
    """
    n = _affinity() if affinity is None else affinity
    q = cgroup_quota() if quota == "read" else quota
    if q is not None:
        n = min(n, max(1, math.ceil(q)))
    return max(1, n)


def _load1() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def default_threads(*, budget: int | None = None, load: float | None | str = "read",
                    machine_cpus: int | None = None) -> int:
    """The default thread count: the CPUs of the budget that the machine's load leaves free.

    ``free = machine CPUs − 1-minute load average`` (rounded to the nearest CPU); the result is
    ``min(budget, free)`` and at least 1. On a 2-core machine beside one busy loop (load ≈ 1)
    that is 1 thread; on an idle one, 2.

    >>> default_threads(budget=2, load=0.1, machine_cpus=2)
    2
    >>> default_threads(budget=2, load=1.0, machine_cpus=2)
    1
    >>> default_threads(budget=8, load=5.4, machine_cpus=8)
    3
    >>> default_threads(budget=4, load=0.0, machine_cpus=64)
    4
    >>> default_threads(budget=2, load=None, machine_cpus=2)
    2
    """
    b = cpu_budget() if budget is None else budget
    l1 = _load1() if load == "read" else load
    if l1 is None:
        return b
    cpus = (os.cpu_count() or b) if machine_cpus is None else machine_cpus
    free = math.floor(cpus - l1 + 0.5)
    return max(1, min(b, free))


def _env_threads() -> int | None:
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    try:
        n = int(raw)
    except ValueError:
        return None
    return n if n >= 1 else None


def configure_threads(n: int | None = None) -> int:
    """Choose and apply the thread count (``n``; 0: :func:`default_threads`; else
    ``OMP_NUM_THREADS``, else :func:`cpu_budget`); returns it. Calling it again with ``n=None``
    keeps the count chosen first (so an explicit ``--threads`` is not undone by a later
    default)."""
    global _chosen
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        from leakaudit.errors import InputError

        raise InputError(f"threads must be a whole number >= 0 (0: what the load leaves free), "
                         f"got {n!r}")
    if n is None and _chosen is not None:
        return _chosen
    if n == 0:
        count = default_threads()
    else:
        count = n if n is not None else (_env_threads() or cpu_budget())
    for key in _ENV:
        os.environ[key] = str(count)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)
    _chosen = count
    return count


def configured() -> int | None:
    """The count :func:`configure_threads` chose in this process, or ``None``."""
    return _chosen
