"""Fit small PyTorch classifiers on arrays (the lab's targets, shadow and reference models).

Models are plain ``torch.nn.Module`` objects built from a JSON-serializable :class:`MLPSpec`, and
are saved as ``model.safetensors`` + ``classifier.json`` — no pickle anywhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from leakaudit.errors import InputError


@dataclass(frozen=True)
class MLPSpec:
    """A multi-layer perceptron ``input_dim → hidden… → n_classes`` with ReLU activations."""

    input_dim: int
    n_classes: int
    hidden: tuple[int, ...] = (128,)

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, d: dict) -> "MLPSpec":
        return cls(input_dim=int(d["input_dim"]), n_classes=int(d["n_classes"]),
                   hidden=tuple(int(h) for h in d.get("hidden", ())))


def build_mlp(spec: MLPSpec):
    import torch.nn as nn

    layers: list = []
    width = spec.input_dim
    for h in spec.hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, spec.n_classes))
    return nn.Sequential(nn.Flatten(), *layers)


@dataclass(frozen=True)
class TrainConfig:
    """Minibatch training: Adam, cross-entropy, fixed seed, CPU-deterministic."""

    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0


def check_training_data(x, y, spec: MLPSpec) -> tuple[np.ndarray, np.ndarray]:
    """``x`` as float32 and ``y`` as int64, or an :class:`InputError` when they differ in length,
    are empty, or a label lies outside ``0..spec.n_classes - 1``."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if len(x) != len(y) or len(x) == 0:
        raise InputError(f"need as many labels as inputs (got {len(x)} inputs, {len(y)} labels)")
    if y.min() < 0 or y.max() >= spec.n_classes:
        raise InputError(f"labels must lie in 0..{spec.n_classes - 1}; got {y.min()}..{y.max()}")
    return x, y


def train_classifier(x: np.ndarray, y: np.ndarray, spec: MLPSpec, config: TrainConfig = TrainConfig()):
    """Train an MLP on ``x`` (n, …) float and ``y`` (n,) int labels; returns the module (eval mode).

    Deterministic for a given seed on CPU: the initialization and the minibatch order come from
    a ``torch.Generator`` seeded with ``config.seed``.
    """
    import torch

    x, y = check_training_data(x, y, spec)
    torch.manual_seed(config.seed)
    model = build_mlp(spec)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), config.batch_size):
            idx = order[i:i + config.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return model.eval()


def save_classifier(model, spec: MLPSpec, path: str | Path, *, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``classifier.json`` into the directory ``path``."""
    from safetensors.torch import save_file

    from leakaudit.runs.atomic import atomic_write_text

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    atomic_write_text(path / "classifier.json",
                      json.dumps({"architecture": "mlp", "spec": spec.to_dict(), **(extra or {})},
                                 indent=2))
    return path


def load_classifier(path: str | Path):
    """Load a directory written by :func:`save_classifier`; returns ``(module, spec, meta)``."""
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path / "classifier.json"
    if not meta_path.is_file():
        raise InputError(f"no classifier.json in {path} (expected a folder written by leakaudit)",
                         path=str(path))
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg}", path=str(meta_path), line=e.lineno) from e
    if meta.get("architecture") != "mlp":
        raise InputError(f"unknown classifier architecture {meta.get('architecture')!r}",
                         path=str(meta_path))
    from leakaudit.targets.checks import check_weights_folder

    check_weights_folder(path, weights="model.safetensors",
                         hint="save the classifier with leakaudit.training.classifier.save_classifier")
    try:
        spec = MLPSpec.from_dict(meta["spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"malformed classifier spec: {e}", path=str(meta_path)) from None
    model = build_mlp(spec)
    try:
        model.load_state_dict(load_file(str(path / "model.safetensors")))
    except (RuntimeError, KeyError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"weights do not match classifier.json: {msg}",
                         path=str(path / "model.safetensors")) from None
    return model.eval(), spec, meta


def native_classifier_target(path: str, options):
    """The classifier target of a folder written by :func:`save_classifier` (white-box), for
    :func:`leakaudit.targets.classifier_formats.load_classifier_target` (``leakaudit:DIR``).
    ``target.meta`` holds ``classifier.json``, ``target.mlp_spec`` the architecture."""
    from leakaudit.targets.classifier import TorchClassifier

    module, spec, meta = load_classifier(Path(path).expanduser())
    shape = tuple(meta.get("input_shape") or (spec.input_dim,))
    target = TorchClassifier(module, n_classes=spec.n_classes, input_shape=shape,
                             batch_size=max(options.batch_size, 1), device=options.device)
    target.meta, target.mlp_spec = meta, spec
    return target
