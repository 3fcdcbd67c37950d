"""Shadow-model training on an executor: one shard task per shadow model.

:meth:`~leakaudit.attacks.membership.shadow.ShadowModels.train` with ``executor=`` sends each
missing shadow model ``j`` to the executor as a task that trains it with exactly the arguments of
the in-process loop (the rows ``keep[j]`` selects, the seed ``seed·1000 + j``, the same trainer),
and returns its outputs on every record (float64, raw bytes) and its saved files (safetensors and
JSON, base64). The driver writes each model into the shadow folder *as it arrives* (outputs last,
atomically), so a driver killed midway resumes with the models still missing, and a worker
killed mid-model has its task retried. The data go to the workers once, with the specs (Ray's
object store), not with every shard.

Only PyTorch MLP shadow models (:class:`~leakaudit.attacks.membership.shadow.TorchMLPTrainer`)
run on an executor: a scikit-learn trainer is a Python callable that a JSON shard cannot name.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.errors import InputError
from leakaudit.exec.base import Executor


def trainer_from_description(d: dict[str, Any]):
    from leakaudit.attacks.membership.shadow import TorchMLPTrainer
    from leakaudit.training.classifier import MLPSpec, TrainConfig

    if d.get("kind") != "torch_mlp":
        raise InputError(f"shadow models of kind {d.get('kind')!r} cannot train on an executor "
                         "(PyTorch MLPs only)")
    return TorchMLPTrainer(MLPSpec.from_dict(d["spec"]), TrainConfig(**d["config"]))


def train_shadow_task(specs: dict[str, Any], shard: dict[str, Any]) -> dict[str, Any]:
    """One shadow model: train on ``x[index]``, predict every record, return outputs and files."""
    trainer = trainer_from_description(specs["trainer"])
    x, y = np.asarray(specs["x"]), np.asarray(specs["y"])
    idx = np.asarray(shard["index"], dtype=np.int64)
    with tempfile.TemporaryDirectory() as t:
        save_dir = Path(t) / "model" if shard["save"] else None
        p = np.asarray(trainer.fit_predict(x[idx], y[idx], x, seed=int(shard["seed"]),
                                           save_dir=save_dir), dtype="<f8")
        files = ({f.name: base64.b64encode(f.read_bytes()).decode("ascii")
                  for f in sorted(save_dir.iterdir()) if f.is_file()} if save_dir else {})
    return {"j": int(shard["j"]), "shape": list(p.shape),
            "outputs": base64.b64encode(p.tobytes()).decode("ascii"), "files": files}


class _ShadowSink:
    """The store interface of :meth:`Executor.map` writing each finished shadow model into the
    shadow folder (model files first, the outputs file last: it marks the model done)."""

    def __init__(self, shadows, on_done):
        self.shadows = shadows
        self.on_done = on_done

    def get(self, key: str):
        return None  # done models were filtered out by the caller

    def put(self, key: str, task: str, r: dict[str, Any]) -> None:
        sh = self.shadows
        j = int(r["j"])
        if r["files"]:
            d = sh.directory / "models" / str(j)
            d.mkdir(parents=True, exist_ok=True)
            for name, b64 in r["files"].items():
                tmp = d / f".{name}.{os.getpid()}.tmp"
                tmp.write_bytes(base64.b64decode(b64))
                os.replace(tmp, d / name)
        p = np.frombuffer(base64.b64decode(r["outputs"]), dtype="<f8").reshape(r["shape"])
        tmp = sh.directory / "outputs" / f"{j}.{os.getpid()}.tmp.npy"
        np.save(tmp, p.astype(np.float64))
        os.replace(tmp, sh._out(j))
        self.on_done()


def train_shadows(shadows, executor: Executor, x: np.ndarray, y: np.ndarray, keep: np.ndarray,
                  todo: list[int], *, save_models: bool, on_done) -> None:
    """Train shadow models ``todo`` of ``shadows`` (a prepared ShadowModels) on ``executor``."""
    from leakaudit.runs.store import stage_key

    desc = shadows.trainer.describe()
    trainer_from_description(desc)  # refuse a trainer the workers cannot rebuild, before work
    specs = {"trainer": desc, "x": np.ascontiguousarray(x), "y": np.ascontiguousarray(y)}
    shards = [{"j": j, "shard": j, "index": np.flatnonzero(keep[j]).tolist(),
               "seed": shadows.seed * 1000 + j, "save": bool(save_models)} for j in todo]
    keys = [stage_key("shadow", desc, s["index"], s["seed"], s["save"]) for s in shards]
    executor.map("train_shadow", specs, shards, _ShadowSink(shadows, on_done), keys=keys)
