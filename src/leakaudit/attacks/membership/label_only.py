"""Label-only membership inference: the target answers the top-1 label and nothing else.

A model fits its training records with margin: a member tends to sit further from the decision
boundary and to keep its label under small changes (Choquette-Choo, Tramèr, Carlini & Papernot,
ICML 2021, "Label-Only Membership Inference Attacks", arXiv 2007.14321; Li & Zhang, CCS 2021,
arXiv 2007.15528). Every attack here queries the target, counts each query against a per-record
``budget``, and scores higher = more likely a member:

==================  =============================================================================
name                score
==================  =============================================================================
label_gap           1 if the target labels the record correctly, else 0 (the gap attack; 1 query)
label_augment       how many of the record and its augmented copies (shifts by ≤ ``max_shift``
                    pixels of an image, Gaussian noise of each σ in ``noise_sigmas``) keep the
                    true label (Choquette-Choo et al. §4: the data-augmentation attack)
boundary_distance   the L2 distance from the record to the decision boundary (0 if it is already
                    misclassified), found HopSkipJump-style: a binary search toward each of the
                    ``n_starts`` nearest audited records that the target labels differently
                    (random points of the input domain when there are none), then
                    ``grad_steps`` steps of HopSkipJump's boundary-normal estimate from
                    ``n_grad`` label queries and a geometric step, each closing with a binary
                    search back to the boundary (Chen, Jordan & Wainwright 2020, arXiv 1904.02144)
==================  =============================================================================

Query accounting: ``attack.queries_`` holds the queries spent on each record (the label of the
record itself included), never more than ``budget``; the target's own ``queries`` counter sees
the same queries. The starting points of the boundary search are other audited records whose label
is already known from their first query, so they cost nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leakaudit.attacks.membership.base import MembershipAttack, validated
from leakaudit.errors import InputError

CHOQUETTE_CHOO_2021 = "https://arxiv.org/abs/2007.14321"


@dataclass
class LabelQueries:
    """What a label-only attack works with: the target (asked only for labels), the audited
    records ``x`` ``(n, *input_shape)`` with their true labels ``y`` ``(n,)``, the input domain
    ``clip`` ``(lo, hi)`` (None: unbounded) and, for shift augmentations, the 2-D ``image_shape``
    of each input (None: the last two input dimensions if there are two, else no shifts)."""

    target: object
    x: np.ndarray
    y: np.ndarray
    clip: tuple[float, float] | None = (0.0, 1.0)
    image_shape: tuple[int, int] | None = None

    def __post_init__(self):
        self.x = np.asarray(self.x, dtype=np.float64)
        self.y = np.asarray(self.y, dtype=np.int64)
        if len(self.x) != len(self.y):
            raise InputError(f"{len(self.x)} records but {len(self.y)} labels")
        self.target.capabilities.require("labels", "float_inputs", who="a label-only attack")

    def __len__(self) -> int:
        return len(self.y)


class _Oracle:
    """Top-1 labels of the target, with every query charged to the record it is spent on."""

    def __init__(self, q: LabelQueries, budget: int):
        self.q = q
        self.shape = tuple(q.target.input_shape)
        self.budget = int(budget)
        self.spent = np.zeros(len(q), dtype=np.int64)

    def left(self, idx: np.ndarray) -> np.ndarray:
        return self.budget - self.spent[idx]

    def labels(self, idx: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Labels of ``xs`` (flat rows), the i-th charged to record ``idx[i]``."""
        idx = np.asarray(idx, dtype=np.int64)
        np.add.at(self.spent, idx, 1)
        if (self.spent[idx] > self.budget).any():  # a bug in an attack, never the user's input
            raise RuntimeError("label-only attack exceeded its per-record query budget")
        if self.q.clip is not None:
            xs = np.clip(xs, *self.q.clip)
        return self.q.target.predict(xs.reshape((len(xs), *self.shape)).astype(np.float32))


