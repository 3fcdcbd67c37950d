"""MemFree output filtering (Ippolito et al., INLG 2023, arXiv 2210.17546) and its plain-target
wrappers.

Every token n-gram of the training corpus goes into a Bloom filter (``rbloom``). A Bloom filter
has no false negatives, so a decoder that never emits a token completing an n-gram in the filter
never reproduces a training n-gram of those tokens; its false positives (set by
``fp_rate``, measured and reported by :meth:`NgramFilter.measure_fp_rate`) only block a few
innocent tokens.

Two ways to apply it, both plain :class:`~leakaudit.targets.base.LanguageModel` targets:

- :class:`MemFreeLM` wraps an in-process :class:`~leakaudit.targets.hf.HFCausalLM`: a
  transformers ``LogitsProcessor`` (:func:`memfree_processor`) masks, at each step, the candidate
  tokens that would complete a training n-gram, checking candidates best-first only until the
  sampler has enough allowed ones (1 for greedy, k for top-k), so the next candidate is used
  exactly as in MemFree.
- :class:`FilteredTextLM` wraps any target whose logits it cannot touch (an API): each output is
  checked after the fact (:class:`StreamFilter` does the same chunk by chunk) and cut before the
  first blocked token, or refused.

Neither exposes log-probabilities: a filtered deployment that returned the model's own token
log-probs would leak them unfiltered, so attacks that need them refuse with a
:class:`~leakaudit.errors.CapabilityError`.

Known limits (measured by :mod:`leakaudit.audits.output_filter`): the filter holds token
n-grams of one tokenization, so the same characters produced through other tokens, or memorized
text with changed case, spacing or punctuation, pass it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from leakaudit.errors import CapabilityError, InputError
from leakaudit.metrics.stats import rate
from leakaudit.targets.base import (
    Capabilities,
    Generation,
    LanguageModel,
    Progress,
    SamplingConfig,
    TokenScores,
    WrappedLM,
)

REFUSAL = "[output withheld: it reproduces training data]"


def _rbloom():
    try:
        import rbloom
    except ImportError as e:  # pragma: no cover - rbloom is a core dependency
        raise ImportError("the output filter needs rbloom: pip install 'rbloom>=1.5'") from e
    return rbloom


class NgramFilter:
    """The training corpus's token n-grams in a Bloom filter.

    ``n``: n-gram length in tokens. ``fp_rate``: the false-positive rate the filter is sized for
    (rbloom sizes the bit array for ``expected_items`` at that rate; we pass the number of n-gram
    occurrences, an upper bound on distinct n-grams, so the realized rate is at most ``fp_rate``).
    A second filter holds every (n-1)-gram that starts a training n-gram, so a decoding step whose
    context starts none is skipped without looking at candidates.
    """

    def __init__(self, *, n: int, fp_rate: float, expected_items: int):
        if n < 2:
            raise InputError(f"n-gram length must be at least 2, got {n}")
        if not 0 < fp_rate < 1:
            raise InputError(f"false-positive rate must be in (0, 1), got {fp_rate}")
        rb = _rbloom()
        self.n = int(n)
        self.fp_rate = float(fp_rate)
        self.expected_items = max(1, int(expected_items))
        self.ngrams_ = rb.Bloom(self.expected_items, self.fp_rate)
        self.prefixes_ = rb.Bloom(self.expected_items, self.fp_rate)
        self.n_added_ = 0
        self.n_docs_ = 0

    @classmethod
    def build(cls, token_seqs: Iterable[Sequence[int]], *, n: int, fp_rate: float) -> "NgramFilter":
        """Filter over every n-gram of each token sequence (one per document; n-grams do not cross
        documents)."""
        seqs = [list(map(int, s)) for s in token_seqs]
        total = sum(max(0, len(s) - n + 1) for s in seqs)
        f = cls(n=n, fp_rate=fp_rate, expected_items=total)
        for s in seqs:
            f.add_sequence(s)
        return f

    @classmethod
    def from_texts(cls, texts: Sequence[str], model: LanguageModel, *, n: int,
                   fp_rate: float) -> "NgramFilter":
        """Filter over ``texts`` tokenized by ``model`` (the target's own tokenizer)."""
        return cls.build(model.tokenize(list(texts)), n=n, fp_rate=fp_rate)

    def add_sequence(self, ids: Sequence[int]) -> None:
        n = self.n
        grams = [tuple(ids[i: i + n]) for i in range(len(ids) - n + 1)]
        self.ngrams_.update(grams)
        self.prefixes_.update(g[:-1] for g in grams)
        self.n_added_ += len(grams)
        self.n_docs_ += 1

    def __contains__(self, ngram: Sequence[int]) -> bool:
        return tuple(int(v) for v in ngram) in self.ngrams_

    def blocked_positions(self, ids: Sequence[int], start: int = 0) -> list[int]:
        """Indices ``i >= start`` (and ``i >= n-1``) where ``ids[i-n+1 : i+1]`` is in the filter:
        the tokens that complete a training n-gram."""
        n = self.n
        ids = [int(v) for v in ids]
        return [i for i in range(max(start, n - 1), len(ids))
                if tuple(ids[i - n + 1: i + 1]) in self.ngrams_]

    def measure_fp_rate(self, *, vocab_size: int, n_probes: int, seed: int,
                        exact: set[tuple[int, ...]] | None = None) -> dict:
        """Empirical false-positive rate on ``n_probes`` uniformly random n-grams (with a
        Clopper-Pearson interval). Random n-grams over a vocabulary of V tokens are training
        n-grams with probability about (#n-grams)/V^n, i.e. never; with ``exact`` (the set of true
        n-grams) those few are excluded."""
        rng = random.Random(seed)
        hits = probes = 0
        while probes < n_probes:
            g = tuple(rng.randrange(vocab_size) for _ in range(self.n))
            if exact is not None and g in exact:
                continue
            probes += 1
            hits += g in self.ngrams_
        return {"configured": self.fp_rate, "measured": rate(hits, probes).to_dict()}

    def describe(self) -> dict:
        return {"n": self.n, "fp_rate": self.fp_rate, "n_ngram_occurrences": self.n_added_,
                "approx_distinct_ngrams": round(float(self.ngrams_.approx_items)),
                "n_docs": self.n_docs_, "size_bits": int(self.ngrams_.size_in_bits),
                "prefix_filter_bits": int(self.prefixes_.size_in_bits), "library": "rbloom"}


# --------------------------------------------------------------------------------------------
# Decoding time: a transformers LogitsProcessor
# --------------------------------------------------------------------------------------------


@dataclass
class FilterStats:
    """Counts a processor accumulates over one generation call."""

    steps: int = 0  #: (row, step) pairs seen
    checked_rows: int = 0  #: of those, whose context starts some training n-gram
    lookups: int = 0  #: candidate n-grams looked up
    blocked: int = 0  #: candidates masked
    exhausted: int = 0  #: rows where every candidate was blocked (left unfiltered; never seen)

    def add(self, other: "FilterStats") -> None:
        for k in ("steps", "checked_rows", "lookups", "blocked", "exhausted"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _allowed_needed(sampling: SamplingConfig, vocab: int) -> int | None:
    """How many allowed candidates the sampler needs, best-first; None: check every token."""
    if sampling.greedy:
        return 1
    if sampling.top_p is not None:
        return None  # the nucleus moves once tokens are masked: check everything
    if sampling.top_k:
        return min(int(sampling.top_k), vocab)
    return None


def memfree_processor(ngram_filter: NgramFilter, sampling: SamplingConfig,
                      stats: FilterStats | None = None):
    """A transformers ``LogitsProcessor`` that sets to -inf the score of every candidate token
    that would complete an n-gram in ``ngram_filter`` given the last n-1 tokens of the context
    (prompt included). It runs before the temperature/top-k/top-p warpers and checks candidates
    in descending score order until ``need`` allowed ones are found (1 for greedy, k for top-k,
    all for top-p or untruncated sampling), so the sampler sees exactly the best allowed tokens.
    """
    import inspect

    from transformers import LogitsProcessor

    torch = __import__("torch")
    n = ngram_filter.n
    grams, prefixes = ngram_filter.ngrams_, ngram_filter.prefixes_
    st = stats if stats is not None else FilterStats()
    neg_inf = float("-inf")

    def check_row(pre: tuple, cand: list[int], need: int | None, blocked: list[int]) -> int:
        """Walk ``cand`` best-first, appending blocked tokens to ``blocked``; returns the
        number of allowed tokens found (stops at ``need``)."""
        allowed = 0
        for t in cand:
            st.lookups += 1
            if (*pre, t) in grams:
                blocked.append(t)
            else:
                allowed += 1
                if need is not None and allowed >= need:
                    break
        return allowed

    def process(input_ids, scores):
        b, v = scores.shape
        st.steps += b
        length = input_ids.shape[1]
        if length < n - 1:
            return scores
        ctx = input_ids[:, length - (n - 1):].tolist()
        rows = [r for r in range(b) if tuple(ctx[r]) in prefixes]
        if not rows:
            return scores
        st.checked_rows += len(rows)
        need = _allowed_needed(sampling, v)
        sub = scores[rows]
        if need is not None and need + 16 < v:
            # the best need+16 candidates of each row, best-first; a row that needs more (many
            # blocked, or -inf among them) falls back to its whole sorted vocabulary below
            k0 = need + 16
            top = torch.topk(sub, k0, dim=-1)
            top_i, top_fin = top.indices.tolist(), torch.isfinite(top.values).tolist()
        else:
            top_i = None
        for j, r in enumerate(rows):
            pre = tuple(ctx[r])
            blocked: list[int] = []
            allowed = -1
            if top_i is not None and all(top_fin[j]):
                allowed = check_row(pre, top_i[j], need, blocked)
                if allowed < need:  # not enough in the first k0: redo the row in full
                    st.lookups -= k0
                    blocked, allowed = [], -1
            if allowed < 0:
                row = sub[j]
                order = torch.argsort(row, descending=True).tolist()
                cand = order[: int(torch.isfinite(row).sum())]
                allowed = check_row(pre, cand, need, blocked)
            if blocked and allowed == 0:
                st.exhausted += 1  # nothing left to emit: leave the row as it is
                continue
            if blocked:
                scores[r, blocked] = neg_inf
                st.blocked += len(blocked)
        return scores

    # transformers' LogitsProcessorList calls inspect.signature(processor.__call__) at every
    # step; for a bound method that costs more than the filter itself (~0.1 ms), for a plain
    # function with a precomputed __signature__ a few microseconds.
    process.__signature__ = inspect.signature(process)  # type: ignore[attr-defined]

    class MemFreeLogitsProcessor(LogitsProcessor):
        def __init__(self):
            self.__call__ = process  # what inspect.signature sees (instance attribute)

        def __call__(self, input_ids, scores):  # what calling the processor runs
            return process(input_ids, scores)

    return MemFreeLogitsProcessor()


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


class _NoScores:
    """Shared refusal of log-prob access for filtered targets."""

    name: str

    def score_ids(self, ids, *, batch_size: int = 16, vocab_stats: bool = False,
                  sampling: SamplingConfig | None = None, last: int | None = None,
                  progress: Progress | None = None) -> list[TokenScores]:
        raise CapabilityError(f"{self.name} is an output-filtered target: it returns text only "
                              "(log-probs would bypass the filter)")


class MemFreeLM(_NoScores, WrappedLM):
    """An in-process HF target whose decoding never completes a training n-gram (MemFree).

    ``inner`` must be a :class:`~leakaudit.targets.hf.HFCausalLM` (or anything whose
    ``generate_ids`` takes ``processors=``). ``stats_`` accumulates :class:`FilterStats` over
    every call.
    """

    def __init__(self, inner: LanguageModel, ngram_filter: NgramFilter, *, name: str | None = None):
        import inspect

        if not inner.capabilities.generation:
            raise CapabilityError(f"{inner.name} cannot generate: nothing to filter")
        if "processors" not in inspect.signature(inner.generate_ids).parameters:
            raise CapabilityError(f"{inner.name} takes no logits processors (not an in-process "
                                  "HF model): filter its outputs with FilteredTextLM instead")
        super().__init__(inner, name=name or f"{inner.name}+memfree{ngram_filter.n}")
        self.filter = ngram_filter
        self.capabilities = Capabilities(prompt_logprobs=False, vocab_stats=False, argmax=False,
                                         generation=True,
                                         seeded_generation=inner.capabilities.seeded_generation)
        self.stats_ = FilterStats()

    def fingerprint(self) -> str:
        return f"{self.inner.fingerprint()}+memfree(n={self.filter.n},fp={self.filter.fp_rate})"

    def generate_ids(self, prompts, sampling: SamplingConfig, *, seed: int, batch_size: int = 32,
                     progress: Progress | None = None) -> list[Generation]:
        stats = FilterStats()
        gens = self.inner.generate_ids(
            prompts, sampling, seed=seed, batch_size=batch_size, progress=progress,
            processors=[lambda s, plen: memfree_processor(self.filter, s, stats)],
        )
        self.stats_.add(stats)
        for g in gens:
            g.meta["filter"] = "memfree"
        return gens


@dataclass
class FilterResult:
    """A checked output: ``text`` is what may be shown."""

    text: str
    blocked: bool
    cut_at_char: int | None = None  #: offset in the output where it was cut
    n_blocked_tokens: int = 0


def check_output(ngram_filter: NgramFilter, model: LanguageModel, output: str, *,
                 prompt: str = "", mode: str) -> FilterResult:
    """Check ``output`` (following ``prompt``; n-grams that span both count) with the filter:
    ``mode="cut"`` keeps the text before the first token that completes a training n-gram,
    ``mode="refuse"`` replaces the whole output with :data:`REFUSAL`."""
    if mode not in ("cut", "refuse"):
        raise InputError(f"filter mode must be 'cut' or 'refuse', got {mode!r}")
    full = prompt + output
    ids = model.tokenize([full])[0]
    offsets = model.token_offsets(full)
    # first token that ends inside the output
    first_out = next((i for i, (_, e) in enumerate(offsets) if e > len(prompt)), len(ids))
    hits = ngram_filter.blocked_positions(ids, start=first_out)
    if not hits:
        return FilterResult(text=output, blocked=False)
    if mode == "refuse":
        return FilterResult(text=REFUSAL, blocked=True, cut_at_char=0, n_blocked_tokens=len(hits))
    cut = max(0, offsets[hits[0]][0] - len(prompt))
    return FilterResult(text=output[:cut], blocked=True, cut_at_char=cut,
                        n_blocked_tokens=len(hits))


@dataclass
class StreamFilter:
    """Filter a streamed output chunk by chunk: :meth:`feed` returns the text that is safe to
    show now (the last token is held back, since the next chunk may extend it), :meth:`close`
    the rest. Once a training n-gram is completed the stream is cut (``mode="cut"``) or the
    whole answer withdrawn (``mode="refuse"``: callers must discard what they showed; use it
    with buffering) and everything after is dropped."""

    ngram_filter: NgramFilter
    model: LanguageModel
    mode: str
    prompt: str = ""
    _buf: str = ""
    _emitted: int = 0
    result: FilterResult | None = None
    _chunks: list[str] = field(default_factory=list)

    def feed(self, chunk: str) -> str:
        if self.result is not None:
            return ""
        self._buf += chunk
        r = check_output(self.ngram_filter, self.model, self._buf, prompt=self.prompt, mode=self.mode)
        if r.blocked:
            self.result = r
            out = r.text[self._emitted:] if self.mode == "cut" else ""
            self._emitted += len(out)
            return out
        offs = self.model.token_offsets(self.prompt + self._buf)
        safe = max(0, (offs[-1][0] - len(self.prompt)) if offs else 0)
        out = self._buf[self._emitted: max(self._emitted, safe)]
        self._emitted += len(out)
        return out

    def close(self) -> str:
        if self.result is not None:
            return ""
        self.result = FilterResult(text=self._buf, blocked=False)
        out = self._buf[self._emitted:]
        self._emitted = len(self._buf)
        return out


class FilteredTextLM(_NoScores, WrappedLM):
    """Any generating target with its outputs checked after the fact (API-style filtering):
    each continuation is cut before its first token that completes a training n-gram
    (``mode="cut"``) or replaced by :data:`REFUSAL` (``mode="refuse"``). ``meta["filter"]``
    records what happened to each output."""

    def __init__(self, inner: LanguageModel, ngram_filter: NgramFilter, *, mode: str,
                 name: str | None = None):
        if mode not in ("cut", "refuse"):
            raise InputError(f"filter mode must be 'cut' or 'refuse', got {mode!r}")
        super().__init__(inner, name=name or f"{inner.name}+textfilter{ngram_filter.n}-{mode}")
        self.filter, self.mode = ngram_filter, mode
        self.capabilities = Capabilities(prompt_logprobs=False, vocab_stats=False, argmax=False,
                                         generation=True,
                                         seeded_generation=inner.capabilities.seeded_generation)
        self.n_outputs_ = 0
        self.n_blocked_ = 0

    def fingerprint(self) -> str:
        return f"{self.inner.fingerprint()}+textfilter(n={self.filter.n},{self.mode})"

    def generate_ids(self, prompts, sampling: SamplingConfig, *, seed: int, batch_size: int = 32,
                     progress: Progress | None = None) -> list[Generation]:
        gens = self.inner.generate_ids(prompts, sampling, seed=seed, batch_size=batch_size,
                                       progress=progress)
        out = []
        for g in gens:
            cont = g.text[len(g.prompt_text):] if g.text.startswith(g.prompt_text) \
                else self.inner.decode(g.new_ids)
            r = check_output(self.filter, self.inner, cont, prompt=g.prompt_text, mode=self.mode)
            self.n_outputs_ += 1
            self.n_blocked_ += r.blocked
            new_ids = self.inner.tokenize([r.text])[0] if r.blocked else list(g.new_ids)
            out.append(Generation(prompt_ids=g.prompt_ids, new_ids=new_ids,
                                  text=g.prompt_text + r.text, prompt_text=g.prompt_text,
                                  meta={**g.meta, "filter": self.mode, "blocked": r.blocked,
                                        "cut_at_char": r.cut_at_char}))
        return out


_TOKEN_BASE = 0x10000  # token id t is the code point 0x10000 + t (no surrogates, < 0x110000)


def _token_chars(ids: Sequence[int]) -> str:
    return "".join(chr(_TOKEN_BASE + int(t)) for t in ids)


class TokenNgramIndex:
    """Exact check of token n-grams, independent of the Bloom filter: the corpus suffix-array
    index (:class:`~leakaudit.corpus.index.CorpusIndex`) built over each document's *token ids*,
    one code point per token (vocabularies below 1,048,576 tokens), so a token sequence occurs in
    the tokenized corpus iff its string is a substring of a document's."""

    def __init__(self, model: LanguageModel, texts: Sequence[str], doc_ids: Sequence[str] | None = None):
        from leakaudit.corpus.index import CorpusIndex

        seqs = model.tokenize(list(texts))
        if any(t >= 0x110000 - _TOKEN_BASE for s in seqs for t in s):
            raise InputError("vocabulary too large for the token index (>= 1,048,576 tokens)")
        self.index = CorpusIndex.build([_token_chars(s) for s in seqs], doc_ids)

    def count(self, ids: Sequence[int]) -> int:
        return self.index.count(_token_chars(ids))

    def hits(self, continuation_ids: Sequence[int], *, n: int,
             context_ids: Sequence[int] = ()) -> list[int]:
        """Positions ``i`` of the continuation where the n tokens ending at ``i`` (the last n-1
        context tokens count) are a training n-gram."""
        ids = [int(v) for v in context_ids][-(n - 1):] + [int(v) for v in continuation_ids]
        k = len(ids) - len(continuation_ids)
        return [i - k for i in range(max(n - 1, k), len(ids))
                if self.count(ids[i - n + 1: i + 1]) > 0]


def verbatim_windows(index, model: LanguageModel, continuation_ids: Sequence[int], *, n: int,
                     context_ids: Sequence[int] = ()) -> list[int]:
    """Text-level check with the corpus suffix-array index: positions ``i`` of the continuation
    where the *text* of the n tokens ending at ``i`` (the last n-1 context tokens count) occurs
    verbatim in the corpus. A superset of the filter's condition: it also counts the same
    characters tokenized differently (a digit split off a number, a word cut elsewhere), which a
    token n-gram filter cannot see."""
    ids = [int(v) for v in context_ids][-(n - 1):] + [int(v) for v in continuation_ids]
    k = len(ids) - len(continuation_ids)
    out = []
    for i in range(max(n - 1, k), len(ids)):
        text = model.decode(ids[i - n + 1: i + 1])
        if text and index.count(text) > 0:
            out.append(i - k)
    return out


__all__ = ["NgramFilter", "MemFreeLM", "FilteredTextLM", "StreamFilter", "FilterResult",
           "FilterStats", "TokenNgramIndex", "check_output", "memfree_processor", "verbatim_windows",
           "REFUSAL"]
