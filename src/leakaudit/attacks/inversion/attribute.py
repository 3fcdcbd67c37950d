"""Attribute inference by model inversion (Fredrikson et al., USENIX Security 2014, §4).

The attacker knows a record's non-sensitive attributes, the marginal distribution ``π`` of the
sensitive attribute, the model, and either the record's label ``y`` (``mode="label"``) or the
model's output vector on the complete record (``mode="confidences"``). For every candidate value
``v`` it completes the record with ``v`` and queries the model:

- label: ``score(v) = π(v) · p(y | x_known, v)`` — the maximum a posteriori estimate of the paper;
- confidences: ``score(v) = π(v) · exp(−‖p(· | x_known, v) − observed‖₁ / τ)``, τ = ``tau`` —
  the candidate whose output reproduces the observed output wins.

The prediction is ``argmax_v score(v)``; scores are normalized to a posterior over values (higher =
more likely the record's value). The baseline ignores the model and predicts ``argmax π``.
Every candidate costs one query per record (counted by the target).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leakaudit.registry import View
from leakaudit.errors import InputError
from leakaudit.taxonomy import TAXONOMY

#: Attribute inference attacks by name: the registry's ``attacks`` of family ``attribute``.
ATTRIBUTE_ATTACKS = View("attacks", family="attribute")
FREDRIKSON_2014 = "https://www.usenix.org/conference/usenixsecurity14/technical-sessions/presentation/fredrikson_matthew"


class ModelInversionAttribute:
    """MAP attribute inference. ``column``: index of the sensitive attribute in the model's
    input; ``values``: its candidate values; ``prior``: their marginal probabilities; ``mode``:
    ``"label"`` or ``"confidences"``; ``tau``: the temperature of the confidence match."""

    name = "fredrikson14"
    threat_model = "black-box: class probabilities of completed records; the record's label or output"
    doc_uri = FREDRIKSON_2014
    tags = TAXONOMY["inversion"]

    def __init__(self, *, column: int, values, prior, mode: str, tau: float):
        self.column = column
        self.values = values
        self.prior = prior
        self.mode = mode
        self.tau = tau

    def params(self) -> dict[str, Any]:
        return {"column": self.column, "values": list(self.values), "prior": list(self.prior),
                "mode": self.mode, "tau": self.tau}

    def _validate(self) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(self.values, dtype=np.float64)
        prior = np.asarray(self.prior, dtype=np.float64)
        if values.ndim != 1 or prior.shape != values.shape or len(values) < 2:
            raise InputError(f"need ≥ 2 candidate values and one prior per value; got {len(values)} "
                             f"values, {prior.size} priors")
        if np.any(prior < 0) or not np.isclose(prior.sum(), 1.0):
            raise InputError(f"prior must be a probability vector; got {prior.tolist()}")
        if self.mode not in ("label", "confidences"):
            raise InputError(f"mode must be 'label' or 'confidences', got {self.mode!r}")
        if self.mode == "confidences" and not self.tau > 0:
            raise InputError(f"tau must be > 0, got {self.tau}")
        return values, prior

    def infer(self, target, x_known: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x_known``: ``(n, d)`` records (the sensitive column is overwritten, its content is
        never read); ``observed``: labels ``(n,)`` (label mode) or outputs ``(n, C)``.
        Returns ``(predicted values (n,), posterior (n, V))``."""
        values, prior = self._validate()
        x_known = np.asarray(x_known, dtype=np.float64)
        n = len(x_known)
        if not 0 <= self.column < x_known.shape[1]:
            raise InputError(f"column {self.column} is outside records of {x_known.shape[1]} attributes")
        batch = np.repeat(x_known[None], len(values), axis=0)  # (V, n, d)
        batch[:, :, self.column] = values[:, None]
        probs = target.predict_proba(batch.reshape(len(values) * n, -1)).reshape(len(values), n, -1)
        if self.mode == "label":
            y = np.asarray(observed, dtype=np.int64)
            if y.shape != (n,):
                raise InputError(f"label mode needs one label per record; got shape {y.shape}")
            lik = probs[:, np.arange(n), y].T  # (n, V)
        else:
            obs = np.asarray(observed, dtype=np.float64)
            if obs.shape != (n, probs.shape[2]):
                raise InputError(f"confidences mode needs outputs of shape {(n, probs.shape[2])}; got {obs.shape}")
            dist = np.abs(probs - obs[None]).sum(-1).T  # (n, V)
            lik = np.exp(-(dist - dist.min(1, keepdims=True)) / self.tau)
        score = lik * prior[None]
        post = score / np.clip(score.sum(1, keepdims=True), 1e-300, None)
        return values[post.argmax(1)], post


class MarginalBaseline:
    """The model-free baseline: always predict the most common value of the marginal."""

    name = "marginal"
    threat_model = "none: the attribute's marginal distribution only"
    doc_uri = FREDRIKSON_2014
    tags = TAXONOMY["inversion"]

    def __init__(self, *, values, prior):
        self.values = values
        self.prior = prior

    def infer(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(self.values, dtype=np.float64)
        prior = np.asarray(self.prior, dtype=np.float64)
        return np.full(n, values[prior.argmax()]), np.repeat(prior[None], n, axis=0)
