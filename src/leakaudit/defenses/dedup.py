"""Training-data deduplication (Lee et al., "Deduplicating Training Data Makes Language Models
Better", ACL 2022): a corpus transform whose output the same audits run on again.

Two methods, applied in this order by :func:`deduplicate`:

**NearDup** (:func:`near_duplicates`): each document is the set of its space-separated word
5-grams; a MinHash signature of 9,000 hashes is cut into 450 bands of 20 rows for LSH (a pair
with Jaccard s becomes a candidate with probability 1 − (1 − s^20)^450); a candidate pair is a
near-duplicate when the *exact* Jaccard index of the two 5-gram sets is ≥ 0.8 and the edit
similarity (1 − normalised Levenshtein distance over the words) is ≥ 0.8. Near-duplicate pairs are
joined into clusters (connected components) and every document of a cluster except the first (in
corpus order) is removed. MinHash comes from ``rensa`` (Rust) or ``datasketch`` (numpy), the
edit similarity from ``rapidfuzz``. The paper's threshold is "> 0.8"; here it is ≥ (and
configurable); documents with fewer than 5 words are one "5-gram" of all their words.

**ExactSubstr** (:func:`exact_substring_spans`): the tokenized corpus (a Hugging Face tokenizer,
or words when none is given) is concatenated with a distinct separator after each document, a
suffix array is built (``pydivsufsort``) with its LCP array (Kasai), and every window of ≥ 50
tokens that already occurred *earlier* in the corpus is removed, so the first occurrence of a
repeated span stays and every later copy goes. (Lee et al.'s tool removes every copy, the first
included; keeping one is what a trainer that still wants the content once does, and is what this
module's tests pin.) A later copy is cut out of its document at the characters its tokens cover.

:func:`deduplicate` returns the new documents, one removal record per near-duplicate document and
per removed span (document, characters, tokens, why, where it was seen first), and the
duplicate-count distribution of ``min_tokens``-token windows before and after: how many windows
occur once, twice, 3–4 times, …, which is what memorization grows with (Kandpal et al. 2022).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from leakaudit.errors import InputError

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class DedupConfig:
    """Lee et al.'s parameters by default."""

    method: str = "both"  #: "both", "exact" (ExactSubstr only) or "near" (NearDup only)
    min_tokens: int = 50  #: ExactSubstr: repeated spans of at least this many tokens are removed
    ngram: int = 5  #: NearDup: word n-grams
    num_perm: int = 9000
    bands: int = 450
    rows: int = 20
    jaccard: float = 0.8
    edit_similarity: float = 0.8
    backend: str = "rensa"  #: "rensa" or "datasketch"
    seed: int = 0

    def validate(self) -> None:
        if self.method not in ("both", "exact", "near"):
            raise InputError(f"dedup method must be both, exact or near, got {self.method!r}")
        if self.min_tokens < 1 or self.ngram < 1:
            raise InputError("dedup: min_tokens and ngram must be >= 1")
        if self.bands * self.rows != self.num_perm:
            raise InputError(f"dedup: bands × rows must equal num_perm ({self.bands} × {self.rows} "
                             f"≠ {self.num_perm})")
        if not (0 < self.jaccard <= 1 and 0 <= self.edit_similarity <= 1):
            raise InputError("dedup: thresholds must be in (0, 1]")
        if self.backend not in ("rensa", "datasketch"):
            raise InputError(f"dedup backend must be rensa or datasketch, got {self.backend!r}")


@dataclass
class DedupResult:
    texts: list[str]  #: the deduplicated documents (empty strings for removed documents)
    kept: list[bool]  #: whether each input document is kept (False: a near-duplicate, or emptied)
    removals: list[dict[str, Any]] = field(default_factory=list)
    windows_before: dict[str, int] = field(default_factory=dict)
    windows_after: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def documents(self, doc_ids: Sequence[str]) -> list[dict[str, str]]:
        return [{"id": i, "text": t} for i, t, k in zip(doc_ids, self.texts, self.kept) if k]

    def summary(self) -> dict[str, Any]:
        by = Counter(r["reason"] for r in self.removals)
        return {**self.stats, "removed_by_reason": dict(by),
                "windows_before": self.windows_before, "windows_after": self.windows_after}


# --------------------------------------------------------------------------- tokenization