class LabelOnlyAttack(MembershipAttack):
    kind = "label_only"
    capabilities = ("labels", "float_inputs")

    @property
    def label(self) -> str:
        return f"{self.name}(budget={self.budget})"  # the other settings are in params()

    def _check_budget(self, needed: int) -> None:
        if self.budget < needed:
            raise InputError(f"{self.name} needs at least {needed} queries per record; budget is "
                             f"{self.budget}")


@validated
class LabelGapAttack(LabelOnlyAttack):
    """The gap attack: a record the target labels correctly is called a member (1 query)."""

    name = "label_gap"
    threat_model = "label-only: the top-1 label of the record"
    doc_uri = CHOQUETTE_CHOO_2021

    def __init__(self, *, budget: int):
        self.budget = budget

    def score(self, q: LabelQueries) -> np.ndarray:
        self._check_budget(1)
        oracle = _Oracle(q, self.budget)
        idx = np.arange(len(q))
        out = (oracle.labels(idx, q.x.reshape(len(q), -1)) == q.y).astype(np.float64)
        self.queries_ = oracle.spent
        return out


def shift_images(x: np.ndarray, image_shape: tuple[int, int], dy: int, dx: int) -> np.ndarray:
    """Rows of ``x`` (n, …) seen as ``(-1, h, w)`` images, moved ``dy`` down and ``dx`` right,
    with zeros shifted in.

    >>> shift_images(np.arange(4.)[None], (2, 2), 0, 1).tolist()
    [[0.0, 0.0, 0.0, 2.0]]
    """
    h, w = image_shape
    im = x.reshape(len(x), -1, h, w)
    out = np.zeros_like(im)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[:, :, yd, xd] = im[:, :, ys, xs]
    return out.reshape(x.shape)


@validated
class AugmentationAttack(LabelOnlyAttack):
    """Data-augmentation attack: the number of the record and its augmented copies that keep
    the true label. Copies: every shift by at most ``max_shift`` pixels in each direction (images
    only), and ``n_noise`` Gaussian-noise copies for each σ in ``noise_sigmas`` (drawn with
    ``seed``). Queries per record: 1 + copies, which must fit in ``budget``."""

    name = "label_augment"
    threat_model = "label-only: top-1 labels of the record and of a few perturbed copies"
    doc_uri = CHOQUETTE_CHOO_2021

    def __init__(self, *, budget: int, max_shift: int, noise_sigmas: tuple[float, ...],
                 n_noise: int, seed: int):
        self.budget = budget
        self.max_shift = max_shift
        self.noise_sigmas = tuple(noise_sigmas)
        self.n_noise = n_noise
        self.seed = seed

    def _shifts(self, q: LabelQueries) -> list[tuple[int, int]]:
        r = self.max_shift
        if not r or _image_shape(q) is None:
            return []
        return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]

    def score(self, q: LabelQueries) -> np.ndarray:
        shifts = self._shifts(q)
        self._check_budget(1 + len(shifts) + self.n_noise * len(self.noise_sigmas))
        oracle = _Oracle(q, self.budget)
        n, flat = len(q), q.x.reshape(len(q), -1)
        idx = np.arange(n)
        copies = [flat] + [shift_images(flat, _image_shape(q), dy, dx) for dy, dx in shifts]
        rng = np.random.default_rng(self.seed)
        copies += [flat + s * rng.standard_normal(flat.shape) for s in self.noise_sigmas
                   for _ in range(self.n_noise)]
        xs = np.concatenate(copies)
        kept = oracle.labels(np.tile(idx, len(copies)), xs).reshape(len(copies), n) == q.y
        self.queries_ = oracle.spent
        return kept.sum(axis=0).astype(np.float64)


def _image_shape(q: LabelQueries) -> tuple[int, int] | None:
    if q.image_shape is not None:
        return tuple(q.image_shape)
    shape = tuple(q.target.input_shape)
    return shape[-2:] if len(shape) >= 2 else None


