"""The text-first interface to a language model under audit.

Backends implement a few token-level methods (``tokenize``, ``score_ids``, ``generate_ids``);
everything else (text in, text out) is shared. A backend declares what it can do in
``capabilities``; an audit runs the attacks the target can serve and records the others as
skipped with the capability they need (:meth:`Capabilities.missing`); an attack called directly
refuses with :class:`~leakaudit.errors.CapabilityError`.

**Token convention** (the field's: Min-K%, Min-K%++, mimir and Carlini et al.'s extraction code
all score ``model(ids)`` over the tokenizer's default encoding):

- a *document* is tokenized as its tokenizer does by default: the tokenizer's own start tokens
  (BOS for Llama-style tokenizers; none for GPT-2, Pythia or SmolLM2), then the text's tokens.
  End-of-text tokens a tokenizer may append are not added (``document_ids``);
- a *window* cut from inside a document (memorization) is those tokens and nothing else: its
  ``k``-token prefix is the whole context, and nothing is inserted before it;
- **first-token rule**: a score covers tokens 2..n of the sequence it is given. The first token
  is context only, because nothing precedes it. For a document that means every text token when
  the tokenizer adds a start token, and every text token but the first when it adds none.

The convention in force is :meth:`LanguageModel.token_convention`, recorded in every run record.
"""

from __future__ import annotations

import os

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from leakaudit.errors import CapabilityError

#: A progress callback: called with the number of items just finished.
Progress = Callable[[int], None]


def tokenizer_start_ids(tokenizer) -> list[int]:
    """The tokens a (Hugging Face) tokenizer puts before a text by default
    (``add_special_tokens=True``), found by encoding a probe both ways; tokens it appends at the
    end are not included. Empty for a minimal id-only tokenizer (not callable)."""
    if not callable(tokenizer):
        return []
    probe = "Hello world"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe)["input_ids"])
    for i in range(len(full) - len(plain) + 1):
        if full[i: i + len(plain)] == plain:
            return [int(t) for t in full[:i]]
    return []


@dataclass(frozen=True)
class Capabilities:
    """What a language-model target can do; every optional output is one field.

    An audit asks :meth:`missing` for the capabilities each attack needs, runs the attacks whose
    needs are met and records the others as skipped with the capability named (one missing
    capability never stops an audit). Remote backends (OpenAI-compatible servers) typically offer
    ``generation`` and ``top_logprobs`` only; completions endpoints with ``echo`` add
    ``prompt_logprobs``.
    """

    prompt_logprobs: bool = False  #: teacher-forced log-probs of every token of a given text
    vocab_stats: bool = False  #: mean/variance of log p over the vocabulary at each position
    argmax: bool = False  #: whether each given token is the model's greedy choice
    sampling_logprobs: bool = False  #: log p(token) under a sampling scheme (temperature, top-k)
    generation: bool = False  #: sampling continuations of prompts
    seeded_generation: bool = False  #: sampling is reproducible from a seed
    logits_processors: bool = False  #: custom logits processors (decaying temperature, filters)
    gradients: bool = False  #: white-box gradients with respect to weights or inputs
    #: log-probs of the top-k tokens at each generated position; the largest k offered
    #: (``generate_ids(..., top_logprobs=k)``; in-process models: the vocabulary size)
    top_logprobs: int = 0

    #: Each capability, with what it means, for skip messages and documentation.
    DESCRIPTIONS = {
        "prompt_logprobs": "teacher-forced log-probabilities of a given text",
        "vocab_stats": "mean and variance of log p over the whole vocabulary (Min-K%++)",
        "argmax": "whether each given token is the model's greedy choice",
        "sampling_logprobs": "log-probabilities under a sampling scheme (temperature, top-k)",
        "generation": "sampling continuations of prompts",
        "seeded_generation": "sampling reproducible from a seed",
        "logits_processors": "custom logits processors (e.g. a decaying temperature)",
        "gradients": "white-box gradients",
        "top_logprobs": "top-k log-probabilities of generated tokens",
    }

    def missing(self, *names: str) -> list[str]:
        """The capabilities among ``names`` that this target lacks (empty: all there)."""
        unknown = [n for n in names if n not in self.DESCRIPTIONS]
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; known: {list(self.DESCRIPTIONS)}")
        return [n for n in names if not getattr(self, n)]

    def require(self, *names: str, who: str) -> None:
        missing = self.missing(*names)
        if missing:
            raise CapabilityError(
                f"{who} needs {', '.join(missing)}, which this target does not provide"
            )

    def to_dict(self) -> dict:
        return {n: getattr(self, n) for n in self.DESCRIPTIONS}


