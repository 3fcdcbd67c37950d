"""Classifier targets: class probabilities for a batch of inputs, gradients where white-box.

One interface for every classifier the tool audits (membership inference, model inversion):

- :class:`TorchClassifier`: any ``torch.nn.Module`` mapping a float tensor ``(n, *input_shape)`` to
  logits ``(n, n_classes)``. White-box: logits and input gradients.
- :class:`SklearnClassifier`: any fitted estimator with ``predict_proba``. Black-box.
- :class:`FunctionClassifier`: any function ``x -> probabilities``. Black-box.

:func:`classifier_from` wraps any of these Python objects; files and folders (``hf:``, ``onnx:``,
``skops:``, leakaudit's own folder, an HTTP endpoint) load through
:func:`leakaudit.targets.classifier_formats.load_classifier_target`.

Each backend declares what it can answer in ``capabilities`` (:class:`ClassifierCapabilities`);
an audit runs the attacks the target can serve and records the others as skipped, naming the
capability they need. Inputs are numpy arrays of shape ``(n, *input_shape)`` (texts for a text
classifier); probabilities come back as float64 ``(n, n_classes)`` rows that sum to 1. Every
example sent to the model is counted in ``queries`` (the query budget of black-box attacks is
checked against it).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import numpy as np

from leakaudit.errors import CapabilityError, InputError


def check_probability_rows(p: np.ndarray, who: str, *, sums: bool = True) -> None:
    """Every row of ``p`` must be a probability vector: finite, each value in [0, 1], and (with
    ``sums``) summing to 1 within ``0.001 + 0.005 × classes``, which answers rounded to two
    decimals pass and scores, logits or negative "probabilities" do not: they would otherwise be
    attacked as if they were probabilities, and give wrong results without a word."""
    if not np.all(np.isfinite(p)):
        raise InputError(f"{who}: the probabilities contain NaN or infinity")
    bad = (p < -1e-6).any(axis=1) | (p > 1 + 1e-6).any(axis=1)
    if sums:
        bad |= np.abs(p.sum(axis=1) - 1) > 1e-3 + 0.005 * p.shape[1]
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{who}: row {i} of the answer is not a probability vector (min "
                         f"{p[i].min():.4g}, max {p[i].max():.4g}, sum {p[i].sum():.4g}); each "
                         "value must be in [0, 1] and each row must sum to 1")

@dataclass(frozen=True)
class ClassifierCapabilities:
    """What a classifier backend can answer. Attacks check these and refuse clearly; audits skip
    what a target cannot serve (:meth:`missing`, :func:`classifier_skip`)."""

    probabilities: bool = True  #: the full probability vector (False: top-1 label only)
    logits: bool = False  #: raw logits (white-box, or an API that returns them)
    gradients: bool = False  #: d log p(class | x) / dx
    labels: bool = True  #: the top-1 label of any input (every classifier answers this)
    float_inputs: bool = True  #: inputs are float arrays that can be perturbed (False: text)
    batch_size: int | None = None  #: most inputs sent in one call (None: no limit)

    #: Each capability, with what it means, for skip messages and documentation.
    DESCRIPTIONS = {
        "probabilities": "the full vector of class probabilities",
        "logits": "raw logits",
        "gradients": "white-box input gradients of log p(class | x)",
        "labels": "the top-1 label of a query",
        "float_inputs": "numeric inputs that can be perturbed (not text)",
    }

    @property
    def label_only(self) -> bool:
        """Only the top-1 label is answered (no confidence)."""
        return self.labels and not self.probabilities

    def missing(self, *names: str) -> list[str]:
        """The capabilities among ``names`` that this target lacks (empty: all there)."""
        unknown = [n for n in names if n not in self.DESCRIPTIONS]
        if unknown:
            raise ValueError(f"unknown classifier capabilities {unknown}; known: "
                             f"{list(self.DESCRIPTIONS)}")
        return [n for n in names if not getattr(self, n)]

    def require(self, *names: str, who: str) -> None:
        miss = self.missing(*names)
        if miss:
            raise CapabilityError(f"{who} needs {', '.join(miss)} "
                                  f"({'; '.join(self.DESCRIPTIONS[m] for m in miss)}), "
                                  "which this classifier does not provide")

    def to_dict(self) -> dict:
        return {**{n: getattr(self, n) for n in self.DESCRIPTIONS}, "label_only": self.label_only,
                "batch_size": self.batch_size}


def classifier_skip(attack: str, needs, target: "Classifier") -> dict | None:
    """The skip record of ``attack`` on ``target`` when it lacks capabilities in ``needs``
    (``{"attack", "skipped", "needs", "missing", "reason"}``), or None when it can run."""
    from leakaudit.targets.base import skip_record

    caps = target.capabilities
    if not caps.missing(*needs):
        return None
    return skip_record(attack, needs, caps, target=getattr(target, "source", None) or "the classifier")


class Classifier(ABC):
    """A classifier under audit. Subclasses implement :meth:`_predict_proba`."""

    capabilities: ClassifierCapabilities = ClassifierCapabilities()
    #: answers are checked to be probability vectors; a wrapper that rounds them says False here
    #: (its rows are still checked to lie in [0, 1])
    rows_sum_to_one: bool = True

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
        check_probability_rows(p, getattr(self, "url", None) or type(self).__name__,
                               sums=self.rows_sum_to_one)
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
        self.capabilities = replace(type(self).capabilities, batch_size=self.batch_size)

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
        hash_state(self.module, h)
        return h.hexdigest()


def hash_state(module, h) -> None:
    """Feed every tensor of ``module``'s state dict (name, dtype, bytes) into the hash ``h``."""
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())


