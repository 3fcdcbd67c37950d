"""Shared pieces of the class-inversion attacks: the stopping rule, the image prior, the result.

Model inversion (Fredrikson, Jha & Ristenpart, CCS 2015, "Model Inversion Attacks that Exploit
Confidence Information and Basic Countermeasures") searches the input domain for an ``x`` that
minimizes

    c(x) = 1 - p(t | x) + λ_tv · TV²(x) + λ_2 · ||x - x0||² / d

where ``t`` is the target class, ``TV²`` is the squared total variation of ``x`` seen as an image
(sum of squared differences between horizontally and vertically adjacent pixels; a smoothness prior
that keeps the optimizer away from adversarial high-frequency noise), ``x0`` is the starting point
and ``d`` the number of input dimensions. ``1 - p(t | x)`` is the term only the model can answer;
the prior terms are computed locally and cost no query.

Polarity: the score of a reconstruction is ``p(t | x)`` under the target — higher = more leaked
(the model is more confident that the reconstruction is its class).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leakaudit.registry import View
from leakaudit.errors import InputError

#: Class-inversion attacks by name (``mi_face``, ``nes``): the ``attacks`` of the registry whose
#: family is ``inversion``. Each is a class with ``threat_model``, ``doc_uri``, ``tags`` and an
#: ``invert(target, classes, *, start, seed, progress)`` method.
INVERSION_ATTACKS = View("attacks", family="inversion")

FREDRIKSON_2015 = "https://doi.org/10.1145/2810103.2813677"


class PlateauStop:
    """Per-row stopping rule of MI-Face, vectorized over a batch of optimizations.

    A row stops when its cost falls below ``gamma`` (good enough) OR when its best cost has not
    improved by more than ``min_delta`` for ``patience`` consecutive updates (plateau). The
    widely copied reference implementation (ART ``MIFace.infer``) computes
    ``active = (cost <= threshold) + (cost >= max(window))``, i.e. it keeps a row running under
    exactly the two conditions under which it should stop; this class is tested on scripted cost
    sequences, next to a transcription of that line.

    ``update(cost)`` takes the costs of the still-active rows' current iterates (an array of
    length ``n``; stopped rows are ignored) and returns the boolean ``active`` mask after the
    update. ``best`` holds each row's lowest cost seen, ``best_step`` the update at which it was
    seen, ``reason`` why each stopped row stopped (``"gamma"``, ``"plateau"``) or ``None``.
    """

    def __init__(self, n: int, *, patience: int, gamma: float, min_delta: float):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = int(patience)
        self.gamma = float(gamma)
        self.min_delta = float(min_delta)
        self.best = np.full(n, np.inf)
        self.best_step = np.full(n, -1, dtype=np.int64)
        self.since_improved = np.zeros(n, dtype=np.int64)
        self.active = np.ones(n, dtype=bool)
        self.reason: list[str | None] = [None] * n
        self.step = 0

    def update(self, cost: np.ndarray) -> np.ndarray:
        cost = np.asarray(cost, dtype=np.float64)
        if cost.shape != self.best.shape:
            raise ValueError(f"expected {self.best.shape[0]} costs, got {cost.shape}")
        act = self.active
        improved = act & (cost < self.best - self.min_delta)
        better = act & (cost < self.best)
        self.best_step[better] = self.step
        self.best[better] = cost[better]
        self.since_improved[improved] = 0
        self.since_improved[act & ~improved] += 1
        for i in np.flatnonzero(act & (cost < self.gamma)):
            self.active[i] = False
            self.reason[i] = "gamma"
        for i in np.flatnonzero(self.active & (self.since_improved >= self.patience)):
            self.active[i] = False
            self.reason[i] = "plateau"
        self.step += 1
        return self.active.copy()


def image_shape_for(input_shape: tuple[int, ...], image_shape: tuple[int, int] | None) -> tuple[int, int] | None:
    """The 2-D grid the smoothness prior works on: ``image_shape`` if given (its product must equal
    the number of inputs), else the last two input dimensions when the input is at least 2-D."""
    n = int(np.prod(input_shape))
    if image_shape is not None:
        h, w = (int(v) for v in image_shape)
        if h * w == 0 or n % (h * w):
            raise InputError(f"image_shape {image_shape} does not tile inputs of shape {input_shape}")
        return h, w
    if len(input_shape) >= 2:
        return int(input_shape[-2]), int(input_shape[-1])
    return None


def tv2(x: np.ndarray, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Squared total variation of each row of ``x`` (n, …) seen as ``(-1, h, w)`` images, and its
    gradient (same shape as ``x``). TV²(x) = Σ (x[i+1,j]-x[i,j])² + Σ (x[i,j+1]-x[i,j])².

    >>> v, g = tv2(np.array([[0., 1., 0., 0.]]), (2, 2))   # [[0,1],[0,0]]
    >>> float(v[0]), g[0].tolist()
    (2.0, [-2.0, 4.0, 0.0, -2.0])
    """
    h, w = image_shape
    n = len(x)
    im = x.reshape(n, -1, h, w).astype(np.float64)
    dv = im[:, :, 1:, :] - im[:, :, :-1, :]
    dh = im[:, :, :, 1:] - im[:, :, :, :-1]
    val = (dv ** 2).sum(axis=(1, 2, 3)) + (dh ** 2).sum(axis=(1, 2, 3))
    g = np.zeros_like(im)
    g[:, :, 1:, :] += 2 * dv
    g[:, :, :-1, :] -= 2 * dv
    g[:, :, :, 1:] += 2 * dh
    g[:, :, :, :-1] -= 2 * dh
    return val, g.reshape(x.shape)


