"""Ray executor: every shard is a Ray task (``max_retries`` re-runs a shard whose worker died);
results stream back with ``ray.wait`` and go into the shard store as each one finishes.

Workers are Ray's pooled worker processes: a process that ran one shard keeps its loaded target
(:func:`leakaudit.exec.tasks.worker_model`) for the next, so each worker loads a target once.
``num_gpus_per_task`` (default: 1 when the cluster has GPUs, else 0) puts each shard on a GPU,
where the task loads the model on CUDA. A cluster the executor starts itself on this machine:
see :data:`LOCAL_CLUSTER_KW`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from leakaudit.exec.base import Executor


#: ``ray.init`` settings of a Ray cluster that leakaudit starts itself on this machine: no
#: dashboard (its job API runs any code it is sent), and its host the loopback interface should
#: it be turned on. Ray's own servers listen on every interface whatever the node address (Ray
#: resolves 127.0.0.1 to the machine's address), so what guards them is Ray's token
#: authentication, on by default for a new local cluster in Ray 2.60 at least (the token in
#: ``~/.ray/auth_token``); :func:`_start_local` warns when it is off.
LOCAL_CLUSTER_KW: dict[str, Any] = {"include_dashboard": False, "dashboard_host": "127.0.0.1"}

UNAUTHENTICATED = ("the local Ray cluster leakaudit started has no token authentication (a Ray "
                   "without it, or RAY_AUTH_MODE=disabled): anyone who can reach this machine's "
                   "Ray ports can run code on it; block them at the firewall, or unset "
                   "RAY_AUTH_MODE / upgrade Ray")


def _token_auth_on() -> bool:
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode
    except ImportError:  # a Ray without token authentication
        return False
    return get_authentication_mode() == AuthenticationMode.TOKEN


def _start_local(ray, kw: dict[str, Any]) -> None:
    """Start a Ray cluster on this machine (see :data:`LOCAL_CLUSTER_KW`)."""
    import warnings

    ray.init(**{**kw, **LOCAL_CLUSTER_KW})
    if not _token_auth_on():
        warnings.warn(UNAUTHENTICATED, stacklevel=3)


def _remote_run(task: str, specs: dict[str, Any], shard: dict[str, Any]) -> Any:
    from leakaudit.exec.tasks import run_task

    return run_task(task, specs, shard)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, *, address: str | None = "auto", num_cpus_per_task: float = 1.0,
                 num_gpus_per_task: float | None = None, max_retries: int = 3,
                 max_in_flight: int | None = None):
        super().__init__()
        import ray

        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            # the workers import the same leakaudit as the driver, and see its test hooks
            src = str(Path(__file__).resolve().parents[2])
            env = {k: v for k, v in os.environ.items() if k.startswith("LEAKAUDIT_")}
            env["PYTHONPATH"] = os.pathsep.join(
                [src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
            env.setdefault("TOKENIZERS_PARALLELISM", "false")
            kw: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False,
                                  "include_dashboard": False}
            if address in ("local", None):
                _start_local(ray, kw)
            else:
                try:
                    ray.init(address=address, **kw)
                except ConnectionError:
                    if address != "auto":
                        raise
                    _start_local(ray, kw)  # no running cluster: start one on this machine
            self._owns = True
        if num_gpus_per_task is None:
            num_gpus_per_task = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        self.num_gpus_per_task = num_gpus_per_task
        self._fn = ray.remote(num_cpus=num_cpus_per_task, num_gpus=num_gpus_per_task,
                              max_retries=max_retries, retry_exceptions=False)(_remote_run)
        self.max_in_flight = max_in_flight

    def _run(self, task, specs, items):
        ray = self._ray
        specs_ref = ray.put(specs)
        pending: dict[Any, int] = {}
        queue = list(items)
        limit = self.max_in_flight or max(2 * int(ray.cluster_resources().get("CPU", 1)), 2)
        while queue or pending:
            while queue and len(pending) < limit:
                i, shard = queue.pop(0)
                pending[self._fn.remote(task, specs_ref, shard)] = i
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                yield i, ray.get(ref)

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
