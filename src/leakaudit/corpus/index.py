"""Exact-match index over a corpus: is this span in the training data, how often, and where?

The documents are encoded as UTF-8 and concatenated with the byte ``0xFF`` between them. That byte
never occurs in valid UTF-8, so no query (itself valid UTF-8) can match across a document
boundary. A suffix array over the concatenation (built with libdivsufsort through
``pydivsufsort``) turns every question into binary searches:

- :meth:`CorpusIndex.count` / :meth:`~CorpusIndex.doc_count` / :meth:`~CorpusIndex.locate`: the
  suffix-array interval of suffixes starting with the span (two binary searches);
- :meth:`CorpusIndex.matching_statistics`: for each byte position ``i`` of a query, the length of
  the longest prefix of ``query[i:]`` that occurs in the corpus (one binary search plus the longest
  common prefix with the two neighbouring suffixes, where the maximum is always attained);
- :meth:`CorpusIndex.window_match`: the "k-token window occurs verbatim" test of Carlini et al.
  (2021, 2023) on top of the matching statistics, given the query's token offsets.

Memory: the corpus bytes plus 4 (corpus < 2 GiB) or 8 bytes per corpus byte for the suffix array.
The index is saved as plain ``.npy`` arrays and a JSON file, never pickle.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leakaudit.errors import InputError, read_json_object

__all__ = ["CorpusIndex", "Match", "WindowResult"]

_SEP = b"\xff"
_FORMAT = "leakaudit-corpus-index"
_VERSION = 1
# Lone surrogates cannot be encoded strictly; "surrogatepass" keeps every str encodable and one
# char still maps to one contiguous byte run (never containing 0xFF).
_ERRORS = "surrogatepass"


def _encode(text: str) -> bytes:
    return text.encode("utf-8", _ERRORS)


def _lcp(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (slice compares run in C)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # invariant: a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _char_starts(q: bytes) -> np.ndarray:
    """Byte offset of every character of the UTF-8 string ``q``, followed by ``len(q)``."""
    arr = np.frombuffer(q, dtype=np.uint8)
    starts = np.flatnonzero((arr & 0xC0) != 0x80)
    return np.append(starts, len(q)).astype(np.int64)


@dataclass
class Match:
    """The longest substring of a query that occurs in the corpus.

    ``char_start``/``char_end`` index the query string; ``n_bytes`` is the UTF-8 length of the
    match; ``count`` its total number of occurrences, ``doc_count`` the number of distinct
    documents holding it, ``locations`` up to ``limit`` of them as (doc id, char offset in that
    document), in corpus order. An empty match (nothing in common) has ``n_bytes == 0``.
    """

    text: str
    char_start: int
    char_end: int
    n_bytes: int
    count: int
    doc_count: int
    locations: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class WindowResult:
    """Result of :meth:`CorpusIndex.window_match`.

    ``longest_run_tokens``: the longest run of consecutive tokens whose covering text occurs
    verbatim in the corpus. ``has_window``: whether a run of at least ``window`` tokens exists
    (for a text shorter than ``window`` tokens: whether the whole text occurs verbatim).
    ``first_window``: the char span of the first such window of exactly ``window`` tokens (the
    whole text for a short text), ``None`` when there is none.
    """

    n_tokens: int
    longest_run_tokens: int
    has_window: bool
    first_window: tuple[int, int] | None



def token_runs(n_tok, cs, ce, bs, be, ms, window) -> tuple[int, tuple[int, int] | None]:
    """The longest run of consecutive tokens found in the corpus, and the character span of the
    first run of ``window`` tokens (None if none), from each token's character span (``cs``,
    ``ce``), its byte bounds (``bs``, ``be``) and the matching statistic ``ms`` at ``bs``:
    tokens j..k match iff ``be[k] <= bs[j] + ms[j]`` (one linear sweep)."""
    reach = (bs + ms).tolist()
    be_l = be.tolist()
    longest, first = 0, None
    k = -1  # last token of the current maximal run starting at j
    for j in range(n_tok):
        k = max(k, j - 1)
        while k + 1 < n_tok and be_l[k + 1] <= reach[j]:
            k += 1
        run = k - j + 1
        if run > longest:
            longest = run
        if first is None and run >= window:
            first = (int(cs[j]), int(ce[j + window - 1]))
    return longest, first

class CorpusIndex:
    """Suffix-array index over a list of documents; see the module docstring.

    Build with :meth:`build`, persist with :meth:`save` / :meth:`load`.
    """

    def __init__(self, data: bytes, sa: np.ndarray, doc_starts: np.ndarray, doc_ids: Sequence[str]):
        if len(sa) != len(data):
            raise ValueError(f"suffix array has {len(sa)} entries for {len(data)} bytes")
        if len(doc_starts) != len(doc_ids):
            raise ValueError(f"{len(doc_starts)} document offsets for {len(doc_ids)} ids")
        self._data = data
        sa = np.asarray(sa)
        if sa.dtype.kind not in "iu":
            raise ValueError(f"suffix array must hold integers, not {sa.dtype}")
        wide = sa.dtype.itemsize > 4 or len(data) >= 2**31
        self._sa = np.ascontiguousarray(sa, dtype=np.int64 if wide else np.int32)
        # a plain memoryview gives fast Python-int indexing inside the binary searches
        self._sa_view = memoryview(self._sa).cast("B").cast("q" if wide else "i")
        self._doc_starts = np.asarray(doc_starts, dtype=np.int64)
        self._doc_ids = list(doc_ids)
        # bytes of text, without the separators
        self._n_text_bytes = len(data) - max(len(self._doc_ids) - 1, 0)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def build(cls, texts: Sequence[str], doc_ids: Sequence[str] | None = None) -> CorpusIndex:
        """Index ``texts``; ``doc_ids`` defaults to ``"0", "1", ...``."""
        from pydivsufsort import divsufsort

        if doc_ids is None:
            doc_ids = [str(i) for i in range(len(texts))]
        if len(doc_ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(doc_ids)} doc ids")
        encoded = [_encode(t) for t in texts]
        starts = np.zeros(len(encoded), dtype=np.int64)
        if encoded:
            lengths = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=len(encoded))
            starts[1:] = np.cumsum(lengths)[:-1]
        data = _SEP.join(encoded)
        del encoded
        sa = divsufsort(data) if data else np.zeros(0, dtype=np.int64)
        return cls(data, np.asarray(sa), starts, [str(d) for d in doc_ids])

    def save(self, directory: str | Path) -> Path:
        """Write the index into ``directory`` (``data.npy``, ``sa.npy``, ``doc_starts.npy``,
        ``index.json``); returns the directory."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "data.npy", np.frombuffer(self._data, dtype=np.uint8))
        np.save(d / "sa.npy", self._sa)
        np.save(d / "doc_starts.npy", self._doc_starts)
        meta = {"format": _FORMAT, "version": _VERSION, "n_docs": len(self._doc_ids),
                "n_bytes": self.n_bytes, "doc_ids": self._doc_ids}
        tmp = d / "index.json.tmp"
        tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, d / "index.json")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> CorpusIndex:
        """Load an index written by :meth:`save` (no pickle: ``allow_pickle=False``)."""
        d = Path(directory)
        meta_path = d / "index.json"
        meta = read_json_object(meta_path, missing="not a corpus index (index.json is missing)",
                                missing_at=d)
        if meta.get("format") != _FORMAT:
            raise InputError("not a corpus index (unknown format)", path=str(meta_path))
        if meta.get("version") != _VERSION:
            raise InputError(f"unsupported index version {meta.get('version')!r} "
                             f"(this leakaudit reads version {_VERSION})", path=str(meta_path))
        arrays = {}
        for name in ("data", "sa", "doc_starts"):
            f = d / f"{name}.npy"
            if not f.is_file():
                raise InputError(f"corpus index is incomplete ({f.name} is missing)", path=str(d))
            try:
                arrays[name] = np.load(f, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise InputError(f"unreadable array ({e})", path=str(f)) from None
        doc_ids = meta.get("doc_ids")
        if not isinstance(doc_ids, list) or not all(isinstance(x, str) for x in doc_ids):
            raise InputError("index metadata has no list of doc ids", path=str(meta_path))
        try:
            return cls(arrays["data"].astype(np.uint8, copy=False).tobytes(), arrays["sa"],
                       arrays["doc_starts"], doc_ids)
        except ValueError as e:
            raise InputError(f"corpus index is inconsistent: {e}", path=str(d)) from None

    # -- size ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of documents."""
        return len(self._doc_ids)

    @property
    def n_bytes(self) -> int:
        """UTF-8 bytes of document text (the separators between documents not counted)."""
        return self._n_text_bytes

    @property
    def doc_ids(self) -> list[str]:
        """The document ids, in index order."""
        return list(self._doc_ids)

    def __repr__(self) -> str:
        return f"CorpusIndex(n_docs={len(self)}, n_bytes={self.n_bytes})"

    # -- span queries --------------------------------------------------------------------------

    def _interval(self, q: bytes) -> tuple[int, int]:
        """Suffix-array interval ``[lo, hi)`` of the suffixes that start with ``q``."""
        data, sa, m = self._data, self._sa_view, len(q)

        def key(j: int) -> bytes:
            s = sa[j]
            return data[s : s + m]

        n = len(sa)
        lo = bisect.bisect_left(range(n), q, key=key)
        hi = bisect.bisect_right(range(n), q, lo=lo, key=key)
        return lo, hi

    @staticmethod
    def _span_bytes(span: str) -> bytes:
        q = _encode(span)
        if not q:
            raise ValueError("span is empty")
        return q

    def count(self, span: str) -> int:
        """Total number of occurrences of ``span`` in the corpus (overlapping ones included)."""
        lo, hi = self._interval(self._span_bytes(span))
        return hi - lo

    def doc_count(self, span: str) -> int:
        """Number of distinct documents that contain ``span`` (repeats inside one count once)."""
        lo, hi = self._interval(self._span_bytes(span))
        return self._n_distinct_docs(lo, hi)

    def locate(self, span: str, limit: int = 10) -> list[tuple[str, int]]:
        """Up to ``limit`` occurrences of ``span`` as (doc id, char offset within the document),
        in corpus order (by document, then offset)."""
        lo, hi = self._interval(self._span_bytes(span))
        return self._locations(lo, hi, limit)

    def _doc_of(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._doc_starts, positions, side="right") - 1

    def _n_distinct_docs(self, lo: int, hi: int) -> int:
        if hi <= lo:
            return 0
        return int(np.unique(self._doc_of(self._sa[lo:hi])).size)

    def _locations(self, lo: int, hi: int, limit: int) -> list[tuple[str, int]]:
        if hi <= lo or limit <= 0:
            return []
        pos = self._sa[lo:hi].astype(np.int64)
        if len(pos) > limit:
            pos = np.partition(pos, limit - 1)[:limit]
        pos = np.sort(pos)
        out = []
        for p, di in zip(pos.tolist(), self._doc_of(pos).tolist()):
            start = int(self._doc_starts[di])
            char_off = len(self._data[start:p].decode("utf-8", _ERRORS))
            out.append((self._doc_ids[di], char_off))
        return out

    # -- matching statistics -------------------------------------------------------------------

    def _ms_at(self, q: bytes, i: int) -> int:
        """Length of the longest prefix of ``q[i:]`` occurring in the corpus."""
        sub = q[i:]
        m = len(sub)
        n = len(self._sa_view)
        if m == 0 or n == 0:
            return 0
        data, sa = self._data, self._sa_view

        def key(j: int) -> bytes:
            s = sa[j]
            return data[s : s + m]

        k = bisect.bisect_left(range(n), sub, key=key)
        # The longest common prefix with any suffix is attained next to the insertion point.
        best = 0
        for j in (k - 1, k):
            if 0 <= j < n:
                best = max(best, _lcp(sub, key(j)))
                if best == m:
                    break
        return best

    def matching_statistics(self, text: str, positions: Sequence[int] | None = None) -> np.ndarray:
        """For each byte position ``i`` of ``text.encode()`` (or each of ``positions``), the length
        in bytes of the longest prefix of ``q[i:]`` that occurs in the corpus.

        Uses the property ``ms[i + 1] >= ms[i] - 1`` in its strongest useful form: once a whole
        suffix ``q[i:]`` occurs, every later suffix occurs too, so ``ms[j] = len(q) - j`` for all
        ``j >= i`` without another search (this is what makes verbatim recitations cheap).
        """
        q = _encode(text)
        n = len(q)
        if positions is None:
            pos = np.arange(n, dtype=np.int64)
        else:
            pos = np.asarray(positions, dtype=np.int64).reshape(-1)
            if pos.size and (pos.min() < 0 or pos.max() > n):
                raise ValueError(f"positions must lie in [0, {n}]")
        out = np.zeros(pos.size, dtype=np.int64)
        full_from = n + 1  # smallest position seen so far whose whole suffix occurs
        for idx, p in enumerate(pos.tolist()):
            if p >= full_from:
                out[idx] = n - p
                continue
            v = self._ms_at(q, p)
            out[idx] = v
            if v == n - p:
                full_from = min(full_from, p)
        return out

    def longest_match(self, text: str, limit: int = 10) -> Match:
        """The longest substring of ``text`` that occurs in the corpus (the earliest one on ties),
        with its count, document count and up to ``limit`` locations.

        The match is aligned to character boundaries: a byte-level match that starts or ends
        inside a multi-byte character is shrunk to whole characters.
        """
        q = _encode(text)
        bounds = _char_starts(q)  # char k starts at bounds[k]; bounds[-1] == len(q)
        starts = bounds[:-1]
        if starts.size == 0 or len(self._sa_view) == 0:
            return Match(text="", char_start=0, char_end=0, n_bytes=0, count=0, doc_count=0)
        ms = self.matching_statistics(text, starts)
        # largest char boundary <= start + ms
        end_char = np.searchsorted(bounds, starts + ms, side="right") - 1
        lengths = bounds[end_char] - starts
        best = int(np.argmax(lengths))
        n_bytes = int(lengths[best])
        if n_bytes <= 0:
            return Match(text="", char_start=0, char_end=0, n_bytes=0, count=0, doc_count=0)
        char_start, char_end = best, int(end_char[best])
        b0 = int(starts[best])
        lo, hi = self._interval(q[b0 : b0 + n_bytes])
        return Match(
            text=text[char_start:char_end], char_start=char_start, char_end=char_end,
            n_bytes=n_bytes, count=hi - lo, doc_count=self._n_distinct_docs(lo, hi),
            locations=self._locations(lo, hi, limit),
        )

    def window_match(
        self, text: str, token_char_offsets: Sequence[tuple[int, int]], window: int = 50
    ) -> WindowResult:
        """Does a run of ``window`` consecutive tokens of ``text`` occur verbatim in the corpus?

        ``token_char_offsets`` are the (start, end) char offsets of the tokens of ``text``, as a
        Hugging Face fast tokenizer returns with ``return_offsets_mapping=True``. Tokens j..k match
        when ``text[start_j:end_k]`` occurs in the corpus, i.e. when
        ``ms[byte_start_j] >= byte_end_k - byte_start_j``; the longest run is found with a
        two-pointer sweep. Offsets are clipped to the text and made non-decreasing (running
        maximum), which leaves well-formed offsets unchanged and keeps the sweep exact.

        A text with fewer than ``window`` tokens has a window iff the whole text occurs verbatim
        (exactly, whitespace included).
        """
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        n_tok = len(token_char_offsets)
        q = _encode(text)
        bounds = _char_starts(q)
        n_chars = len(bounds) - 1
        offs = np.asarray(token_char_offsets, dtype=np.int64).reshape(n_tok, 2)
        offs = np.clip(offs, 0, n_chars)
        cs = np.maximum.accumulate(offs[:, 0]) if n_tok else offs[:, 0]
        ce = np.maximum(np.maximum.accumulate(offs[:, 1]), cs) if n_tok else offs[:, 1]
        bs, be = bounds[cs], bounds[ce]
        uniq, inv = np.unique(bs, return_inverse=True)
        ms = self.matching_statistics(text, uniq)[inv.reshape(-1)]
        longest, first = token_runs(n_tok, cs, ce, bs, be, ms, window)
        if n_tok >= window:
            return WindowResult(n_tok, longest, first is not None, first)
        whole = len(q) > 0 and len(self._sa_view) > 0 and int(self._ms_at(q, 0)) == len(q)
        return WindowResult(n_tok, longest, whole, (0, len(text)) if whole else None)