class SklearnClassifier(Classifier):
    """A fitted scikit-learn estimator with ``predict_proba`` (black-box).

    Labels must be ``0 .. n_classes-1``; ``classes_`` is checked so a model fitted on a subset of
    classes is not silently misaligned.
    """

    def __init__(self, estimator, *, input_shape: tuple[int, ...] | None = None,
                 batch_size: int | None = None):
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
        self.batch_size = batch_size  # inputs per predict_proba call (None: all at once)
        self.capabilities = replace(type(self).capabilities, batch_size=batch_size)

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        step = self.batch_size or len(flat)
        return np.concatenate([self.estimator.predict_proba(flat[i:i + step])
                               for i in range(0, len(flat), step)])


class FunctionClassifier(Classifier):
    """Any function ``f(x) -> probabilities`` (black-box): ``x`` a float32 array
    ``(n, *input_shape)``, the answer ``(n, n_classes)`` rows of probabilities. Its fingerprint
    names the function (module and qualified name), not its behaviour."""

    capabilities = ClassifierCapabilities(probabilities=True, logits=False, gradients=False)

    def __init__(self, fn, *, n_classes: int, input_shape: tuple[int, ...]):
        if not callable(fn):
            raise InputError(f"{type(fn).__name__} is not callable")
        super().__init__(n_classes=n_classes, input_shape=input_shape)
        self.fn = fn

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(x), dtype=np.float64)

    def fingerprint(self) -> str:
        qual = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        name = f"{getattr(self.fn, '__module__', '')}.{qual}"
        return hashlib.sha256(f"function:{name}:{super().fingerprint()}".encode()).hexdigest()


class _LogitsOf:
    """Adapts a module whose output carries ``.logits`` (a transformers model) to a plain
    ``x -> logits`` module; built lazily so this module imports without torch. With
    ``pixel_shape``, each input is reshaped to it first (flattened inputs for an image model)."""

    @staticmethod
    def wrap(module, pixel_shape: tuple[int, ...] | None = None):
        import torch

        class LogitsOf(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                if pixel_shape is not None:
                    x = x.reshape(x.shape[0], *pixel_shape)
                out = self.inner(x)
                return out.logits if hasattr(out, "logits") else out

        return LogitsOf(module)


def classifier_from(obj, *, n_classes: int | None = None, input_shape: tuple[int, ...] | None = None,
                    batch_size: int = 1024, device: str = "cpu") -> Classifier:
    """The classifier target of a Python object, for the Python API:

    - a :class:`Classifier`: returned as is;
    - a ``torch.nn.Module`` mapping float ``(n, *input_shape)`` to logits (or to an output with
      ``.logits``, as transformers models give): white-box :class:`TorchClassifier`;
    - a fitted scikit-learn estimator (``predict_proba`` and ``classes_``): :class:`SklearnClassifier`;
    - any other object with ``predict_proba``, or a function ``x -> probabilities``:
      :class:`FunctionClassifier`.

    ``input_shape`` is needed unless the object records it (scikit-learn's ``n_features_in_``);
    ``n_classes``, when not given or recorded, is read from one call on an all-zero input (a setup
    call, not counted as a query).
    """
    if isinstance(obj, Classifier):
        return obj
    try:
        import torch
        is_module = isinstance(obj, torch.nn.Module)
    except ImportError:  # pragma: no cover - torch is a dependency
        is_module = False
    if hasattr(obj, "predict_proba") and hasattr(obj, "classes_") and not is_module:
        return SklearnClassifier(obj, input_shape=input_shape)
    if input_shape is None:
        raise InputError(f"input_shape is needed to wrap a {type(obj).__name__} (the shape of one "
                         "input, e.g. (64,) or (3, 32, 32))")
    shape = tuple(int(d) for d in input_shape)
    if is_module:
        with torch.no_grad():  # one setup call: does the output carry .logits, how many classes
            out = obj.to(device).eval()(torch.zeros((1, *shape), device=device))
        module = _LogitsOf.wrap(obj) if hasattr(out, "logits") else obj
        n = n_classes or _probe_width(lambda z: getattr(out, "logits", out).cpu().numpy(), shape)
        return TorchClassifier(module, n_classes=n, input_shape=shape, batch_size=batch_size,
                               device=device)
    fn = obj.predict_proba if hasattr(obj, "predict_proba") else obj
    if not callable(fn):
        raise InputError(f"cannot make a classifier of a {type(obj).__name__}: give a torch module, "
                         "an object with predict_proba, or a function x -> probabilities")
    return FunctionClassifier(fn, n_classes=n_classes or _probe_width(fn, shape), input_shape=shape)


def _probe_width(fn, shape: tuple[int, ...]) -> int:
    """The number of classes: the width of ``fn``'s answer to one all-zero input."""
    out = np.asarray(fn(np.zeros((1, *shape), dtype=np.float32)))
    if out.ndim != 2 or out.shape[0] != 1:
        raise InputError(f"the classifier answered shape {out.shape} for one input; expected (1, n_classes)")
    return int(out.shape[1])


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
        self.rows_sum_to_one = False

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
