"""Classifier targets: class probabilities for a batch of inputs, gradients where white-box.

One interface for every classifier the tool audits (membership inference, model inversion):

- :class:`TorchClassifier`: any ``torch.nn.Module`` mapping a float tensor ``(n, *input_shape)`` to
  logits ``(n, n_classes)``. White-box: logits and input gradients.
- :class:`SklearnClassifier`: any fitted estimator with ``predict_proba``. Black-box.

Inputs are numpy arrays of shape ``(n, *input_shape)``; probabilities come back as float64
``(n, n_classes)`` rows that sum to 1. Every example sent to the model is counted in
``queries`` (the query budget of black-box attacks is checked against it).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from leakaudit.errors import CapabilityError, InputError


@dataclass(frozen=True)
class ClassifierCapabilities:
    """What a classifier backend can answer. Attacks check these and refuse clearly."""

    probabilities: bool = True  # the full probability vector (False: top-1 label only)
    logits: bool = False  # raw logits (white-box, or an API that returns them)
    gradients: bool = False  # d log p(class | x) / dx


class Classifier(ABC):
    """A classifier under audit. Subclasses implement :meth:`_predict_proba`."""

    capabilities: ClassifierCapabilities = ClassifierCapabilities()

    def __init__(self, *, n_classes: int, input_shape: tuple[int, ...]):
        self.n_classes = int(n_classes)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.queries = 0

    # -- the one method a backend implements -------------------------------------------------
    @abstractmethod
    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` for a validated float array ``(n, *input_shape)``."""

    # -- shared --------------------------------------------------------------------------------
    def _check(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise InputError(f"inputs have shape {x.shape[1:]} per example; this classifier "
                             f"expects {self.input_shape}")
        return x

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities, float64 ``(n, n_classes)``. Counts ``n`` queries."""
        x = self._check(x)
        self.queries += len(x)
        if len(x) == 0:
            return np.zeros((0, self.n_classes))
        p = np.asarray(self._predict_proba(x), dtype=np.float64)
        if p.shape != (len(x), self.n_classes):
            raise InputError(f"classifier returned probabilities of shape {p.shape}; expected "
                             f"{(len(x), self.n_classes)}")
        return p

    def predict(self, x) -> np.ndarray:
        """Top-1 labels ``(n,)``."""
        return self.predict_proba(x).argmax(axis=1)

    def loss(self, x, y) -> np.ndarray:
        """Per-example cross-entropy ``-log p(y | x)`` (natural log), float64 ``(n,)``."""
        y = np.asarray(y, dtype=np.int64)
        p = self.predict_proba(x)
        return -np.log(np.clip(p[np.arange(len(y)), y], 1e-300, None))

    def logits(self, x) -> np.ndarray:
        raise CapabilityError(f"{type(self).__name__} does not expose logits")

    def input_gradient(self, x, target) -> tuple[np.ndarray, np.ndarray]:
        """``(log p(target | x), d log p(target | x) / dx)`` — white-box backends only."""
        raise CapabilityError(f"{type(self).__name__} is black-box: it gives no input gradients; "
                              "use a black-box (query-only) attack")

    def fingerprint(self) -> str:
        return hashlib.sha256(repr((type(self).__name__, self.n_classes, self.input_shape))
                              .encode()).hexdigest()


class TorchClassifier(Classifier):
    """A PyTorch module that maps float inputs ``(n, *input_shape)`` to logits ``(n, C)``."""

    capabilities = ClassifierCapabilities(probabilities=True, logits=True, gradients=True)

    def __init__(self, module, *, n_classes: int, input_shape: tuple[int, ...],
                 batch_size: int = 1024, device: str = "cpu"):
        super().__init__(n_classes=n_classes, input_shape=input_shape)
        self.module = module.to(device).eval()
        self.batch_size = int(batch_size)
        self.device = device

    def logits(self, x) -> np.ndarray:
        import torch

        x = self._check(x)
        self.queries += len(x)
        out = []
        with torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                xb = torch.from_numpy(x[i:i + self.batch_size]).to(self.device)
                out.append(self.module(xb).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_classes))

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import softmax

        z = self.logits(x)
        self.queries -= len(x)  # counted once, by predict_proba
        return softmax(z, axis=1)

    def input_gradient(self, x, target) -> tuple[np.ndarray, np.ndarray]:
        import torch

        x = self._check(x)
        target = np.broadcast_to(np.asarray(target, dtype=np.int64), (len(x),))
        self.queries += len(x)
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).requires_grad_(True)
        logp = torch.log_softmax(self.module(xt).double(), dim=1)
        picked = logp[torch.arange(len(x)), torch.from_numpy(target.copy()).to(self.device)]
        (grad,) = torch.autograd.grad(picked.sum(), xt)
        return picked.detach().cpu().numpy(), grad.cpu().numpy()

    def fingerprint(self) -> str:
        h = hashlib.sha256(super().fingerprint().encode())
        for name, t in sorted(self.module.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


class SklearnClassifier(Classifier):
    """A fitted scikit-learn estimator with ``predict_proba`` (black-box).

    Labels must be ``0 .. n_classes-1``; ``classes_`` is checked so a model fitted on a subset of
    classes is not silently misaligned.
    """

    def __init__(self, estimator, *, input_shape: tuple[int, ...] | None = None):
        if not hasattr(estimator, "predict_proba"):
            raise InputError(f"{type(estimator).__name__} has no predict_proba; leakaudit needs "
                             "class probabilities (e.g. SVC(probability=True))")
        classes = np.asarray(getattr(estimator, "classes_", []))
        if classes.size == 0:
            raise InputError(f"{type(estimator).__name__} is not fitted (no classes_)")
        if not np.array_equal(classes, np.arange(len(classes))):
            raise InputError(f"estimator classes_ are {classes.tolist()[:10]}; leakaudit expects "
                             "labels 0..C-1 (encode them with LabelEncoder first)")
        n_features = getattr(estimator, "n_features_in_", None)
        shape = input_shape or ((int(n_features),) if n_features is not None else None)
        if shape is None:
            raise InputError("input_shape is needed: the estimator does not record n_features_in_")
        super().__init__(n_classes=len(classes), input_shape=shape)
        self.estimator = estimator

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(x.reshape(len(x), -1))


class DefendedOutputs(Classifier):
    """Base of the output defenses: a black-box view of ``inner`` that post-processes its
    probabilities. Gradients and logits are hidden (the defense is the API, not the model)."""

    capabilities = ClassifierCapabilities(probabilities=True, logits=False, gradients=False)
    defense = "none"

    def __init__(self, inner: Classifier):
        super().__init__(n_classes=inner.n_classes, input_shape=inner.input_shape)
        self.inner = inner

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self._transform(self.inner.predict_proba(x))

    def _transform(self, p: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.defense}:{self.inner.fingerprint()}".encode()).hexdigest()


class RoundedOutputs(DefendedOutputs):
    """Probabilities rounded to ``decimals`` decimal places (Fredrikson et al. 2015, §7: rounding
    confidences to one decimal defeats much of MI-Face). Rows need not sum to 1 any more."""

    def __init__(self, inner: Classifier, *, decimals: int):
        super().__init__(inner)
        self.decimals = int(decimals)
        self.defense = f"rounded_{self.decimals}"

    def _transform(self, p: np.ndarray) -> np.ndarray:
        return np.round(p, self.decimals)


class LabelOnlyOutputs(DefendedOutputs):
    """Only the top-1 label, returned as a one-hot row (the API reveals no confidence)."""

    capabilities = ClassifierCapabilities(probabilities=False, logits=False, gradients=False)
    defense = "label_only"

    def _transform(self, p: np.ndarray) -> np.ndarray:
        out = np.zeros_like(p)
        out[np.arange(len(p)), p.argmax(axis=1)] = 1.0
        return out
