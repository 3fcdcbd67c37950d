"""Shadow / reference models: a random 50% IN/OUT keep matrix, training, reuse and resume.

A :class:`ShadowModels` directory holds

- ``manifest.json``: n_models, seed, a hash of the data, the trainer's description;
- ``keep.npy``: bool ``(n_models, n_records)``; ``keep[j, i]`` = record i is in model j's
  training set. Each model trains on an independent random half of the eligible records;
  ineligible records (a population the attacker holds back) are never IN;
- ``outputs/{j}.npy``: model j's class probabilities ``(n_records, C)`` on every record: what the
  attacks read;
- ``models/{j}/``: the model itself where the trainer can save it without pickle
  (``model.safetensors`` + ``classifier.json`` for PyTorch MLPs; scikit-learn estimators keep only
  their outputs and a JSON of their parameters).

A model counts as done once its outputs file exists (written atomically), so an interrupted run
resumes with the next missing model, and a second audit with the same data reuses all of them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from leakaudit.runs.atomic import atomic_write_text
from leakaudit.errors import InputError
from leakaudit.progress import null_progress


class ShadowTrainer(Protocol):
    """Fits one model on (x, y) and returns its class probabilities on ``x_eval``."""

    def describe(self) -> dict[str, Any]: ...

    def fit_predict(self, x: np.ndarray, y: np.ndarray, x_eval: np.ndarray, *, seed: int,
                    save_dir: Path | None) -> np.ndarray: ...


@dataclass(frozen=True)
class TorchMLPTrainer:
    """PyTorch MLPs via :func:`leakaudit.training.classifier.train_classifier`; saved as safetensors."""

    spec: Any  # MLPSpec
    config: Any  # TrainConfig

    def describe(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"kind": "torch_mlp", "spec": self.spec.to_dict(), "config": asdict(self.config)}

    def fit_predict(self, x, y, x_eval, *, seed, save_dir):
        from dataclasses import replace

        from leakaudit.targets.classifier import TorchClassifier
        from leakaudit.training.classifier import save_classifier, train_classifier

        model = train_classifier(x, y, self.spec, replace(self.config, seed=seed))
        if save_dir is not None:
            save_classifier(model, self.spec, save_dir, extra={"seed": seed})
        clf = TorchClassifier(model, n_classes=self.spec.n_classes,
                              input_shape=(self.spec.input_dim,))
        return clf.predict_proba(x_eval)


@dataclass(frozen=True)
class SklearnTrainer:
    """scikit-learn estimators: ``factory(seed)`` returns an unfitted estimator with
    ``predict_proba``; ``n_classes`` fixes the output width. Only outputs and params are saved."""

    factory: Callable[[int], Any]
    n_classes: int

    def describe(self) -> dict[str, Any]:
        est = self.factory(0)
        return {"kind": "sklearn", "estimator": type(est).__name__,
                "params": {k: repr(v) for k, v in sorted(est.get_params().items())}}

    def fit_predict(self, x, y, x_eval, *, seed, save_dir):
        est = self.factory(seed)
        est.fit(x.reshape(len(x), -1), y)
        p = np.zeros((len(x_eval), self.n_classes))
        p[:, np.asarray(est.classes_, dtype=np.int64)] = est.predict_proba(x_eval.reshape(len(x_eval), -1))
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(save_dir / "estimator.json",
                              json.dumps({**self.describe(), "seed": seed}, indent=1))
        return p


def data_hash(x: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.int64)):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def make_keep_matrix(n_models: int, eligible: np.ndarray, *, seed: int) -> np.ndarray:
    """bool ``(n_models, n)``: each model trains on its own random half of the eligible records.

    Rows are independent random halves (ml_privacy_meter's split), not Carlini et al.'s column
    balance "every record IN for exactly half the models": with few models, that balance makes
    the IN count among the *other* models reveal the held-out model's membership (IN records have
    one IN model fewer), which biases leave-one-out evaluations.

    >>> k = make_keep_matrix(4, np.ones(6, bool), seed=0)
    >>> k.shape, k.sum(axis=1).tolist()
    ((4, 6), [3, 3, 3, 3])
    """
    if n_models < 2:
        raise ValueError(f"need at least 2 models for an IN/OUT split, got {n_models}")
    eligible = np.asarray(eligible, dtype=bool)
    idx = np.flatnonzero(eligible)
    rng = np.random.default_rng(seed)
    keep = np.zeros((n_models, len(eligible)), dtype=bool)
    for j in range(n_models):
        keep[j, rng.permutation(idx)[: len(idx) // 2]] = True
    return keep


class ShadowModels:
    """The reference/shadow models of one data set, in ``directory`` (created, reused, resumed)."""

    def __init__(self, directory: str | Path, *, n_models: int, seed: int, trainer: ShadowTrainer):
        self.directory = Path(directory)
        self.n_models = n_models
        self.seed = seed
        self.trainer = trainer
        self.keep_: np.ndarray | None = None
        self.trained_now_: int = 0

    def _out(self, j: int) -> Path:
        return self.directory / "outputs" / f"{j}.npy"

    def prepare(self, x: np.ndarray, y: np.ndarray, *, eligible: np.ndarray) -> np.ndarray:
        """Create (or check and reuse) the manifest and keep matrix; returns the keep matrix."""
        manifest = {"n_models": self.n_models, "seed": self.seed, "n_records": int(len(y)),
                    "data_hash": data_hash(x, y), "trainer": self.trainer.describe(),
                    "eligible_hash": hashlib.sha256(np.asarray(eligible, bool).tobytes()).hexdigest()[:16]}
        mpath = self.directory / "manifest.json"
        if mpath.is_file():
            try:
                old = json.loads(mpath.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise InputError(f"invalid JSON: {e.msg}", path=str(mpath), line=e.lineno) from e
            diff = [k for k in manifest if old.get(k) != json.loads(json.dumps(manifest[k]))]
            if diff:
                raise InputError(f"this folder holds shadow models of a different setup "
                                 f"({', '.join(diff)} differ); use a new folder", path=str(mpath))
            keep = np.load(self.directory / "keep.npy", allow_pickle=False)
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            keep = make_keep_matrix(self.n_models, eligible, seed=self.seed)
            tmp = self.directory / f"keep.{os.getpid()}.tmp.npy"
            np.save(tmp, keep)
            os.replace(tmp, self.directory / "keep.npy")
            atomic_write_text(mpath, json.dumps(manifest, indent=1))
        self.keep_ = keep
        return keep

    def done(self) -> list[int]:
        return [j for j in range(self.n_models) if self._out(j).is_file()]

    def train(self, x: np.ndarray, y: np.ndarray, *, eligible: np.ndarray,
              progress=null_progress, save_models: bool = True, executor=None) -> np.ndarray:
        """Train every model not yet done; returns all outputs ``(n_models, n, C)``.
        ``executor`` (:mod:`leakaudit.exec`): one task per model, same results
        (:mod:`leakaudit.exec.shadows`)."""
        keep = self.prepare(x, y, eligible=eligible)
        todo = [j for j in range(self.n_models) if not self._out(j).is_file()]
        (self.directory / "outputs").mkdir(parents=True, exist_ok=True)
        self.trained_now_ = 0
        with progress("training shadow models", len(todo)) as adv:
            if executor is not None:
                train_shadows = executor.shadows.train_shadows

                def done() -> None:
                    self.trained_now_ += 1
                    adv(1)

                train_shadows(self, executor, x, y, keep, todo, save_models=save_models,
                              on_done=done)
                return self.outputs()
            for j in todo:
                idx = np.flatnonzero(keep[j])
                save_dir = self.directory / "models" / str(j) if save_models else None
                p = self.trainer.fit_predict(x[idx], y[idx], x, seed=self.seed * 1000 + j,
                                             save_dir=save_dir)
                tmp = self.directory / "outputs" / f"{j}.{os.getpid()}.tmp.npy"
                np.save(tmp, np.asarray(p, dtype=np.float64))
                os.replace(tmp, self._out(j))
                self.trained_now_ += 1
                adv(1)
        return self.outputs()

    def outputs(self) -> np.ndarray:
        missing = [j for j in range(self.n_models) if not self._out(j).is_file()]
        if missing:
            raise InputError(f"shadow models {missing[:5]} are not trained yet", path=str(self.directory))
        return np.stack([np.load(self._out(j), allow_pickle=False) for j in range(self.n_models)])
