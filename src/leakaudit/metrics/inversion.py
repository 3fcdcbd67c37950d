"""How well class reconstructions match their class. numpy only.

Two objective judges of a model-inversion result (Fredrikson et al. 2015 used human raters; the
modern protocol — e.g. Zhang et al., CVPR 2020, "The Secret Revealer" — uses an independent
evaluation classifier trained on other data):

- attack accuracy: the fraction of reconstructions that the evaluation classifier puts in its
  target class, top-1 or within the top-k;
- class-mean distance: the Euclidean distance of each reconstruction to the mean training input
  of its own class versus the means of the other classes; "nearest own mean" counts
  reconstructions closer to their own class mean than to any other.

Higher = more leaked for every rate here.
"""

from __future__ import annotations

import numpy as np


def topk_hits(probs: np.ndarray, classes, k: int) -> np.ndarray:
    """Boolean ``(n,)``: is ``classes[i]`` among the ``k`` most probable classes of row ``i``?
    Ties are broken toward the lower class index (stable sort), so a flat row is not a hit for
    every class.

    >>> topk_hits(np.array([[.1, .6, .3], [.5, .2, .3]]), [2, 2], 1).tolist()
    [False, False]
    >>> topk_hits(np.array([[.1, .6, .3], [.5, .2, .3]]), [2, 2], 2).tolist()
    [True, True]
    """
    probs = np.asarray(probs, dtype=np.float64)
    classes = np.asarray(classes, dtype=np.int64)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return (order == classes[:, None]).any(axis=1)


def class_mean_distances(x: np.ndarray, class_means: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(n, C)`` from each flattened row of ``x`` to each class mean.

    >>> class_mean_distances(np.array([[0., 0.]]), np.array([[3., 4.], [0., 1.]])).tolist()
    [[5.0, 1.0]]
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    m = np.asarray(class_means, dtype=np.float64).reshape(len(class_means), -1)
    return np.sqrt(((x[:, None, :] - m[None, :, :]) ** 2).sum(-1))


def nearest_mean(x: np.ndarray, class_means: np.ndarray, classes) -> dict[str, np.ndarray]:
    """Per row: distance to its own class mean, to the nearest other class mean, the class of the
    nearest mean, and whether that is its own class."""
    classes = np.asarray(classes, dtype=np.int64)
    d = class_mean_distances(x, class_means)
    own = d[np.arange(len(d)), classes]
    other = d.copy()
    other[np.arange(len(d)), classes] = np.inf
    return {"dist_own": own, "dist_other": other.min(axis=1), "nearest": d.argmin(axis=1),
            "nearest_is_own": d.argmin(axis=1) == classes}