def tokenize(texts: Sequence[str], tokenizer=None, *, offsets: bool = True
             ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Per document: token ids (int64) and, with ``offsets``, their character offsets, shape
    (n, 2). With no tokenizer, tokens are whitespace-separated words (ids from a vocabulary built
    on the fly; offsets from the same split)."""
    out: list[tuple[np.ndarray, np.ndarray | None]] = []
    if tokenizer is None:
        vocab: dict[str, int] = {}
        get = vocab.setdefault
        for t in texts:
            if offsets:
                ms = list(_WORD.finditer(t))
                ids = np.fromiter((get(m.group(), len(vocab)) for m in ms), dtype=np.int64, count=len(ms))
                offs = np.array([(m.start(), m.end()) for m in ms], dtype=np.int64).reshape(-1, 2)
            else:
                ws = t.split()
                ids = np.fromiter((get(w, len(vocab)) for w in ws), dtype=np.int64, count=len(ws))
                offs = None
            out.append((ids, offs))
        return out
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=offsets)
    for i, ids in enumerate(enc["input_ids"]):
        offs = np.asarray(enc["offset_mapping"][i], dtype=np.int64).reshape(-1, 2) if offsets else None
        out.append((np.asarray(ids, dtype=np.int64), offs))
    return out


def _word_offsets(text: str) -> np.ndarray:
    return np.array([(m.start(), m.end()) for m in _WORD.finditer(text)], dtype=np.int64).reshape(-1, 2)


# --------------------------------------------------------------------------- ExactSubstr

def _stream(tokens: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate documents, each followed by one separator id (the vocabulary size). Returns
    the stream (uint16 when the ids fit, as Lee et al.'s 2-byte tokens; else uint32) and the start
    offset of each document. Windows that contain a separator are discarded by the callers
    (:func:`_fits`): a window without one shares its first ``L`` tokens only with windows
    without one, so groups are pure."""
    vocab = max((int(t.max()) for t in tokens if len(t)), default=-1) + 1
    lens = np.array([len(t) + 1 for t in tokens], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    dtype = np.uint16 if vocab < 2 ** 16 - 1 else np.uint32
    s = np.full(int(lens.sum()), vocab, dtype=dtype)
    for i, t in enumerate(tokens):
        s[starts[i]: starts[i] + len(t)] = t
    return s, starts


def _fits(sa: np.ndarray, starts: np.ndarray, tokens, L: int) -> tuple[np.ndarray, np.ndarray]:
    """Document of each suffix and whether its first ``L`` tokens lie inside that document."""
    lens = np.array([len(t) for t in tokens], dtype=np.int64)
    doc_of = np.searchsorted(starts, sa, side="right") - 1
    return doc_of, (sa - starts[doc_of] + L) <= lens[doc_of]


def window_groups(stream: np.ndarray, L: int):
    """Suffix array, LCP, and the groups of suffixes sharing an ``L``-token prefix: returns
    ``(sa, group_id_per_sa_row, valid)`` where ``valid[k]`` says suffix ``sa[k]`` has ``L``
    tokens before a separator-free end (every group is one distinct ``L``-token window)."""
    from pydivsufsort import divsufsort, kasai

    sa = np.asarray(divsufsort(stream), dtype=np.int64)
    lcp = np.asarray(kasai(stream, sa), dtype=np.int64)  # lcp[k] = LCP(sa[k], sa[k+1])
    # a new group starts at row k unless suffix k shares >= L tokens with suffix k-1
    new = np.ones(len(sa), dtype=bool)
    new[1:] = lcp[:-1] < L
    gid = np.cumsum(new) - 1
    return sa, gid, new


def exact_substring_spans(tokens: Sequence[np.ndarray], min_tokens: int = 50):
    """For each document, the token ranges ``[(a, b), ...]`` covered by a window of
    ``min_tokens`` tokens that occurred earlier in the corpus (earlier document, or earlier in
    the same document), merged; plus, per range, the (document, token offset) of the earliest
    occurrence of its first window. Also returns the window-count histogram of the corpus."""
    L = min_tokens
    stream, starts = _stream(tokens)
    sa, gid, new = window_groups(stream, L)
    n_groups = int(gid[-1]) + 1 if len(gid) else 0
    first = np.minimum.reduceat(sa, np.flatnonzero(new)) if len(sa) else sa  # groups are contiguous
    size = np.bincount(gid, minlength=n_groups)
    # only windows that fit inside their document (no separator within L tokens) count
    _, fits = _fits(sa, starts, tokens, L)
    later = (sa != first[gid]) & fits
    pos = sa[later]
    cover = np.bincount(pos, minlength=len(stream) + 1) - np.bincount(pos + L, minlength=len(stream) + 1)
    removed = np.cumsum(cover[:-1]) > 0
    origin = np.full(len(stream), -1, dtype=np.int64)
    origin[pos] = first[gid[later]]
    spans: list[list[tuple[int, int, tuple[int, int]]]] = []
    for i, t in enumerate(tokens):
        s0 = int(starts[i])
        doc_spans = []
        for a, b in _runs(removed[s0: s0 + len(t)]):
            o = int(origin[s0 + a])  # a removed run always starts where a later window starts
            od = int(np.searchsorted(starts, o, side="right") - 1)
            doc_spans.append((a, b, (od, o - int(starts[od]))))
        spans.append(doc_spans)
    hist = window_histogram(sa, gid, size, fits)
    return spans, hist


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    if not mask.any():
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


_BINS = ((1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, 64), (65, 10 ** 18))


def _bin(c: int) -> str:
    for lo, hi in _BINS:
        if lo <= c <= hi:
            return str(lo) if lo == hi else (f"{lo}-{hi}" if hi < 10 ** 18 else f">={lo}")
    return "0"


def window_histogram(sa, gid, size, fits) -> dict[str, int]:
    """Number of ``L``-token window *positions* by how often their window occurs in the corpus."""
    counts = size[gid[fits]]
    out: dict[str, int] = {}
    for c, k in zip(*np.unique(counts, return_counts=True)):
        b = _bin(int(c))
        out[b] = out.get(b, 0) + int(k)
    order = [_bin(lo) for lo, _ in _BINS]
    return {b: out[b] for b in order if b in out}


def duplicate_window_histogram(texts: Sequence[str], tokenizer=None, min_tokens: int = 50) -> dict[str, int]:
    """The window-count histogram of a corpus (see :func:`window_histogram`)."""
    return _hist([t for t, _ in tokenize(texts, tokenizer, offsets=False)], min_tokens)


# --------------------------------------------------------------------------- NearDup

def word_ngrams(text: str, n: int = 5) -> list[str]:
    """Space-tokenized word n-grams (Lee et al.); a text of fewer than ``n`` words is one gram."""
    w = text.split()
    if len(w) < n:
        return [" ".join(w)] if w else []
    return [" ".join(w[i: i + n]) for i in range(len(w) - n + 1)]


def minhash_signatures(gram_sets: Sequence[Sequence[str]], num_perm: int, seed: int = 0,
                       backend: str = "rensa"):
    """MinHash objects of each document's gram set (``rensa.RMinHash`` or
    ``datasketch.MinHash``)."""
    if backend == "rensa":
        from rensa import RMinHash

        return RMinHash.from_token_sets([list(g) for g in gram_sets], num_perm, seed)
    from datasketch import MinHash

    out = []
    for g in gram_sets:
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch([s.encode("utf-8") for s in g])
        out.append(m)
    return out


def lsh_candidates(sigs, bands: int, rows: int, backend: str = "rensa") -> set[tuple[int, int]]:
    """Candidate pairs (i < j) sharing at least one LSH band."""
    pairs: set[tuple[int, int]] = set()
    if backend == "rensa":
        from rensa import RMinHashLSH

        lsh = RMinHashLSH(threshold=0.5, num_perm=bands * rows, num_bands=bands)
        for i, m in enumerate(sigs):
            lsh.insert(i, m)
        for i, m in enumerate(sigs):
            pairs.update((min(i, j), max(i, j)) for j in lsh.query(m) if j != i)
        return pairs
    from datasketch import MinHashLSH

    lsh = MinHashLSH(num_perm=bands * rows, params=(bands, rows))
    for i, m in enumerate(sigs):
        lsh.insert(i, m)
    for i, m in enumerate(sigs):
        pairs.update((min(i, j), max(i, j)) for j in lsh.query(m) if j != i)
    return pairs


def edit_similarity(a: str, b: str) -> float:
    """1 − normalised Levenshtein distance over whitespace-separated words (Lee et al.)."""
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_similarity(a.split(), b.split()))


def near_duplicates(texts: Sequence[str], config: DedupConfig = DedupConfig()):
    """Near-duplicate clusters. Returns ``(remove, pairs, n_candidates)``: ``remove[j] = (i,
    jaccard, edit_sim, via, via_jaccard)`` for every document ``j`` removed as a near-duplicate of
    the kept document ``i`` (the first of its cluster), with ``j``'s own Jaccard and edit
    similarity to ``i`` (below the thresholds when ``j`` joined the cluster through another
    document), the document ``via`` of its strongest verified link and that link's Jaccard; and
    the verified pairs."""
    grams = [set(word_ngrams(t, config.ngram)) for t in texts]
    idx = [i for i, g in enumerate(grams) if g]
    sigs = minhash_signatures([sorted(grams[i]) for i in idx], config.num_perm, config.seed, config.backend)
    cand = lsh_candidates(sigs, config.bands, config.rows, config.backend)
    parent = list(range(len(texts)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    verified: list[tuple[int, int, float, float]] = []
    for a, b in sorted(cand):
        i, j = idx[a], idx[b]
        ga, gb = grams[i], grams[j]
        jac = len(ga & gb) / len(ga | gb)
        if jac < config.jaccard:
            continue
        es = edit_similarity(texts[i], texts[j])
        if es < config.edit_similarity:
            continue
        verified.append((i, j, jac, es))
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    best: dict[int, tuple[float, int]] = {}  # strongest verified link of each document
    for i, j, jac, _ in verified:
        for x, y in ((i, j), (j, i)):
            if x not in best or jac > best[x][0]:
                best[x] = (jac, y)
    remove = {}
    for x in range(len(texts)):
        r = find(x)
        if r == x:
            continue
        own = len(grams[x] & grams[r]) / len(grams[x] | grams[r])  # with the document kept
        remove[x] = (r, own, edit_similarity(texts[x], texts[r]), best[x][1], best[x][0])
    return remove, verified, len(cand)


# --------------------------------------------------------------------------- both

def deduplicate(texts: Sequence[str], doc_ids: Sequence[str] | None = None, *, tokenizer=None,
                config: DedupConfig = DedupConfig()) -> DedupResult:
    """NearDup, then ExactSubstr on the documents kept (see the module docstring)."""
    config.validate()
    texts = list(texts)
    if doc_ids is None:
        doc_ids = [str(i) for i in range(len(texts))]
    if len(doc_ids) != len(texts):
        raise InputError(f"dedup: {len(doc_ids)} ids for {len(texts)} documents")
    t0 = time.perf_counter()
    kept = [True] * len(texts)
    removals: list[dict[str, Any]] = []
    n_cand = n_pairs = 0
    if config.method in ("both", "near"):
        remove, pairs, n_cand = near_duplicates(texts, config)
        n_pairs = len(pairs)
        for j, (i, jac, es, via, via_jac) in sorted(remove.items()):
            kept[j] = False
            removals.append({"doc_id": doc_ids[j], "reason": "near_duplicate_document",
                             "duplicate_of": doc_ids[i], "jaccard": round(jac, 4),
                             "edit_similarity": round(es, 4), "linked_via": doc_ids[via],
                             "link_jaccard": round(via_jac, 4), "n_chars": len(texts[j])})
    t_near = time.perf_counter() - t0
    out = [t if k else "" for t, k in zip(texts, kept)]
    toks = tokenize(texts, tokenizer, offsets=False)
    before = _hist([toks[i][0] for i in range(len(texts))], config.min_tokens)
    n_span_tokens = 0
    if config.method in ("both", "exact"):
        live = [i for i in range(len(texts)) if kept[i]]
        spans, _ = exact_substring_spans([toks[i][0] for i in live], config.min_tokens)
        for k, i in enumerate(live):
            if not spans[k]:
                continue
            offs = (_word_offsets(texts[i]) if tokenizer is None
                    else tokenize([texts[i]], tokenizer)[0][1])
            cut: list[tuple[int, int]] = []
            for a, b, (od, ot) in spans[k]:
                c0, c1 = int(offs[a][0]), int(offs[b - 1][1])
                cut.append((c0, c1))
                n_span_tokens += b - a
                removals.append({"doc_id": doc_ids[i], "reason": "repeated_span",
                                 "tokens": [int(a), int(b)], "chars": [c0, c1],
                                 "n_tokens": int(b - a), "n_chars": c1 - c0,
                                 "first_seen_in": doc_ids[live[od]] if od >= 0 else None,
                                 "first_seen_at_token": ot})
            out[i] = _cut(texts[i], cut)
            if not out[i].strip():
                kept[i] = False
    t_total = time.perf_counter() - t0
    after = _hist([t for t, _ in tokenize([o for o, k in zip(out, kept) if k], tokenizer, offsets=False)],
                  config.min_tokens)
    n_tok = sum(len(t) for t, _ in toks)
    stats = {"config": asdict(config), "tokenizer": "words" if tokenizer is None else type(tokenizer).__name__,
             "n_docs": len(texts), "n_docs_kept": sum(kept), "n_tokens": n_tok,
             "n_near_duplicate_candidates": n_cand, "n_near_duplicate_pairs": n_pairs,
             "n_near_duplicate_docs": sum(r["reason"] == "near_duplicate_document" for r in removals),
             "n_repeated_spans": sum(r["reason"] == "repeated_span" for r in removals),
             "n_repeated_span_tokens": n_span_tokens,
             "near_s": round(t_near, 3), "wall_s": round(t_total, 3)}
    return DedupResult(out, kept, removals, before, after, stats)


def _hist(tokens: list[np.ndarray], L: int) -> dict[str, int]:
    if not any(len(t) for t in tokens):
        return {}
    stream, starts = _stream(tokens)
    sa, gid, _ = window_groups(stream, L)
    return window_histogram(sa, gid, np.bincount(gid), _fits(sa, starts, tokens, L)[1])


def _cut(text: str, ranges: list[tuple[int, int]]) -> str:
    out, pos = [], 0
    for a, b in sorted(ranges):
        if a > pos:
            out.append(text[pos:a])
        pos = max(pos, b)
    out.append(text[pos:])
    return "".join(out)
