"""The text-first interface to a language model under audit.

Backends implement three token-level methods (``tokenize``, ``score_ids``, ``generate_ids``);
everything else (text in, text out) is shared. A backend declares what it can do in
``capabilities`` and attacks refuse with :class:`~leakaudit.errors.CapabilityError` when a
capability they need is missing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from leakaudit.errors import CapabilityError

#: A progress callback: called with the number of items just finished.
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do. Attacks check these before they start."""

    prompt_logprobs: bool  #: teacher-forced log-probs of every token of a given text
    vocab_stats: bool  #: mean/variance of log p over the whole vocabulary at each position
    argmax: bool  #: whether each given token is the model's greedy choice
    generation: bool  #: sampling continuations of prompts
    seeded_generation: bool  #: sampling is reproducible from a seed
    gradients: bool = False  #: white-box gradients (classifiers)

    def require(self, *names: str, who: str) -> None:
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise CapabilityError(
                f"{who} needs {', '.join(missing)}, which this target does not provide"
            )


@dataclass
class TokenScores:
    """Teacher-forced scores of one text.

    Position ``i`` describes token ``token_ids[i]`` given every token before it (the first token is
    conditioned on the model's BOS token, so every token of the text is scored).
    """

    token_ids: np.ndarray  #: int64 [n]
    logprobs: np.ndarray  #: float32 [n]: log p(token_i | tokens_<i)
    is_argmax: np.ndarray  #: bool [n]: token_i is the greedy choice
    vocab_mean: np.ndarray | None = None  #: float32 [n]: E_{z~p}[log p(z)] (Min-K%++)
    vocab_var: np.ndarray | None = None  #: float32 [n]: Var_{z~p}[log p(z)] (Min-K%++)
    truncated: bool = False  #: the text was longer than the model's context and was cut
    #: float32 [n] or None: log p(token_i) under a sampling scheme (temperature, top-k
    #: renormalized), -inf where the token is outside the top-k; see ``score_ids(sampling=)``.
    sampling_logprobs: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])


@dataclass
class Generation:
    """One sampled continuation."""

    prompt_ids: list[int]
    new_ids: list[int]
    text: str  #: prompt + continuation, decoded without special tokens
    prompt_text: str
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample. ``decay`` = (start_temperature, end_temperature, n_steps) or None.

    ``greedy=True`` ignores the other fields and decodes the argmax at every step.
    """

    max_new_tokens: int = 256
    top_k: int | None = 40
    top_p: float | None = None
    temperature: float = 1.0
    decay: tuple[float, float, int] | None = None
    greedy: bool = False


class LanguageModel(ABC):
    """A causal language model under audit."""

    name: str
    capabilities: Capabilities

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""

    @abstractmethod
    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text`` (same tokenization as :meth:`tokenize`)."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    @abstractmethod
    def score_ids(
        self,
        ids: Sequence[Sequence[int]],
        *,
        batch_size: int = 16,
        vocab_stats: bool = False,
        sampling: "SamplingConfig | None" = None,
        last: int | None = None,
        progress: Progress | None = None,
    ) -> list[TokenScores]:
        """Teacher-forced scores of each token sequence, batched; results in input order.

        With ``sampling``, each TokenScores also carries ``sampling_logprobs``: the log-probability
        of each token under that sampling scheme (temperature, then top-k renormalized), from the
        same forward pass — the per-token factors of Hayes et al.'s p_z. With ``last``, only the
        last ``last`` tokens of each sequence are scored (the whole sequence is still the
        context): the LM head and its statistics run on those positions only, and every array,
        ``token_ids`` included, holds just them (a suffix, as memorization needs).
        """

    def score(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 16,
        vocab_stats: bool = False,
        progress: Progress | None = None,
    ) -> list[TokenScores]:
        """Teacher-forced scores of each text (one batched forward pass over all of them)."""
        self.capabilities.require("prompt_logprobs", who="scoring")
        return self.score_ids(
            self.tokenize(texts), batch_size=batch_size, vocab_stats=vocab_stats, progress=progress
        )

    @abstractmethod
    def generate_ids(
        self,
        prompts: Sequence[Sequence[int]],
        sampling: SamplingConfig,
        *,
        seed: int,
        batch_size: int = 32,
        progress: Progress | None = None,
    ) -> list[Generation]:
        """Sample one continuation per prompt (token ids), batched; results in input order."""

    def generate(
        self,
        prompts: Sequence[str],
        sampling: SamplingConfig,
        *,
        seed: int,
        batch_size: int = 32,
        progress: Progress | None = None,
    ) -> list[Generation]:
        self.capabilities.require("generation", who="sampling")
        return self.generate_ids(
            self.tokenize(prompts), sampling, seed=seed, batch_size=batch_size, progress=progress
        )

    @property
    @abstractmethod
    def bos_id(self) -> int:
        """The token that starts an unconditional sample (BOS, or EOS for GPT-2-style models)."""

    def fingerprint(self) -> str:
        """A string that changes whenever the model's weights or tokenizer change."""
        return self.name
