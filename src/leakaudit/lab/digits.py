"""The classifier lab's data: scikit-learn's bundled 8×8 handwritten digits (no download).

1,797 images, 10 classes, pixel values 0..16 scaled here to [0, 1]. Split deterministically by
seed into disjoint parts so a target, an independent evaluation classifier and shadow/reference
models never share a record unless a scenario says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SHAPE = (8, 8)
N_CLASSES = 10


@dataclass(frozen=True)
class Digits:
    x: np.ndarray  # (n, 64) float32 in [0, 1]
    y: np.ndarray  # (n,) int64 in 0..9
    ids: np.ndarray  # (n,) int64 index into sklearn's ordering

    def subset(self, idx) -> "Digits":
        idx = np.asarray(idx)
        return Digits(self.x[idx], self.y[idx], self.ids[idx])

    def __len__(self) -> int:
        return len(self.y)


def load_digits_data() -> Digits:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Digits(x=(d.data / 16.0).astype(np.float32), y=d.target.astype(np.int64),
                  ids=np.arange(len(d.target), dtype=np.int64))


def split_digits(data: Digits, fractions: dict[str, float], *, seed: int) -> dict[str, Digits]:
    """Disjoint, stratified, seeded parts, e.g. ``{"target": .5, "eval": .5}``; fractions sum ≤ 1."""
    if sum(fractions.values()) > 1 + 1e-9:
        raise ValueError(f"fractions sum to {sum(fractions.values())} > 1")
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {name: [] for name in fractions}
    for c in range(N_CLASSES):
        idx = rng.permutation(np.flatnonzero(data.y == c))
        cum = 0.0
        for name, f in fractions.items():  # cumulative boundaries: fractions summing to 1 use all
            start, cum = int(round(cum * len(idx))), cum + f
            parts[name].extend(idx[start:int(round(min(cum, 1.0) * len(idx)))].tolist())
    return {name: data.subset(np.sort(np.asarray(ix, dtype=np.int64))) for name, ix in parts.items()}