def skip_record(attack: str, needs: Sequence[str], caps: Capabilities, *, target: str) -> dict:
    """The record of an attack an audit skipped because ``target`` lacks capabilities."""
    miss = caps.missing(*needs)
    return {"attack": attack, "skipped": True, "target": target, "needs": list(needs),
            "missing": miss,
            "reason": f"{target} does not provide {', '.join(miss)} "
                      f"({'; '.join(type(caps).DESCRIPTIONS[m] for m in miss)})"}


@dataclass
class TokenScores:
    """Teacher-forced scores of one token sequence.

    Position ``i`` describes token ``token_ids[i]`` given every token before it in the sequence.
    Under the first-token rule (module docstring) the sequence's first token is context only, so
    for a sequence of n tokens there are n - 1 positions (``last`` of them with ``last``).
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
    #: With ``generate_ids(..., top_logprobs=k)`` on a target whose ``capabilities.top_logprobs``
    #: is at least k: for each new token, ``{token id: log p}`` of the k most likely tokens at
    #: that position under the model's own distribution (temperature 1, before any sampling
    #: warper), as OpenAI-style ``top_logprobs`` report them. None when not asked for.
    top_logprobs: list[dict[int, float]] | None = None


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
        """Token ids of each text, without special tokens (text in the middle of a document)."""

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """:meth:`tokenize` and :meth:`token_offsets` of one text (backends may do it in one call)."""
        return self.tokenize([text])[0], self.token_offsets(text)

    @property
    def start_ids(self) -> list[int]:
        """The special tokens the tokenizer puts at the start of a document by default (BOS for
        Llama-style tokenizers; empty for GPT-2-style ones)."""
        return []

    def document_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text tokenized as a whole document: :attr:`start_ids` then its tokens."""
        start = list(self.start_ids)
        return [start + ids for ids in self.tokenize(texts)]

    def token_convention(self) -> dict:
        """The token convention in force, for run records (see the module docstring)."""
        start = list(self.start_ids)
        return {
            "document": "tokenizer default: its own start tokens, then the text",
            "start_ids": start,
            "start_tokens": self.decode_special(start),
            "window": "tokens cut from the document's tokenization; nothing inserted",
            "first_token": ("scored: every text token, conditioned on the start tokens"
                            if start else "context only: no start token, so the first text "
                            "token of a document is not scored"),
        }

    def decode_special(self, ids: Sequence[int]) -> list[str]:
        """Token strings of ``ids`` (special tokens included), for records."""
        return [str(i) for i in ids]

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

        Nothing is inserted: the first token of each sequence is context only (first-token rule),
        so a sequence of n tokens gives n - 1 scored positions.

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
        """Teacher-forced scores of each text as a whole document (:meth:`document_ids`; one
        batched forward pass over all of them)."""
        self.capabilities.require("prompt_logprobs", who="scoring")
        return self.score_ids(
            self.document_ids(texts), batch_size=batch_size, vocab_stats=vocab_stats,
            progress=progress
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
        """Sample one continuation per prompt (token ids), batched; results in input order.

        The prompt is the whole context: nothing is inserted before it."""

    def generate(
        self,
        prompts: Sequence[str],
        sampling: SamplingConfig,
        *,
        seed: int,
        batch_size: int = 32,
        progress: Progress | None = None,
    ) -> list[Generation]:
        """Sample a continuation of each prompt, a document start (:meth:`document_ids`)."""
        self.capabilities.require("generation", who="sampling")
        return self.generate_ids(
            self.document_ids(prompts), sampling, seed=seed, batch_size=batch_size,
            progress=progress
        )

    @property
    @abstractmethod
    def bos_id(self) -> int:
        """The token that starts an unconditional sample: the tokenizer's start token if it adds
        one, else its BOS token, else EOS (GPT-2's ``<|endoftext|>``, as Carlini et al. 2021)."""

    def fingerprint(self) -> str:
        """A string that changes whenever the model's weights or tokenizer change (hashed from
        content, never from a name or path: it keys the signal cache)."""
        raise NotImplementedError(f"{type(self).__name__} must hash its content")


class WrappedLM(LanguageModel):
    """The one base of every target built around another (``inner``): restricted views, output
    filters (MemFree, text filters), the SISA ensemble. Tokenization, the token convention and
    the fingerprint are the inner model's, so a wrapper scores and samples the same tokens; a
    subclass overrides only what it changes (capabilities, scoring, generation) and says in its
    fingerprint what it adds."""

    inner: LanguageModel

    def __init__(self, inner: LanguageModel, *, name: str | None = None):
        self.inner = inner
        self.name = name or inner.name

    def tokenize(self, texts):
        return self.inner.tokenize(texts)

    def token_offsets(self, text):
        return self.inner.token_offsets(text)

    def encode_with_offsets(self, text):
        return self.inner.encode_with_offsets(text)

    def decode(self, ids):
        return self.inner.decode(ids)

    @property
    def start_ids(self):
        return self.inner.start_ids

    def decode_special(self, ids):
        return self.inner.decode_special(ids)

    @property
    def bos_id(self):
        return self.inner.bos_id

    def fingerprint(self):
        return self.inner.fingerprint()


class RestrictedLM(WrappedLM):
    """A target with some capabilities taken away (an API-only view of a local model, and the
    contract tests' way to check that audits skip what a target cannot serve). Every call that
    would need a removed capability raises :class:`CapabilityError`; nothing is faked."""

    def __init__(self, inner: LanguageModel, *, without: Sequence[str]):
        from dataclasses import replace

        caps = inner.capabilities
        caps.missing(*without)  # validates the names
        super().__init__(inner)
        self.max_length = getattr(inner, "max_length", None)
        self.removed = tuple(without)
        self.capabilities = replace(caps, **{n: (0 if n == "top_logprobs" else False)
                                             for n in without})

    def _refuse(self, what: str, cap: str) -> None:
        if not getattr(self.capabilities, cap):
            raise CapabilityError(f"{what} needs {cap}, which this target does not provide")

    def score_ids(self, ids, *, batch_size=16, vocab_stats=False, sampling=None, last=None,
                  progress=None):
        self._refuse("scoring", "prompt_logprobs")
        if vocab_stats:
            self._refuse("vocabulary statistics", "vocab_stats")
        if sampling is not None:
            self._refuse("sampling log-probabilities", "sampling_logprobs")
        out = self.inner.score_ids(ids, batch_size=batch_size, vocab_stats=vocab_stats,
                                   sampling=sampling, last=last, progress=progress)
        if not self.capabilities.argmax:
            for s in out:
                s.is_argmax = None  # not provided: an attack reading it fails loudly
        return out

    def generate_ids(self, prompts, sampling, *, seed, batch_size=32, progress=None,
                     top_logprobs: int = 0):
        self._refuse("sampling", "generation")
        if top_logprobs:
            if top_logprobs > self.capabilities.top_logprobs:
                raise CapabilityError(f"{top_logprobs} top log-probabilities need top_logprobs "
                                      f">= {top_logprobs}; this target provides "
                                      f"{self.capabilities.top_logprobs}")
        if sampling.decay is not None:
            self._refuse("a decaying temperature", "logits_processors")
        if not self.capabilities.seeded_generation:
            import secrets

            seed = secrets.randbits(31)  # an unseeded server: the seed is not honoured
        kw = {"top_logprobs": top_logprobs} if top_logprobs else {}
        return self.inner.generate_ids(prompts, sampling, seed=seed, batch_size=batch_size,
                                       progress=progress, **kw)


def looks_local(s: str) -> bool:
    """Whether ``s`` is meant as a path on this machine, never as a hub name."""
    if not s:
        return True
    if os.path.exists(os.path.expanduser(s)):
        return True
    if s.startswith((".", "/", "~", "\\")) or "\\" in s or s.count("/") > 1:
        return True
    return s.endswith((".gguf", ".safetensors", ".bin", ".json"))
