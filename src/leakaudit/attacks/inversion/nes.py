"""Black-box class inversion from confidences only: MI-Face with zeroth-order gradients.

No gradients: the gradient of ``1 − p(t | x)`` is estimated from queries with antithetic Gaussian
sampling (NES; Wierstra et al. 2014, as used for black-box attacks by Ilyas et al., ICML 2018,
"Black-box Adversarial Attacks with Limited Queries and Information"):

    ĝ = 1 / (2 σ n) · Σ_{i=1..n} [f(x + σ u_i) − f(x − σ u_i)] · u_i,   u_i ~ N(0, I)

Each step costs ``2 n + 1`` queries per class (the ``+1`` evaluates the current iterate for the
stopping rule and the best-so-far). The prior's gradient is exact (it costs no query). Every
query goes through ``target.predict_proba`` and is counted in ``target.queries``; a class stops
before a step that would take it past ``budget`` queries.

With a label-only target (one-hot outputs) ``f`` is 0 or 1, so the estimate is zero almost
everywhere: the attack then returns (a smoothed) start. That is the expected, honest outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from leakaudit.attacks.inversion.base import (FREDRIKSON_2015, InversionResult,
                                              PlateauStop, Prior, image_shape_for, starting_points)
from leakaudit.progress import null_progress
from leakaudit.taxonomy import TAXONOMY


@dataclass(frozen=True)
class NESParams:
    """The lab's and the CLI's NES settings (measured on the digits lab; docs/concepts/inversion.md)."""

    budget: int = 504  # queries per class: 24 steps of 2·10 + 1 queries
    n_directions: int = 10
    sigma: float = 0.1
    lr: float = 1.0
    patience: int = 20
    gamma: float = 1e-3
    min_delta: float = 1e-5
    tv_weight: float = 0.01
    l2_weight: float = 0.0


class NESInversion:
    """Black-box (confidence-only) MI-Face with antithetic NES gradient estimates.

    budget: queries per class (hard cap). n_directions: antithetic pairs per step. sigma: the
    sampling radius. The other hyperparameters are those of :class:`MIFace`.
    """

    name = "nes"
    threat_model = "black-box: class probabilities only, query budget per class"
    doc_uri = FREDRIKSON_2015
    tags = TAXONOMY["inversion"]
    #: only queries (a label-only target gives it a flat signal: it then returns the start)
    capabilities = ("float_inputs",)

    def __init__(self, *, budget: int, n_directions: int, sigma: float, lr: float, patience: int,
                 gamma: float, min_delta: float, tv_weight: float, l2_weight: float,
                 clip: tuple[float, float], image_shape: tuple[int, int] | None):
        self.budget = budget
        self.n_directions = n_directions
        self.sigma = sigma
        self.lr = lr
        self.patience = patience
        self.gamma = gamma
        self.min_delta = min_delta
        self.tv_weight = tv_weight
        self.l2_weight = l2_weight
        self.clip = clip
        self.image_shape = image_shape

    def params(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}

    @property
    def queries_per_step(self) -> int:
        return 2 * self.n_directions + 1

    def invert(self, target, classes, *, start, seed: int, progress=null_progress) -> InversionResult:
        """Reconstruct one input per class; the same ``seed`` gives the same images."""
        if self.budget < self.queries_per_step:
            raise ValueError(f"budget {self.budget} is below one step ({self.queries_per_step} queries)")
        classes = [int(c) for c in classes]
        k = len(classes)
        shape = target.input_shape
        lo, hi = self.clip
        rng = np.random.default_rng(seed)
        prior = Prior(self.tv_weight, self.l2_weight, image_shape_for(shape, self.image_shape))
        x0 = np.clip(starting_points(start, classes, shape), lo, hi)
        x = x0.copy()
        best_x = x0.copy()
        best_p = np.zeros(k)
        steps = np.zeros(k, dtype=np.int64)
        queries = np.zeros(k, dtype=np.int64)
        stop = PlateauStop(k, patience=self.patience, gamma=self.gamma, min_delta=self.min_delta)
        tgt = np.asarray(classes)
        n, q = self.n_directions, self.queries_per_step
        max_steps = self.budget // q
        with progress(f"nes ({k} classes)", max_steps) as advance:
            for _ in range(max_steps):
                act = np.flatnonzero(stop.active & (queries + q <= self.budget))
                if act.size == 0:
                    break
                m = act.size
                u = rng.standard_normal((m, n) + tuple(shape))
                xa = x[act]
                batch = np.concatenate([
                    xa,  # current iterates (m)
                    (xa[:, None] + self.sigma * u).reshape((-1,) + tuple(shape)),  # m·n
                    (xa[:, None] - self.sigma * u).reshape((-1,) + tuple(shape)),  # m·n
                ])
                probs = target.predict_proba(batch)
                queries[act] += q
                rows_t = np.concatenate([tgt[act], np.repeat(tgt[act], n), np.repeat(tgt[act], n)])
                pt = probs[np.arange(len(batch)), rows_t]
                p_now = pt[:m]
                f_plus = 1.0 - pt[m:m + m * n].reshape(m, n)
                f_minus = 1.0 - pt[m + m * n:].reshape(m, n)
                coef = (f_plus - f_minus) / (2 * self.sigma * n)  # (m, n)
                g_hat = np.einsum("mn,mn...->m...", coef, u)
                pv, pg = prior(xa, x0[act])
                cost = np.full(k, np.inf)
                cost[act] = 1.0 - p_now + pv
                prev_best = stop.best.copy()
                stop.update(cost)
                better = act[cost[act] < prev_best[act]]
                best_x[better] = x[better]
                best_p[better] = p_now[np.searchsorted(act, better)]
                x[act] = np.clip(xa - self.lr * (g_hat + pg), lo, hi)
                steps[act] += 1
                advance(1)
            advance(max_steps - int(steps.max(initial=0)))  # early stop: the bar ends full
        reasons = []
        for i, r in enumerate(stop.reason):
            reasons.append(r or ("budget" if queries[i] + q > self.budget else "max_iter"))
        return InversionResult(attack=self.name, classes=classes, x=best_x, confidence=best_p,
                               cost=stop.best, steps=steps, queries=queries, stop_reason=reasons,
                               params=self.params())