@dataclass(frozen=True)
class Prior:
    """The local (query-free) part of the cost: λ_tv · TV²(x) + λ_2 · ||x - x0||² / d."""

    tv_weight: float
    l2_weight: float
    image_shape: tuple[int, int] | None

    def __call__(self, x: np.ndarray, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(x)
        d = x[0].size if n else 1
        val = np.zeros(n)
        grad = np.zeros(x.shape, dtype=np.float64)
        if self.tv_weight:
            if self.image_shape is None:
                raise InputError("the smoothness prior (tv_weight > 0) needs image_shape for 1-D inputs")
            v, g = tv2(x, self.image_shape)
            val += self.tv_weight * v
            grad += self.tv_weight * g
        if self.l2_weight:
            diff = (x - x0).astype(np.float64)
            val += self.l2_weight * (diff.reshape(n, -1) ** 2).sum(1) / d
            grad += self.l2_weight * 2 * diff / d
        return val, grad


def starting_points(start: Any, classes: list[int], input_shape: tuple[int, ...]) -> np.ndarray:
    """One starting input per class: ``start`` is an array of shape ``input_shape`` (shared), or
    ``(len(classes), *input_shape)`` (one per class)."""
    s = np.asarray(start, dtype=np.float64)
    if s.shape == tuple(input_shape):
        return np.repeat(s[None], len(classes), axis=0)
    if s.shape == (len(classes), *input_shape):
        return s.copy()
    raise InputError(f"start has shape {s.shape}; expected {tuple(input_shape)} or "
                     f"{(len(classes), *input_shape)}")


@dataclass
class InversionResult:
    """Reconstructions of ``classes`` (row i is the attack's best input for ``classes[i]``)."""

    attack: str
    classes: list[int]
    x: np.ndarray  # (k, *input_shape) float
    confidence: np.ndarray  # (k,) p(class | x) under the target as the attack saw it (higher = more leaked)
    cost: np.ndarray  # (k,) the best cost reached
    steps: np.ndarray  # (k,) optimizer steps taken per class
    queries: np.ndarray  # (k,) target queries spent per class (forward or gradient calls)
    stop_reason: list[str]
    params: dict[str, Any] = field(default_factory=dict)