@validated
class BoundaryDistanceAttack(LabelOnlyAttack):
    """Distance to the decision boundary from label queries (HopSkipJump-style; module
    docstring). ``budget``: queries per record (hard cap). ``n_starts``: differently-labelled
    audited records to search toward. ``tol``: the binary searches stop when the boundary is
    bracketed within ``tol`` (L2, input units). ``grad_steps`` / ``n_grad``: HopSkipJump
    iterations and label queries per boundary-normal estimate; ``delta``: the probe radius as
    a fraction of the current distance. ``seed``: the probe directions."""

    name = "boundary_distance"
    threat_model = "label-only: top-1 labels of chosen inputs (query access)"
    doc_uri = CHOQUETTE_CHOO_2021

    def __init__(self, *, budget: int, n_starts: int, tol: float, grad_steps: int, n_grad: int,
                 delta: float, seed: int):
        self.budget = budget
        self.n_starts = n_starts
        self.tol = tol
        self.grad_steps = grad_steps
        self.n_grad = n_grad
        self.delta = delta
        self.seed = seed

    def score(self, q: LabelQueries) -> np.ndarray:
        self._check_budget(2)
        oracle = _Oracle(q, self.budget)
        n, flat = len(q), q.x.reshape(len(q), -1)
        pred = oracle.labels(np.arange(n), flat)
        dist = np.zeros(n)
        ok = np.flatnonzero(pred == q.y)
        if len(ok):
            best = self._start(oracle, flat, pred, q.y, ok)
            rng = np.random.default_rng(self.seed)
            for step in range(1, self.grad_steps + 1):
                best = self._hsj_step(oracle, flat, q.y, ok, best, step, rng)
            dist[ok] = np.linalg.norm(best - flat[ok], axis=1)
        # no boundary found within the budget: as robust as the most robust record measured
        found = np.isfinite(dist)
        dist[~found] = dist[found].max() if found.any() else 0.0
        self.queries_ = oracle.spent
        return dist

    def _start(self, oracle: _Oracle, flat, pred, y, ok) -> np.ndarray:
        """The nearest boundary point found toward the ``n_starts`` nearest differently-labelled
        records (rows for ``ok``); a record with none keeps an infinitely far point."""
        sq = (flat ** 2).sum(1)
        d2 = np.maximum(sq[ok, None] + sq[None, :] - 2 * flat[ok] @ flat.T, 0.0)
        d2[pred[None, :] == y[ok, None]] = np.inf  # only points the target labels differently
        order = np.argsort(d2, axis=1, kind="stable")[:, : self.n_starts]
        best = np.full((len(ok), flat.shape[1]), np.inf)
        best_d = np.full(len(ok), np.inf)
        for k in range(order.shape[1]):
            j = order[:, k]
            has = np.isfinite(d2[np.arange(len(ok)), j])
            rows = np.flatnonzero(has)
            x0, x1 = flat[ok[rows]], flat[j[rows]]
            t = _bisect(oracle, ok[rows], x0, x1, y[ok[rows]], self.tol)
            pt = x0 + t[:, None] * (x1 - x0)
            d = np.linalg.norm(pt - x0, axis=1)
            better = d < best_d[rows]
            best[rows[better]], best_d[rows[better]] = pt[better], d[better]
        self._random_starts(oracle, flat, y, ok, best, best_d)
        return best

    def _random_starts(self, oracle: _Oracle, flat, y, ok, best, best_d) -> None:
        """Records with no differently-labelled audited record to search toward: up to
        ``n_starts`` uniform random points of the input domain (the data's range when there is
        no ``clip``), each one query; a bisection toward the first that the target labels
        differently. Updates ``best`` / ``best_d`` in place."""
        lost = np.flatnonzero(~np.isfinite(best_d))
        lo, hi = oracle.q.clip if oracle.q.clip is not None else (flat.min(), flat.max())
        rng = np.random.default_rng([self.seed, 1])
        for _ in range(self.n_starts):
            rows = lost[oracle.left(ok[lost]) >= 2]  # a probe and at least one bisection step
            if not len(rows):
                return
            cand = rng.uniform(lo, hi, (len(rows), flat.shape[1]))
            adv = oracle.labels(ok[rows], cand) != y[ok[rows]]
            rows, cand = rows[adv], cand[adv]
            x0 = flat[ok[rows]]
            t = _bisect(oracle, ok[rows], x0, cand, y[ok[rows]], self.tol)
            best[rows] = x0 + t[:, None] * (cand - x0)
            best_d[rows] = np.linalg.norm(best[rows] - x0, axis=1)
            lost = lost[~np.isfinite(best_d[lost])]

    def _hsj_step(self, oracle: _Oracle, flat, y, ok, best, step: int, rng) -> np.ndarray:
        """One HopSkipJump iteration for the records that can afford it: estimate the boundary
        normal at ``best`` from ``n_grad`` label probes, step out along it, search back."""
        x0 = flat[ok]
        dist = np.linalg.norm(best - x0, axis=1)
        rows = np.flatnonzero(np.isfinite(dist) & (dist > 0)
                              & (oracle.left(ok) >= self.n_grad + 4))  # probes, ≤ 3 steps, 1 bisection
        if not len(rows):
            return best
        m, dim = len(rows), flat.shape[1]
        u = rng.standard_normal((m, self.n_grad, dim))
        u /= np.linalg.norm(u, axis=2, keepdims=True)
        radius = np.maximum(self.delta * dist[rows], self.tol)
        probes = best[rows, None, :] + radius[:, None, None] * u
        adv = oracle.labels(np.repeat(ok[rows], self.n_grad), probes.reshape(-1, dim)) \
            .reshape(m, self.n_grad) != y[ok[rows], None]
        phi = np.where(adv, 1.0, -1.0)
        mixed = np.abs(phi.mean(axis=1)) < 1
        phi[mixed] -= phi[mixed].mean(axis=1, keepdims=True)  # HSJ's baseline
        g = (phi[:, :, None] * u).mean(axis=1)
        g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        # geometric step out along the normal, shrunk until it lands on the adversarial side
        eps = dist[rows] / np.sqrt(step)
        cand = best[rows] + eps[:, None] * g
        adv, todo = np.zeros(m, bool), np.arange(m)
        for attempt in range(3):
            adv[todo] = oracle.labels(ok[rows[todo]], cand[todo]) != y[ok[rows[todo]]]
            todo = todo[~adv[todo]]
            if not len(todo) or attempt == 2:
                break
            eps[todo] /= 2
            cand[todo] = best[rows[todo]] + eps[todo, None] * g[todo]
        rows, cand = rows[adv], cand[adv]
        t = _bisect(oracle, ok[rows], x0[rows], cand, y[ok[rows]], self.tol)
        pt = x0[rows] + t[:, None] * (cand - x0[rows])
        better = np.linalg.norm(pt - x0[rows], axis=1) < dist[rows]
        out = best.copy()
        out[rows[better]] = pt[better]
        return out


def _bisect(oracle: _Oracle, idx, x0, x1, y, tol: float) -> np.ndarray:
    """Per row, ``t`` in (0, 1] with ``x0 + t (x1 - x0)`` labelled other than ``y`` (``x0`` is
    labelled ``y``, ``x1`` not), bracketing the boundary within ``tol`` (L2) or until the row's
    budget is spent."""
    lo, hi = np.zeros(len(idx)), np.ones(len(idx))
    norm = np.linalg.norm(x1 - x0, axis=1)
    while True:
        act = np.flatnonzero(((hi - lo) * norm > tol) & (oracle.left(idx) >= 1))
        if not len(act):
            return hi
        mid = (lo[act] + hi[act]) / 2
        adv = oracle.labels(idx[act], x0[act] + mid[:, None] * (x1[act] - x0[act])) != y[act]
        hi[act] = np.where(adv, mid, hi[act])
        lo[act] = np.where(adv, lo[act], mid)
