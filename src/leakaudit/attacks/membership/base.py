"""Membership inference attacks, LLM and classifier: the base class and the registry view.

Polarity, stated once: **every** ``score`` returns one finite float per record, oriented
"higher = more likely a member". The contract test (``tests/test_membership_contract.py``) runs
over every registered attack on a fixture built to leak and checks this.

An attack is a small class with class attributes ``name``, ``kind`` ("llm" or "classifier"),
``threat_model`` (what the attacker needs), ``doc_uri`` (the paper) and ``tags``; its
hyper-parameters are keyword-only constructor arguments stored as given (``params()``), and
``score(signals)`` is numpy over precomputed signals (:mod:`leakaudit.signals.membership_lm` for
LLMs, :class:`leakaudit.attacks.membership.classifier.ClassifierSignals` for classifiers).

An attack is found by name through :mod:`leakaudit.registry` (kind ``attacks``, family
``membership``; the builtin rows are in :mod:`leakaudit.registry.builtin`, a plugin adds its own
with :func:`leakaudit.registry.register`); :func:`validated` checks a class's attributes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from leakaudit.registry import View
from leakaudit.taxonomy import TAXONOMY

#: Every membership attack class, by name (``MEMBERSHIP_ATTACKS.get("min_k")``): the registry's
#: ``attacks`` of family ``membership``, plugins' included.
MEMBERSHIP_ATTACKS = View("attacks", family="membership")


class MembershipAttack:
    """Base class. Subclasses set the class attributes and implement :meth:`score`."""

    name: ClassVar[str]
    kind: ClassVar[str]  #: "llm" or "classifier"
    threat_model: ClassVar[str]
    doc_uri: ClassVar[str]
    tags: ClassVar[list[str]] = TAXONOMY["membership"]
    #: the signals an attack reads beyond the target pass ("lowercase", "reference", "shadow_in", ...)
    needs: ClassVar[tuple[str, ...]] = ()
    #: the target capabilities it needs (:class:`leakaudit.targets.base.Capabilities` fields); an
    #: audit skips the attack, naming them, on a target without them
    capabilities: ClassVar[tuple[str, ...]] = ()

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as given to the constructor."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    @property
    def label(self) -> str:
        p = self.params()
        return self.name + ("" if not p else "(" + ", ".join(f"{k}={v}" for k, v in p.items()) + ")")

    def score(self, signals) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def validated(cls: type) -> type:
    """Class decorator: check that a membership attack sets the class attributes every audit
    reads (registering it by name is the registry's job)."""
    for attr in ("name", "kind", "threat_model", "doc_uri"):
        if not getattr(cls, attr, None):
            raise TypeError(f"{cls.__name__} must set class attribute {attr!r}")
    return cls


def _finite(x: np.ndarray, fill: float) -> np.ndarray:
    """Replace NaN (empty documents) by ``fill`` — the least member-like value."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(x), x, fill)
