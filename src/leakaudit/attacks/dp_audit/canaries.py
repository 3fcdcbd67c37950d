"""Audit examples for classifiers and their random inclusion.

Two kinds of classifier canaries, following the DP-auditing literature:

- ``crafted`` (Jagielski et al. 2020 "ClipBKD"-style out-of-distribution inputs; Nasr et al. 2021
  "crafted inputs"): random binary patterns in [0, 1]^d, each with a uniformly random label. Far
  from the data, a canary's label is learned only from the canary itself, so membership shows.
- ``mislabelled`` (Steinke et al. 2023, §6; ml_privacy_meter's DP audit): real records from a
  pool the model is not otherwise trained on, each relabelled to a random *different* class.

- ``clipbkd`` (Jagielski, Ullman & Oprea 2020, "ClipBKD"): the direction of least variance of
  the training data (its last principal component) scaled to the largest record norm, with a
  random label. Gradients of the data barely touch that direction, so the canary's own (clipped)
  gradient is not washed out: the strongest input-space canary of the multi-run audit. There
  are only d such directions, so at most d canaries (the d smallest components).

Inclusion (Steinke et al. 2023): each of m canaries enters training independently with
probability ½ (:func:`coin_flips`). Every array here is drawn from ``numpy.random.default_rng``
seeded by the caller, so a canary set is reproducible from (kind, m, seed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

CANARY_KINDS = ("crafted", "mislabelled", "clipbkd")


@dataclass(frozen=True)
class ClassifierCanaries:
    """``x`` (m, d) float32 inputs, ``y`` (m,) int64 canary labels, ``kind``."""

    x: np.ndarray
    y: np.ndarray
    kind: str

    def __len__(self) -> int:
        return len(self.y)

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.kind.encode())
        h.update(np.ascontiguousarray(self.x, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(self.y, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


def crafted_canaries(m: int, *, input_dim: int, n_classes: int, seed: int,
                     on_fraction: float = 0.5) -> ClassifierCanaries:
    """m random binary patterns (each pixel on with probability ``on_fraction``) with uniform labels.

    >>> c = crafted_canaries(4, input_dim=3, n_classes=10, seed=0)
    >>> c.x.shape, c.x.dtype, sorted(set(c.x.ravel().tolist())) == [0.0, 1.0], bool(c.y.max() < 10)
    ((4, 3), dtype('float32'), True, True)
    """
    if m < 1 or input_dim < 1 or n_classes < 2:
        raise ValueError(f"need m >= 1, input_dim >= 1, n_classes >= 2; got {m}, {input_dim}, {n_classes}")
    rng = np.random.default_rng(seed)
    x = (rng.random((m, input_dim)) < on_fraction).astype(np.float32)
    return ClassifierCanaries(x=x, y=rng.integers(0, n_classes, m).astype(np.int64), kind="crafted")


def mislabelled_canaries(x_pool: np.ndarray, y_pool: np.ndarray, m: int, *, n_classes: int,
                         seed: int) -> ClassifierCanaries:
    """m records drawn without replacement from (``x_pool``, ``y_pool``), each given a random label
    other than its own (true label + uniform offset in 1..n_classes−1, mod n_classes).

    >>> c = mislabelled_canaries(np.eye(5, dtype=np.float32), np.arange(5) % 3, 4, n_classes=3, seed=0)
    >>> len(c), bool(np.all(c.y != (np.argmax(c.x, 1) % 3)))
    (4, True)
    """
    x_pool = np.asarray(x_pool, dtype=np.float32)
    y_pool = np.asarray(y_pool, dtype=np.int64)
    if m > len(x_pool):
        raise ValueError(f"need m <= pool size; got m={m}, pool of {len(x_pool)}")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x_pool), m, replace=False)
    y = (y_pool[idx] + rng.integers(1, n_classes, m)) % n_classes
    return ClassifierCanaries(x=x_pool[idx].reshape(m, -1), y=y.astype(np.int64), kind="mislabelled")


def coin_flips(m: int, *, seed: int) -> np.ndarray:
    """m independent fair coins, 0/1 int64: canary i is trained on iff ``flips[i] == 1``.

    >>> coin_flips(8, seed=0).tolist()
    [1, 1, 1, 0, 0, 0, 0, 0]
    """
    return np.random.default_rng(seed).integers(0, 2, m).astype(np.int64)


def clipbkd_canaries(x_data: np.ndarray, m: int, *, n_classes: int, seed: int) -> ClassifierCanaries:
    """m ClipBKD canaries: the m principal directions of least variance of ``x_data`` (centred),
    each scaled to the largest L2 norm of a record, with uniform random labels.

    >>> x = np.c_[np.random.default_rng(0).normal(size=(50, 2)), np.zeros(50)]   # 3rd coordinate constant
    >>> c = clipbkd_canaries(x, 1, n_classes=3, seed=0)
    >>> bool(np.allclose(np.abs(c.x[0]), [0, 0, np.linalg.norm(x, axis=1).max()], atol=1e-5)), c.kind
    (True, 'clipbkd')
    """
    x = np.asarray(x_data, dtype=np.float64).reshape(len(x_data), -1)
    if not 1 <= m <= x.shape[1]:
        raise ValueError(f"ClipBKD canaries: need 1 <= m <= input dimension {x.shape[1]}; got m={m}")
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=True)
    scale = float(np.linalg.norm(x, axis=1).max())
    rng = np.random.default_rng(seed)
    dirs = vt[::-1][:m] * scale  # least variance first
    return ClassifierCanaries(x=dirs.astype(np.float32), y=rng.integers(0, n_classes, m).astype(np.int64),
                              kind="clipbkd")
