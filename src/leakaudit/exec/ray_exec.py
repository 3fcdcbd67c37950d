"""Ray executor: every shard is a Ray task (``max_retries`` re-runs a shard whose worker died);
results stream back with ``ray.wait`` and go into the shard store as each one finishes.

Workers are Ray's pooled worker processes: a process that ran one shard keeps its loaded target
(:func:`leakaudit.exec.tasks.worker_model`) for the next, so each worker loads a target once.
``num_gpus_per_task`` (default: 1 when the cluster has GPUs, else 0) puts each shard on a GPU,
where the task loads the model on CUDA.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from leakaudit.exec.base import Executor


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
                ray.init(**kw)
            else:
                try:
                    ray.init(address=address, **kw)
                except ConnectionError:
                    if address != "auto":
                        raise
                    ray.init(**kw)  # no running cluster: start one on this machine
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
