"""LLM membership attacks over cached passes (:class:`~leakaudit.signals.membership_lm.LMSignals`).

=============  ======================================================================  ===========
name           score (higher = member)                                                 passes
=============  ======================================================================  ===========
loss           mean token log-prob = −LOSS (Yeom et al. 2018)                          target
zlib           −(mean token NLL) / zlib bytes (Carlini et al. 2021)                     target
lowercase      log PPL(lowercased text) / log PPL(text) (Carlini et al. 2021's ratio)   + lowercase
reference      mean log p_target − mean log p_reference (Carlini 2021; Mireshghallah)   + reference
min_k          mean of the lowest int(k·n) (≥ 1) token log-probs (Shi et al. 2024)      target
min_k_pp       mean of the lowest int(k·n) (≥ 1) of (log p − μ)/σ (Zhang et al. 2025)   target (+vocab stats)
=============  ======================================================================  ===========

μ_t = E_{z∼p(·|x<t)}[log p(z)] and σ_t² = Var_{z∼p(·|x<t)}[log p(z)] come from the target's same
forward pass (``TokenScores.vocab_mean``/``vocab_var``). Min-K% and Min-K%++ select as many
tokens as the official code (``int(k·n)``, here at least one; :func:`leakaudit.signals.lm.n_lowest`).
The lowercase statistic is the same as the extraction ranking of the same name.
"""

from __future__ import annotations

import numpy as np

from leakaudit.attacks.membership.base import MembershipAttack, _finite, validated
from leakaudit.errors import CapabilityError
from leakaudit.signals.lm import log_ppl_ratio, mean_logprob, min_k_mean, min_k_pp_mean
from leakaudit.signals.membership_lm import LMSignals

_LOW = -1e9  # score of an empty document: least member-like


class LLMAttack(MembershipAttack):
    kind = "llm"
    threat_model = "grey-box: per-token log-probs of given texts"
    capabilities = ("prompt_logprobs",)


@validated
class LossAttack(LLMAttack):
    name = "loss"
    doc_uri = "https://arxiv.org/abs/1709.01604"

    def score(self, signals: LMSignals) -> np.ndarray:
        return _finite(mean_logprob(signals.target), _LOW)


@validated
class ZlibAttack(LLMAttack):
    name = "zlib"
    doc_uri = "https://arxiv.org/abs/2012.07805"

    def score(self, signals: LMSignals) -> np.ndarray:
        return _finite(mean_logprob(signals.target) / signals.zlib, _LOW)


@validated
class LowercaseAttack(LLMAttack):
    name = "lowercase"
    doc_uri = "https://arxiv.org/abs/2012.07805"
    needs = ("lowercase",)

    def score(self, signals: LMSignals) -> np.ndarray:
        if signals.lowercase is None:
            raise CapabilityError("the lowercase attack needs the lowercased pass "
                                  "(compute_lm_signals(..., lowercase=True))")
        return _finite(log_ppl_ratio(signals.lowercase, signals.target), _LOW)


@validated
class ReferenceAttack(LLMAttack):
    """Target vs reference log-likelihood ratio; ``reference`` names one of ``signals.references``."""

    name = "reference"
    doc_uri = "https://arxiv.org/abs/2012.07805"
    needs = ("reference",)

    def __init__(self, *, reference: str):
        self.reference = reference

    def score(self, signals: LMSignals) -> np.ndarray:
        if self.reference not in signals.references:
            raise CapabilityError(f"reference model {self.reference!r} was not scored; have "
                                  f"{sorted(signals.references) or 'none'}")
        ref = signals.references[self.reference]
        return _finite(mean_logprob(signals.target) - mean_logprob(ref), _LOW)


@validated
class MinKAttack(LLMAttack):
    name = "min_k"
    doc_uri = "https://arxiv.org/abs/2310.16789"

    def __init__(self, *, k: float):
        if not 0 < k <= 1:
            raise ValueError(f"k must be in (0, 1], got {k}")
        self.k = k

    def score(self, signals: LMSignals) -> np.ndarray:
        return _finite(min_k_mean(signals.target, k=self.k), _LOW)


@validated
class MinKPlusPlusAttack(LLMAttack):
    name = "min_k_pp"
    doc_uri = "https://arxiv.org/abs/2404.02936"
    threat_model = "grey-box: per-token log-probs and full-vocabulary log-prob statistics"
    needs = ("vocab_stats",)
    capabilities = ("prompt_logprobs", "vocab_stats")

    def __init__(self, *, k: float):
        if not 0 < k <= 1:
            raise ValueError(f"k must be in (0, 1], got {k}")
        self.k = k

    def score(self, signals: LMSignals) -> np.ndarray:
        return _finite(min_k_pp_mean(signals.target, k=self.k), _LOW)
