"""Where work runs: in-process by default, Ray tasks on a cluster when asked; see
:mod:`leakaudit.exec.base`. Ray is an optional extra (``pip install 'leakaudit[ray]'``) and is
imported only when a Ray executor is created."""

from leakaudit.exec.base import (RAY_EXTRA_HINT, Executor, LocalExecutor, ShardStore, StageStore,
                                 shard_key, shard_seed)
from leakaudit.exec.factory import get_executor
from leakaudit.exec import base as _base, extraction as _extraction, shadows as _shadows  # noqa: E402,I001
from leakaudit.exec import tasks as _tasks  # noqa: E402,I001

# base.Executor reaches these through HALVES, so no module of the package imports upwards
_base.HALVES.update(extraction=_extraction, shadows=_shadows, tasks=_tasks)

__all__ = ["Executor", "LocalExecutor", "ShardStore", "StageStore", "get_executor", "shard_key",
           "shard_seed", "RAY_EXTRA_HINT"]
