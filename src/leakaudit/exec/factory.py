"""The executor factory (apart from :mod:`leakaudit.exec.base`, which the Ray backend subclasses,
so that no import cycle runs through the base)."""

from __future__ import annotations

from leakaudit.errors import InputError
from leakaudit.exec.base import RAY_EXTRA_HINT, Executor, LocalExecutor


def check_cluster(cluster: str | None) -> None:
    """Fail at once, naming the extra, when ``cluster`` needs Ray and Ray is not installed."""
    if cluster in (None, "", "local"):
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise InputError(f"--cluster needs Ray, which is not installed: {RAY_EXTRA_HINT}") from None


def check_cluster_models(specs) -> None:
    """Workers load models by path or hub name: ``--cluster`` takes transformers models only."""
    from leakaudit.targets import parse_spec

    for spec in specs:
        if parse_spec(spec)[0] != "hf":
            raise InputError(f"--cluster runs transformers models (hf:, a model folder) "
                             f"only, not {spec!r}")


def get_executor(cluster: str | None, *, num_cpus_per_task: float = 1.0,
                 num_gpus_per_task: float | None = None, max_retries: int = 3) -> Executor:
    """``None``/``"local"``: :class:`LocalExecutor`. ``"auto"``: connect to the running Ray
    cluster (``ray start``), or start a local one. ``"ray://…"``/``"host:port"``: that cluster."""
    if cluster in (None, "", "local"):
        return LocalExecutor()
    check_cluster(cluster)
    from leakaudit.exec.ray_exec import RayExecutor

    return RayExecutor(address=cluster, num_cpus_per_task=num_cpus_per_task,
                       num_gpus_per_task=num_gpus_per_task, max_retries=max_retries)
