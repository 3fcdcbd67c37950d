"""On-disk, memory-mapped exact-match index: the same questions as :mod:`leakaudit.corpus.index`
for corpora larger than memory.

Layout (one directory, every file private, ``index.json`` written last so that a half-built index
is never opened)::

    index.json                  format, version, sizes, the shard table
    doc_ids.bin, doc_ids.npy    document ids (UTF-8, concatenated) and their offsets
    shard-00000/data.npy        uint8: the shard's documents, UTF-8, joined by 0xFF
    shard-00000/sa.npy          int32/int64 suffix array of data.npy (libdivsufsort)
    shard-00000/doc_starts.npy  int64 offset of each document in data.npy
    shard-00000/keys.npy        uint64 first 8 bytes of every 64th suffix (search narrowing)
    shard-00000/filter.npy      uint64 anchor filter: which shards a span may occur in (optional:
                                used when index.json says ``"filter": _FILTER_ID``)
    ...

Why this design (and not infini-gram's engine): the PyPI package ``infini-gram`` 2.6.0 does build
local indexes offline on Python 3.11 here (its wheel ships a Rust ``rust_indexing`` binary for
``make-part``/``merge``/``concat``), but (1) the byte-level (u8) engine cannot be constructed
through its Python wrapper (``vocab_size=256`` overflows the u8 binding; it works only by calling
``cpp_engine.Engine_U8`` directly), (2) its queries are one pybind call per span or per text, with
no batch API: measured here 1.2k ``find``/s and 1.8k matching-statistics positions/s, far below
the 100k window look-ups/s we need, and (3) its build (Rust make-part + merge) measured 0.7 MB/s
against pydivsufsort's 1.8 MB/s on the same 20 MB under the same load. So we keep
``pydivsufsort`` (the in-memory index's engine) and shard like infini-gram does: the corpus is cut
at document boundaries into shards of at most ``shard_bytes``; each shard's suffix array is built
in memory (about 5x the shard size at peak, independent of the corpus size), written as ``.npy``
and memory-mapped for queries. Shards are not merged (a merge would compare suffixes across
shards); every query visits every shard, and the counts add up because no document spans two
shards. Shards from 8 MiB are suffix-sorted and written in background threads (two shards at
once on a machine with two or more CPUs) while the next one is read (libdivsufsort runs through
ctypes, without the GIL). Counts (:meth:`count_many`)
search each distinct span once, only in the shards whose anchor filter may hold it (a span occurs
in few shards; most misses end there), with libdivsufsort's ``sa_search`` confined to the stretch
of the suffix array that the sampled 8-byte keys leave; matching statistics use a
vectorised binary search (numpy gathers from the memory maps).

Answers equal :class:`~leakaudit.corpus.index.CorpusIndex`'s exactly: queries never contain
0xFF (it is not valid UTF-8), so a match can never cross a document or shard boundary, and the
per-shard suffix order agrees with the global one on every comparison a query makes.
"""

from __future__ import annotations

import bisect
import json
import mmap
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from leakaudit.corpus.index import (Match, WindowResult, _char_starts, _encode, _lcp,
                                    token_runs)
from leakaudit.errors import InputError, read_json_object

__all__ = ["DiskCorpusIndex", "build_index", "INDEX_BACKENDS", "AUTO_DISK_BYTES"]

_SEP = b"\xff"
_FORMAT = "leakaudit-corpus-index-disk"
_VERSION = 1
INDEX_BACKENDS = ("auto", "memory", "disk")
#: ``--index auto`` switches to the on-disk index above this many corpus bytes (1 GiB): the
#: in-memory index needs about 5x the corpus in RAM (bytes + int32 suffix array), 9x past 2 GiB.
AUTO_DISK_BYTES = 1 << 30
DEFAULT_SHARD_BYTES = 256 << 20
_CHUNK = 16  # bytes compared per gather step
_BATCH_CELLS = 1 << 17  # rows x chunk bytes gathered at once
_GATHER_CELLS = 1 << 16  # words gathered per step at most
_SPAN_CHUNK = 4096
_PAD = 8
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONE = np.uint64(1)
_SAMPLE = 64  # every 64th suffix's 8-byte key is kept (1/8 byte per corpus byte)
_SCALAR_MAX = 8  # batches up to this size use plain bisect over the memory map
_PIPELINE_MIN_SHARD = 8 << 20  # shards from this size are sorted in background threads
# Anchor filter (``filter.npy``, optional): a blocked Bloom filter over the 32-byte substrings of
# the shard that start at content-defined anchors, so that count_many skips the shards a query
# cannot occur in without a search. See :func:`_filter_fill`.
_FILTER_ID = "anchor4-fp32-1in16-16bits-k3"  # index.json "filter": what the reader must agree with
_FILTER_K = 32  # bytes fingerprinted at an anchor
_ANCHOR_MUL = np.uint32(0x9E3779B1)
_ANCHOR_LIM = np.uint32(1 << 28)  # anchor: (little-endian u32 at i) * _ANCHOR_MUL < 2**28
_FP_MUL = tuple(np.uint64(x) for x in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F,
                                       0x165667B19E3779F9, 0xD6E8FEB86659FD93))
_MIX = np.uint64(0xFF51AFD7ED558CCD)
_FILTER_WORD_BYTES = 64  # one 64-bit filter word per 64 shard bytes (16 bits per expected anchor)
_FILTER_CHUNK = 1 << 22  # shard positions per build step (bounded temporaries)


def _private_dir(p: Path) -> None:
    p.mkdir(parents=True, exist_ok=True)
    os.chmod(p, 0o700)


def _save_private(path: Path, arr: np.ndarray) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        np.save(f, arr, allow_pickle=False)


class _Queries:
    """A batch of byte strings as one flat int16 buffer (padded) + starts + lengths."""

    def __init__(self, buf: np.ndarray, starts: np.ndarray, lens: np.ndarray, raw: bytes):
        self.buf, self.starts, self.lens, self.raw = buf, starts, lens, raw
        self._words = None

    def words(self) -> np.ndarray:
        """Big-endian 8-byte words starting at every byte of the raw buffer (zero-padded)."""
        if self._words is None:
            padded = np.frombuffer(self.raw + bytes(16), dtype=np.uint8)
            self._words = np.ndarray((len(padded) - 7,), dtype=">u8", buffer=padded, strides=(1,))
        return self._words

    def row(self, i: int) -> bytes:
        s = int(self.starts[i])
        return self.raw[s : s + int(self.lens[i])]

    @classmethod
    def suffixes(cls, q: bytes, positions: np.ndarray) -> _Queries:
        """``q[p:]`` for every ``p`` in ``positions``, sharing one buffer."""
        flat = np.frombuffer(q, dtype=np.uint8).astype(np.int16)
        buf = np.concatenate([flat, np.zeros(_CHUNK, np.int16)])
        pos = np.asarray(positions, dtype=np.int64)
        return cls(buf, pos, len(q) - pos, q)

    def __len__(self) -> int:
        return len(self.lens)


_SA_SEARCH: dict[int, object] = {}


def _sa_search_fn(itemsize: int):
    """libdivsufsort's ``sa_search`` (C binary search with LCP bounds: the count and the first
    suffix-array index of a pattern), from the library pydivsufsort ships, with typed arguments.
    Our own CDLL handle, so pydivsufsort's untyped calls are unaffected."""
    fn = _SA_SEARCH.get(itemsize)
    if fn is None:
        import ctypes

        from pydivsufsort import dll

        t = ctypes.c_int32 if itemsize == 4 else ctypes.c_int64
        lib = ctypes.CDLL(str(dll.PATH_LIBDIVSUFSORT if itemsize == 4 else dll.PATH_LIBDIVSUFSORT64))
        fn = lib.sa_search if itemsize == 4 else lib.sa_search64
        fn.argtypes = [ctypes.c_void_p, t, ctypes.c_char_p, t, ctypes.c_void_p, t, ctypes.POINTER(t)]
        fn.restype = t
        _SA_SEARCH[itemsize] = fn = (fn, t)
    return fn


class _Shard:
    def __init__(self, d: Path, first_doc: int, use_filter: bool = False):
        # plain ndarray views of the memory maps: fancy indexing skips the memmap subclass
        self.data = np.asarray(np.load(d / "data.npy", mmap_mode="r", allow_pickle=False))
        self.sa = np.asarray(np.load(d / "sa.npy", mmap_mode="r", allow_pickle=False))
        self.doc_starts = np.load(d / "doc_starts.npy", mmap_mode="r", allow_pickle=False)
        # first 8 bytes (big-endian, zero-padded) of every _SAMPLE-th suffix: narrows each
        # binary search in C (np.searchsorted) before the byte-level steps
        self.keys = np.asarray(np.load(d / "keys.npy", mmap_mode="r", allow_pickle=False))
        # anchor filter (indexes built before it existed have none: every shard is searched)
        self.filter = np.asarray(np.load(d / "filter.npy", mmap_mode="r", allow_pickle=False)) \
            if use_filter else None
        if self.filter is not None and (self.filter.dtype != np.uint64 or self.filter.size == 0):
            raise InputError("corpus index shard filter is inconsistent", path=str(d))
        if self.data.dtype != np.uint8 or self.sa.dtype.kind not in "iu" or \
                len(self.sa) + _PAD != len(self.data):
            raise InputError("corpus index shard is inconsistent", path=str(d))
        self.n = len(self.sa)
        self.first_doc = first_doc
        # every byte offset as the start of a big-endian 8-byte word (overlapping, unaligned view)
        self.words = np.ndarray((self.n + 1,), dtype=">u8", buffer=self.data, strides=(1,))
        # Scalar path (small batches): slices of an mmap object are bytes, compared in C.
        with open(d / "data.npy", "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            if major == 1:
                np.lib.format.read_array_header_1_0(f)
            else:
                np.lib.format.read_array_header_2_0(f)
            self._off = f.tell()
            size = os.fstat(f.fileno()).st_size
            self._raw = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self._c = None
        self._sa_view = memoryview(self.sa).cast("B").cast("q" if self.sa.dtype.itemsize == 8 else "i") \
            if self.n else []

    def c_search(self):
        if self._c is None:
            fn, t = _sa_search_fn(self.sa.dtype.itemsize)
            self._c = (fn, t, self.data.ctypes.data, self.sa.ctypes.data, t(self.n))
        return self._c

    def interval(self, q: bytes) -> tuple[int, int]:
        """Suffix-array interval ``[lo, hi)`` of the suffixes starting with ``q`` (``q`` never
        empty), by libdivsufsort's ``sa_search`` in C over the memory maps."""
        if self.n == 0:
            return 0, 0
        fn, t, dp, sp, n = self.c_search()
        left = t()
        cnt = fn(dp, n, q, len(q), sp, n, left)
        if cnt < 0:
            raise RuntimeError(f"sa_search failed ({cnt})")
        return (left.value, left.value + cnt) if cnt else (0, 0)

    def _key(self, j: int, m: int) -> bytes:
        s = self._off + self._sa_view[j]
        return self._raw[s : min(s + m, self._off + self.n)]

    def _search_one(self, q: bytes, right: bool) -> int:
        m = len(q)
        f = bisect.bisect_right if right else bisect.bisect_left
        return f(range(self.n), q, key=lambda j: self._key(j, m))

    def _ms_one(self, q: bytes) -> int:
        m = len(q)
        if m == 0 or self.n == 0:
            return 0
        k = self._search_one(q, False)
        best = 0
        for j in (k - 1, k):
            if 0 <= j < self.n:
                best = max(best, _lcp(q, self._key(j, m)))
        return best

    def compare(self, k: np.ndarray, qs: _Queries, rows: np.ndarray,
                skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as :meth:`_compare_bytes`, comparing 8 bytes at a time as big-endian
        words (numeric order of big-endian words is byte order); suffixes that end before the
        query does (near the end of the shard) take the byte path."""
        m = len(rows)
        sign = np.zeros(m, dtype=np.int8)
        lcp = np.zeros(m, dtype=np.int64)
        if m == 0:
            return sign, lcp
        k = np.asarray(k)
        pos = self.sa[k].astype(np.int64)
        qstart = qs.starts[rows]
        qlen = qs.lens[rows]
        off = np.zeros(m, dtype=np.int64) if skip is None else np.minimum(skip, qlen).astype(np.int64)
        lcp[:] = off
        short = np.flatnonzero(pos + qlen > self.n)
        if short.size:
            s_sign, s_lcp = self._compare_bytes(k[short], qs, rows[short],
                                                None if skip is None else off[short])
            sign[short], lcp[short] = s_sign, s_lcp
        todo = np.ones(m, dtype=bool)
        todo[short] = False
        und = np.flatnonzero(todo & (off < qlen))
        qw_all = qs.words()
        width = 2
        while und.size:
            width = min(width, int(((qlen[und] - off[und] + 7) // 8).max()),
                        max(1, _GATHER_CELLS // und.size))  # bounded temporaries
            o = off[und, None] + 8 * np.arange(width, dtype=np.int64)
            rem = qlen[und, None] - o
            inq = rem > 0
            idx = np.minimum(pos[und, None] + o, self.n)
            dw = self.words[idx]
            qw = qw_all[qstart[und, None] + np.minimum(o, qlen[und, None])]
            shift = (8 * np.clip(8 - rem, 0, 8)).astype(np.uint64)
            mask = np.where(rem >= 8, _ALL, ~((_ONE << shift) - _ONE))
            dm = dw & mask
            qm = qw & mask
            neq = (dm != qm) & inq
            anyd = neq.any(axis=1)
            f = neq.argmax(axis=1)[anyd]
            hit = und[anyd]
            a, b = dm[anyd, f], qm[anyd, f]
            sign[hit] = np.where(a < b, -1, 1)
            x = (a ^ b).astype(">u8").view(np.uint8).reshape(-1, 8)
            lcp[hit] = off[hit] + 8 * f + (x != 0).argmax(axis=1)
            rest = und[~anyd]
            off[rest] += 8 * width
            done_eq = off[rest] >= qlen[rest]
            lcp[rest[done_eq]] = qlen[rest[done_eq]]
            und = rest[~done_eq]
            width *= 8
        return sign, lcp

    def _compare_bytes(self, k: np.ndarray, qs: _Queries, rows: np.ndarray,
                       skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Compare suffix ``sa[k[i]]`` with query ``rows[i]``, truncated to the query's length.

        Returns ``(sign, lcp)``: sign -1 (suffix < query), 0 (suffix starts with the query),
        +1 (suffix > query); lcp the length of their common prefix (at most the query's length).
        The end of the shard compares below every byte (a shorter string sorts first).
        ``skip[i]`` bytes are known to be equal already and are not compared again.
        """
        m = len(rows)
        sign = np.zeros(m, dtype=np.int8)
        lcp = np.zeros(m, dtype=np.int64)
        if m == 0:
            return sign, lcp
        pos = self.sa[k].astype(np.int64)
        qstart = qs.starts[rows]
        qlen = qs.lens[rows]
        off = np.zeros(m, dtype=np.int64) if skip is None else skip.astype(np.int64, copy=True)
        lcp[:] = np.minimum(off, qlen)
        und = np.flatnonzero(off < qlen)
        n = self.n
        width = _CHUNK
        while und.size:
            # rows still equal after a chunk are usually long matches: widen 8x per step
            width = min(width, int((qlen[und] - off[und]).max()), max(1, _GATHER_CELLS // und.size))
            cols = np.arange(width, dtype=np.int64)
            o = off[und, None] + cols
            idx = pos[und, None] + o
            valid = idx < n
            g = self.data[np.minimum(idx, n - 1)].astype(np.int16)
            g[~valid] = -1
            qv = qs.buf[np.minimum(qstart[und, None] + o, len(qs.buf) - 1)]
            neq = (g != qv) & (o < qlen[und, None])
            anyd = neq.any(axis=1)
            first = neq.argmax(axis=1)
            hit = und[anyd]
            f = first[anyd]
            sign[hit] = np.where(g[anyd, f] < qv[anyd, f], -1, 1)
            lcp[hit] = off[hit] + f
            rest = und[~anyd]
            off[rest] += width
            done_eq = off[rest] >= qlen[rest]
            lcp[rest[done_eq]] = qlen[rest[done_eq]]
            und = rest[~done_eq]
            width *= 8
        return sign, lcp

    def search(self, qs: _Queries, right: bool = False) -> np.ndarray:
        """Insertion points of the queries among the suffixes truncated to each query's length
        (``bisect_left``; ``bisect_right`` when ``right``), vectorised over the batch.

        Manber & Myers' LCP bound: every suffix strictly between the last compared left and
        right neighbours shares ``min(lcp_left, lcp_right)`` bytes with the query, so each
        comparison starts there and a query costs O(len + log n) byte comparisons, not
        O(len * log n)."""
        m = len(qs)
        if m <= _SCALAR_MAX:
            return np.array([self._search_one(qs.row(i), right) for i in range(m)], dtype=np.int64)
        lo, hi = self._narrow(qs)
        llo = np.zeros(m, dtype=np.int64)
        lhi = np.zeros(m, dtype=np.int64)
        act = np.flatnonzero(lo < hi)
        while act.size:
            mid = (lo[act] + hi[act]) // 2
            sign, l = self.compare(mid, qs, act, np.minimum(llo[act], lhi[act]))
            go_right = sign <= 0 if right else sign < 0
            r, lft = act[go_right], act[~go_right]
            lo[r] = mid[go_right] + 1
            llo[r] = l[go_right]
            hi[lft] = mid[~go_right]
            lhi[lft] = l[~go_right]
            act = act[lo[act] < hi[act]]
        return lo

    def _narrow(self, qs: _Queries) -> tuple[np.ndarray, np.ndarray]:
        """A range ``[lo, hi]`` of the suffix array holding both insertion points of each query.

        ``pad8`` (first 8 bytes, zero-padded, big-endian) is monotone in suffix order, so a
        sampled key below the query's zero-padded prefix is a suffix below the query, and one
        above its 0xFF-padded prefix a suffix above every suffix that starts with the query."""
        m = len(qs)
        if len(self.keys) == 0:
            return np.zeros(m, np.int64), np.full(m, self.n, np.int64)
        cols = np.arange(8, dtype=np.int64)
        within = cols < qs.lens[:, None]
        b = np.where(within, qs.buf[qs.starts[:, None] + np.minimum(cols, np.maximum(qs.lens[:, None] - 1, 0))], 0)
        shifts = np.arange(56, -8, -8, dtype=np.uint64)
        lo_key = (b.astype(np.uint64) << shifts).sum(axis=1, dtype=np.uint64)
        hi_key = (np.where(within, b, 0xFF).astype(np.uint64) << shifts).sum(axis=1, dtype=np.uint64)
        return self.narrow_keys(lo_key, hi_key)

    def narrow_keys(self, lo_key: np.ndarray, hi_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_narrow` from each query's zero-padded and 0xFF-padded first 8 bytes."""
        if len(self.keys) == 0:
            return np.zeros(len(lo_key), np.int64), np.full(len(lo_key), self.n, np.int64)
        lb = np.searchsorted(self.keys, lo_key, side="left").astype(np.int64)
        hb = np.searchsorted(self.keys, hi_key, side="right").astype(np.int64)
        lo = np.where(lb > 0, (lb - 1) * _SAMPLE + 1, 0)
        hi = np.minimum(hb * _SAMPLE, self.n)
        return lo, np.maximum(hi, lo)

    def may_contain(self, anchors: _Anchors) -> np.ndarray:
        """False where a query certainly does not occur in this shard: the fingerprint of one
        of its anchors is missing from the filter. The first anchor of every query is probed;
        the others only for the queries that pass it (a query from the shard passes every one,
        a novel one usually fails its first; one that starts like the corpus and then departs
        from it fails at an anchor less than 32 bytes before the departure, if there is one)."""
        def present(h: np.ndarray) -> np.ndarray:
            idx, mask = _filter_slots(h, len(self.filter))
            return (self.filter[idx] & mask) == mask

        out = ~anchors.has
        cand = anchors.rows[present(anchors.h_first)]
        out[cand] = True
        a = anchors.ptr[cand] + 1
        cnt = anchors.ptr[cand + 1] - a
        total = int(cnt.sum())
        if total:
            idx = np.repeat(a - np.cumsum(cnt) + cnt, cnt) + np.arange(total)
            ok = present(_fingerprints(anchors.wl, anchors.pos[idx]))
            out[np.repeat(cand, cnt)[~ok]] = False
        return out

    def matching_statistics(self, qs: _Queries) -> np.ndarray:
        """Longest common prefix of each query with any suffix of the shard: attained next to
        the insertion point."""
        m = len(qs)
        out = np.zeros(m, dtype=np.int64)
        if self.n == 0 or m == 0:
            return out
        if m <= _SCALAR_MAX:
            return np.array([self._ms_one(qs.row(i)) for i in range(m)], dtype=np.int64)
        k = self.search(qs)
        rows = np.arange(m)
        for kk in (k - 1, k):
            ok = (kk >= 0) & (kk < self.n)
            _, l = self.compare(kk[ok], qs, rows[ok])
            out[ok] = np.maximum(out[ok], l)
        return out

    def doc_of(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.doc_starts, positions, side="right") - 1


def _batched(qs: _Queries, fn) -> np.ndarray:
    """Run ``fn`` over slices of the batch so that gathers stay ~_BATCH_CELLS cells."""
    step = max(1, _BATCH_CELLS // _CHUNK)
    if len(qs) <= step:
        return fn(qs)
    parts = []
    for s in range(0, len(qs), step):
        sub = _Queries(qs.buf, qs.starts[s : s + step], qs.lens[s : s + step], qs.raw)
        sub._words = qs.words()
        parts.append(fn(sub))
    return np.concatenate(parts)


class DiskCorpusIndex:
    """Sharded suffix-array index on disk, memory-mapped; see the module docstring.

    Build with :meth:`build` (from any iterable of texts, streamed), open with :meth:`open`.
    Answers the questions of :class:`~leakaudit.corpus.index.CorpusIndex` identically, plus batch
    forms (:meth:`count_many`, :meth:`window_match_many`) for throughput.
    """

    def __init__(self, directory: str | Path):
        d = Path(directory)
        meta_path = d / "index.json"
        meta = read_json_object(meta_path, missing="not an on-disk corpus index (index.json is "
                                "missing)", missing_at=d)
        if meta.get("format") != _FORMAT:
            raise InputError("not an on-disk corpus index (unknown format)", path=str(meta_path))
        if meta.get("version") != _VERSION:
            raise InputError(f"unsupported index version {meta.get('version')!r} "
                             f"(this leakaudit reads version {_VERSION})", path=str(meta_path))
        self.directory = d
        self._meta = meta
        try:
            # "filter" absent (built before the filter existed) or another kind: not used
            use_filter = meta.get("filter") == _FILTER_ID
            self._shards = [_Shard(d / s["name"], int(s["first_doc"]), use_filter)
                            for s in meta["shards"]]
            self._id_off = np.load(d / "doc_ids.npy", mmap_mode="r", allow_pickle=False)
            self._ids = np.memmap(d / "doc_ids.bin", dtype=np.uint8, mode="r") \
                if (d / "doc_ids.bin").stat().st_size else np.zeros(0, np.uint8)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"corpus index is incomplete or unreadable ({e})", path=str(d)) from None
        self._n_docs = int(meta["n_docs"])
        self._n_text_bytes = int(meta["n_bytes"])
        if len(self._id_off) != self._n_docs + 1:
            raise InputError("corpus index is inconsistent (doc id table)", path=str(d))

    @classmethod
    def open(cls, directory: str | Path) -> DiskCorpusIndex:
        """Open an index written by :meth:`build` (memory-mapped; nothing is read up front)."""
        return cls(directory)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def build(cls, texts: Iterable[str], directory: str | Path, doc_ids: Iterable[str] | None = None,
              *, shard_bytes: int = DEFAULT_SHARD_BYTES, overwrite: bool = False,
              progress=None, sort_workers: int | None = None) -> DiskCorpusIndex:
        """Index ``texts`` (any iterable, consumed once) into ``directory``.

        Memory stays bounded by ``shard_bytes`` (about 6x it at the peak of a shard's suffix
        sort, times ``sort_workers``), whatever the corpus size. ``directory`` must be new or
        empty unless ``overwrite`` (which only ever replaces a previous leakaudit disk index).
        ``sort_workers`` shards (default: 2, or 1 on a one-CPU machine) are suffix-sorted at
        once in background threads, from shards of 8 MiB up.
        """
        from pydivsufsort import divsufsort

        if shard_bytes < 1:
            raise ValueError(f"shard_bytes must be >= 1, got {shard_bytes}")
        if sort_workers is None:
            sort_workers = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                               else (os.cpu_count() or 1))
        if sort_workers < 1:  # checked before the directory is made: nothing half-written
            raise ValueError(f"sort_workers must be >= 1, got {sort_workers}")
        d = Path(directory)
        if d.exists() and any(d.iterdir()):
            if not (overwrite and (d / "index.json").is_file() and _is_disk_index(d)):
                raise InputError("index directory is not empty (pass overwrite=True to replace "
                                 "a previous leakaudit index there)", path=str(d))
            shutil.rmtree(d)
        _private_dir(d)
        ids_iter = iter(doc_ids) if doc_ids is not None else None
        shards: list[dict] = []
        pending: list[bytes] = []
        pending_bytes = 0
        n_docs = 0
        n_text = 0
        id_offsets = [0]
        id_fd = os.open(d / "doc_ids.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

        # Pipelined: shards are suffix-sorted and written in ``sort_workers`` background threads
        # (libdivsufsort is called through ctypes, which releases the GIL) while this thread
        # reads and encodes the next shard. At most ``sort_workers`` shards are being sorted at a
        # time, so the peak is that many shards' sorts plus the next shard's text. Small shards
        # (tight memory budgets) are sorted inline: the overlap gains little there.
        pipelined = shard_bytes >= _PIPELINE_MIN_SHARD
        pool = None
        running: list = []  # futures of the shards being sorted, oldest first

        def write_shard(sd: Path, data: bytes, starts: np.ndarray) -> None:
            # 8 zero bytes after the text: every offset starts a full 8-byte word
            padded = np.frombuffer(data + bytes(_PAD), dtype=np.uint8)
            _save_private(sd / "data.npy", padded)
            sa = np.asarray(divsufsort(data)) if len(data) else np.zeros(0, np.int32)
            _save_private(sd / "sa.npy", sa)
            _save_private(sd / "keys.npy", _sample_keys(padded, sa))
            del sa
            _save_private(sd / "filter.npy", _filter_fill(padded))
            del padded
            del data
            _save_private(sd / "doc_starts.npy", starts)

        def flush() -> None:
            nonlocal pending, pending_bytes, pool, running
            if not pending:
                return
            name = f"shard-{len(shards):05d}"
            sd = d / name
            _private_dir(sd)
            lengths = np.fromiter((len(e) + 1 for e in pending), dtype=np.int64, count=len(pending))
            starts = np.zeros(len(pending), dtype=np.int64)
            starts[1:] = np.cumsum(lengths)[:-1]
            data = _SEP.join(pending)
            n_in = len(pending)
            pending, pending_bytes = [], 0
            while len(running) >= sort_workers:
                running.pop(0).result()  # an earlier shard is written (its errors surface here)
            if pipelined:
                if pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    pool = ThreadPoolExecutor(max_workers=sort_workers,
                                              thread_name_prefix="index-shard")
                running.append(pool.submit(write_shard, sd, data, starts))
            else:
                write_shard(sd, data, starts)
            del data
            shards.append({"name": name, "first_doc": n_docs - n_in, "n_docs": n_in})
            if progress is not None:
                progress(n_docs, n_text)

        def finish() -> None:
            nonlocal running
            try:
                while running:
                    running.pop(0).result()
            finally:
                if pool is not None:
                    pool.shutdown(wait=True)

        with os.fdopen(id_fd, "wb") as id_f:
            try:
                for i, text in enumerate(texts):
                    if ids_iter is not None:
                        try:
                            did = str(next(ids_iter))
                        except StopIteration:
                            raise ValueError(f"more texts than doc ids ({i} ids)") from None
                    else:
                        did = str(i)
                    e = _encode(text)
                    idb = did.encode("utf-8", "surrogatepass")
                    id_f.write(idb)
                    id_offsets.append(id_offsets[-1] + len(idb))
                    if pending and pending_bytes + len(e) + 1 > shard_bytes:
                        flush()
                    pending.append(e)
                    pending_bytes += len(e) + 1
                    n_docs += 1
                    n_text += len(e)
                flush()
            finally:
                finish()
        if ids_iter is not None and next(ids_iter, None) is not None:
            raise ValueError(f"more doc ids than texts ({n_docs} texts)")
        _save_private(d / "doc_ids.npy", np.asarray(id_offsets, dtype=np.int64))
        meta = {"format": _FORMAT, "version": _VERSION, "n_docs": n_docs, "n_bytes": n_text,
                "shard_bytes": shard_bytes, "shards": shards, "filter": _FILTER_ID}
        tmp = d / "index.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(meta, f)
        os.replace(tmp, d / "index.json")
        return cls(d)

    # -- size ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n_docs

    @property
    def n_bytes(self) -> int:
        """UTF-8 bytes of document text (separators not counted)."""
        return self._n_text_bytes

    @property
    def n_shards(self) -> int:
        return len(self._shards)

    @property
    def disk_bytes(self) -> int:
        """Bytes the index occupies on disk."""
        return sum(f.stat().st_size for f in self.directory.rglob("*") if f.is_file())

    def content_key(self) -> str:
        """A SHA-256 over the indexed bytes and document ids (the files' contents), computed once
        per opened index: what results verified against this index depend on."""
        if getattr(self, "_content_key", None) is None:
            import hashlib

            h = hashlib.sha256(b"leakaudit-disk-index-content")
            files = [self.directory / s["name"] / "data.npy" for s in self._meta["shards"]]
            for f in files + [self.directory / "doc_ids.npy", self.directory / "doc_ids.bin"]:
                h.update(f.name.encode() + f.stat().st_size.to_bytes(8, "little"))
                with open(f, "rb") as fh:
                    while chunk := fh.read(1 << 24):
                        h.update(chunk)
            self._content_key = h.hexdigest()
        return self._content_key

    def doc_id(self, i: int) -> str:
        a, b = int(self._id_off[i]), int(self._id_off[i + 1])
        return bytes(self._ids[a:b]).decode("utf-8", "surrogatepass")

    @property
    def doc_ids(self) -> list[str]:
        return [self.doc_id(i) for i in range(self._n_docs)]

    def __repr__(self) -> str:
        return f"DiskCorpusIndex(n_docs={len(self)}, n_bytes={self.n_bytes}, n_shards={self.n_shards})"

    # -- span queries --------------------------------------------------------------------------

    def _intervals(self, qs: _Queries) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for sh in self._shards:
            lo = _batched(qs, sh.search)
            hi = _batched(qs, lambda sub, sh=sh: sh.search(sub, right=True))
            out.append((lo, hi))
        return out

    @staticmethod
    def _span_bytes(span: str) -> bytes:
        q = _encode(span)
        if not q:
            raise ValueError("span is empty")
        return q

    def count_many(self, spans: Sequence[str]) -> np.ndarray:
        """Occurrence counts of many spans at once (the fast path for window look-ups).

        Each distinct span is looked up once, in the order of its first 8 bytes (neighbouring
        searches walk neighbouring parts of the suffix array). Per shard, the anchor filter
        first drops the spans that cannot occur there (most (span, shard) pairs: a span occurs
        in few shards); the rest get libdivsufsort's ``sa_search`` in C, confined to the
        stretch of the suffix array that the sampled 8-byte keys leave."""
        qb = [_encode(s) for s in spans]
        if not all(qb):
            raise ValueError("span is empty")
        where: dict[bytes, int] = {}
        inv = np.fromiter((where.setdefault(q, len(where)) for q in qb), dtype=np.int64,
                          count=len(qb))
        uniq = list(where)
        total = np.zeros(len(uniq), dtype=np.int64)
        step = max(1, _BATCH_CELLS // _CHUNK)  # spans per chunk: bounded temporaries
        for c in range(0, len(uniq), step):
            chunk = uniq[c : c + step]
            lens = np.fromiter(map(len, chunk), dtype=np.int64, count=len(chunk))
            starts = np.zeros(len(chunk), dtype=np.int64)
            starts[1:] = np.cumsum(lens)[:-1]
            raw = b"".join(chunk)
            anchors = _Anchors(raw, starts, lens) \
                if any(sh.filter is not None for sh in self._shards) else None
            bpad = np.frombuffer(raw + bytes(8), dtype=np.uint8)
            be = np.ndarray((len(raw) + 1,), dtype=">u8", buffer=bpad, strides=(1,))
            # first 8 bytes of each span, zero-padded (lo) and 0xFF-padded (hi), big-endian
            sh_bits = (8 * np.clip(8 - lens, 0, 8)).astype(np.uint64)
            keep = np.where(lens >= 8, _ALL, ~((_ONE << sh_bits) - _ONE))
            lo_key = be[starts].astype(np.uint64) & keep
            hi_key = lo_key | ~keep
            # searched in the order of their first 8 bytes: neighbouring stretches of the
            # suffix array one after the other (cache and page-cache locality)
            order = np.argsort(lo_key, kind="stable")
            for sh in self._shards:
                if sh.n == 0:
                    continue
                rows = order if sh.filter is None or anchors is None \
                    else order[sh.may_contain(anchors)[order]]
                if rows.size == 0:
                    continue
                fn, t, dp, sp, n = sh.c_search()
                isz = sh.sa.dtype.itemsize
                left = t()
                lo, hi = sh.narrow_keys(lo_key[rows], hi_key[rows])
                counts = [fn(dp, n, chunk[i], len(chunk[i]), sp + a * isz, b - a, left)
                          if b > a else 0
                          for i, a, b in zip(rows.tolist(), lo.tolist(), hi.tolist())]
                if counts and min(counts) < 0:
                    raise RuntimeError("sa_search failed")
                total[c + rows] += np.asarray(counts, dtype=np.int64)
        return total[inv]

    def count(self, span: str) -> int:
        """Total number of occurrences of ``span`` (overlapping ones included)."""
        return int(self.count_many([span])[0])

    def _span_stats(self, q: bytes, limit: int) -> tuple[int, int, list[tuple[str, int]]]:
        count = 0
        n_docs = 0
        locs: list[tuple[int, int, int]] = []  # (global doc, shard, pos)
        for si, sh in enumerate(self._shards):
            a, b = sh.interval(q)
            if b <= a:
                continue
            count += b - a
            seen = np.zeros(len(sh.doc_starts), dtype=bool)  # bounded memory for any count
            best = np.zeros(0, dtype=np.int64)
            for c in range(a, b, _SPAN_CHUNK * 16):
                pos = np.asarray(sh.sa[c : min(b, c + _SPAN_CHUNK * 16)], dtype=np.int64)
                seen[sh.doc_of(pos)] = True
                if limit > 0:
                    best = np.concatenate([best, pos])
                    if len(best) > limit:
                        best = np.partition(best, limit - 1)[:limit]
            n_docs += int(seen.sum())
            for p, di in zip(np.sort(best).tolist(), sh.doc_of(np.sort(best)).tolist()):
                locs.append((sh.first_doc + di, si, p))
        out = []
        for gdoc, si, p in sorted(locs)[: max(limit, 0)]:
            sh = self._shards[si]
            start = int(sh.doc_starts[gdoc - sh.first_doc])
            char_off = len(bytes(sh.data[start:p]).decode("utf-8", "surrogatepass"))
            out.append((self.doc_id(gdoc), char_off))
        return count, n_docs, out

    def doc_count(self, span: str) -> int:
        """Number of distinct documents that contain ``span``."""
        return self._span_stats(self._span_bytes(span), 0)[1]

    def locate(self, span: str, limit: int = 10) -> list[tuple[str, int]]:
        """Up to ``limit`` occurrences as (doc id, char offset), in corpus order."""
        return self._span_stats(self._span_bytes(span), limit)[2]

    # -- matching statistics -------------------------------------------------------------------

    def _ms(self, qs: _Queries) -> np.ndarray:
        out = np.zeros(len(qs), dtype=np.int64)
        for sh in self._shards:
            out = np.maximum(out, _batched(qs, sh.matching_statistics))
        return out

    def matching_statistics(self, text: str, positions: Sequence[int] | None = None) -> np.ndarray:
        """For each byte position ``i`` of ``text.encode()`` (or each of ``positions``), the
        length in bytes of the longest prefix of ``q[i:]`` that occurs in the corpus."""
        q = _encode(text)
        n = len(q)
        if positions is None:
            pos = np.arange(n, dtype=np.int64)
        else:
            pos = np.asarray(positions, dtype=np.int64).reshape(-1)
            if pos.size and (pos.min() < 0 or pos.max() > n):
                raise ValueError(f"positions must lie in [0, {n}]")
        return self._ms(_Queries.suffixes(q, pos))

    def longest_match(self, text: str, limit: int = 10) -> Match:
        """The longest substring of ``text`` in the corpus (earliest on ties), char-aligned; see
        :meth:`CorpusIndex.longest_match <leakaudit.corpus.index.CorpusIndex.longest_match>`."""
        q = _encode(text)
        bounds = _char_starts(q)
        starts = bounds[:-1]
        empty = Match(text="", char_start=0, char_end=0, n_bytes=0, count=0, doc_count=0)
        if starts.size == 0 or not self._shards:
            return empty
        ms = self._ms(_Queries.suffixes(q, starts))
        end_char = np.searchsorted(bounds, starts + ms, side="right") - 1
        lengths = bounds[end_char] - starts
        best = int(np.argmax(lengths))
        n_bytes = int(lengths[best])
        if n_bytes <= 0:
            return empty
        b0 = int(starts[best])
        count, n_docs, locs = self._span_stats(q[b0 : b0 + n_bytes], limit)
        return Match(text=text[best:int(end_char[best])], char_start=best,
                     char_end=int(end_char[best]), n_bytes=n_bytes, count=count,
                     doc_count=n_docs, locations=locs)

    def window_match_many(self, texts: Sequence[str],
                          offsets: Sequence[Sequence[tuple[int, int]]],
                          window: int = 50) -> list[WindowResult]:
        """:meth:`window_match` over many texts with one batched look-up."""
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if len(texts) != len(offsets):
            raise ValueError(f"{len(texts)} texts but {len(offsets)} offset lists")
        prepared = []
        bufs: list[bytes] = []
        starts_all: list[np.ndarray] = []
        base = 0
        for text, toks in zip(texts, offsets):
            n_tok = len(toks)
            q = _encode(text)
            bounds = _char_starts(q)
            n_chars = len(bounds) - 1
            offs = np.clip(np.asarray(toks, dtype=np.int64).reshape(n_tok, 2), 0, n_chars)
            cs = np.maximum.accumulate(offs[:, 0]) if n_tok else offs[:, 0]
            ce = np.maximum(np.maximum.accumulate(offs[:, 1]), cs) if n_tok else offs[:, 1]
            bs, be = bounds[cs], bounds[ce]
            uniq, inv = np.unique(bs, return_inverse=True)
            # a text shorter than the window also needs ms at 0 (whole-text test)
            extra = np.array([0], dtype=np.int64) if n_tok < window else np.zeros(0, np.int64)
            prepared.append((n_tok, q, cs, ce, bs, be, uniq, inv, len(extra)))
            starts_all.append(np.concatenate([uniq, extra]) + base)
            bufs.append(q)
            base += len(q)
        flat = b"".join(bufs)
        qpos = np.concatenate(starts_all) if starts_all else np.zeros(0, np.int64)
        # each suffix runs to the end of its own text, not into the next one
        ends = np.repeat(np.cumsum([len(b) for b in bufs]), [len(s) for s in starts_all])
        qs = _Queries.suffixes(flat, qpos)
        qs.lens = ends - qpos
        ms_all = self._ms(qs) if len(qs) else np.zeros(0, np.int64)
        results = []
        at = 0
        for n_tok, q, cs, ce, bs, be, uniq, inv, n_extra in prepared:
            ms_u = ms_all[at : at + len(uniq)]
            ms_whole = int(ms_all[at + len(uniq)]) if n_extra else 0
            at += len(uniq) + n_extra
            results.append(_sweep(n_tok, q, cs, ce, bs, be, ms_u[inv.reshape(-1)], window,
                                  ms_whole, bool(self._shards)))
        return results

    def window_match(self, text: str, token_char_offsets: Sequence[tuple[int, int]],
                     window: int = 50) -> WindowResult:
        """Does a run of ``window`` consecutive tokens of ``text`` occur verbatim? Same contract
        as :meth:`CorpusIndex.window_match <leakaudit.corpus.index.CorpusIndex.window_match>`."""
        return self.window_match_many([text], [token_char_offsets], window)[0]


def _sweep(n_tok, q, cs, ce, bs, be, ms, window, ms_whole, nonempty) -> WindowResult:
    longest, first = token_runs(n_tok, cs, ce, bs, be, ms, window)
    if n_tok >= window:
        return WindowResult(n_tok, longest, first is not None, first)
    whole = len(q) > 0 and nonempty and ms_whole == len(q)
    n_chars = len(_char_starts(q)) - 1
    return WindowResult(n_tok, longest, whole, (0, n_chars) if whole else None)


def _sample_keys(padded: np.ndarray, sa: np.ndarray) -> np.ndarray:
    """``pad8`` of every ``_SAMPLE``-th suffix (see :meth:`_Shard._narrow`): one gather of
    big-endian 8-byte words from the shard's bytes (``padded``: the text and ``_PAD`` zero bytes,
    which stand for the end of the text)."""
    n = len(padded) - _PAD
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    words = np.ndarray((n + 1,), dtype=">u8", buffer=padded, strides=(1,))
    return words[np.asarray(sa[::_SAMPLE], dtype=np.int64)].astype(np.uint64)


def _le_words(buf: np.ndarray, n: int, size: int = 8) -> np.ndarray:
    """Little-endian ``size``-byte words starting at offsets ``0..n-1`` of ``buf`` (which holds
    at least ``n + size - 1`` bytes): an overlapping, unaligned view, no copy."""
    return np.ndarray((n,), dtype=f"<u{size}", buffer=buf, strides=(1,))


def _is_anchor(w4: np.ndarray) -> np.ndarray:
    """Anchor test of little-endian 4-byte words (a multiplicative hash into 1/16)."""
    return w4 * _ANCHOR_MUL < _ANCHOR_LIM


def _fingerprints(wl: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """A 64-bit hash of the ``_FILTER_K`` bytes at each of ``pos`` (``wl``: :func:`_le_words`)."""
    h = wl[pos] * _FP_MUL[0]
    for t in range(1, _FILTER_K // 8):
        h += wl[pos + 8 * t] * _FP_MUL[t]
    h ^= h >> np.uint64(29)
    h *= _MIX
    h ^= h >> np.uint64(32)
    return h


def _filter_slots(h: np.ndarray, n_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Filter word (from the high 32 bits, multiply-shift into ``[0, n_words)``) and the mask of
    three bits in it (from the low 18 bits) of each fingerprint."""
    idx = ((h >> np.uint64(32)) * np.uint64(n_words)) >> np.uint64(32)
    one = np.uint64(1)
    m63 = np.uint64(63)
    mask = (one << (h & m63)) | (one << ((h >> np.uint64(6)) & m63)) | \
        (one << ((h >> np.uint64(12)) & m63))
    return idx.astype(np.int64), mask


def _filter_fill(padded: np.ndarray) -> np.ndarray:
    """The anchor filter of one shard (``padded``: its bytes and ``_PAD`` zero bytes).

    An anchor is a position ``i`` (with ``i + _FILTER_K <= n``) whose 4 bytes hash below
    ``_ANCHOR_LIM``: it depends only on those bytes, so wherever a query occurs in the shard, the
    anchors inside the query are anchors of the shard at the same place, and the fingerprints of
    their 32 bytes were set here. A query whose anchor fingerprint is missing therefore does not
    occur in the shard (no false negatives; false positives only cost a search). About 1 position
    in 16 is an anchor; the filter has one 64-bit word per 64 bytes (16 bits per expected anchor,
    3 bits set per anchor: about 0.5% false positives per probe), 1/8 byte per corpus byte."""
    n = len(padded) - _PAD
    n_words = max(1, -(-n // _FILTER_WORD_BYTES))
    filt = np.zeros(n_words, dtype=np.uint64)
    n_pos = n - _FILTER_K + 1
    if n_pos <= 0:
        return filt
    wl = _le_words(padded, n - 7)
    w4 = _le_words(padded, n - 3, 4)
    for s in range(0, n_pos, _FILTER_CHUNK):
        e = min(n_pos, s + _FILTER_CHUNK)
        anc = np.flatnonzero(_is_anchor(w4[s:e])) + s
        idx, mask = _filter_slots(_fingerprints(wl, anc), n_words)
        # fancy |= keeps one of several writes to the same word: redo the ones that were lost
        while idx.size:
            filt[idx] |= mask
            lost = (filt[idx] & mask) != mask
            idx, mask = idx[lost], mask[lost]
    return filt


class _Anchors:
    """The anchors (see :func:`_filter_fill`) of a batch of queries: every position ``j`` of each
    query where an anchor starts and ``j + _FILTER_K`` fits in the query, found with one scan of
    the concatenated queries. A query without one (shorter than 32 bytes, or unlucky: about
    (15/16)**(len - 31)) is searched in every shard."""

    def __init__(self, raw: bytes, starts: np.ndarray, lens: np.ndarray):
        n = len(raw)
        buf = np.frombuffer(raw + bytes(8), dtype=np.uint8)
        self.wl = _le_words(buf, n + 1)
        pos = np.flatnonzero(_is_anchor(_le_words(buf, n, 4)))
        row = np.searchsorted(starts, pos, side="right") - 1
        keep = pos + _FILTER_K <= starts[row] + lens[row]
        self.pos = pos[keep]
        # anchors of query i: pos[ptr[i]:ptr[i + 1]], in order (rows ascend with positions)
        self.ptr = np.searchsorted(row[keep], np.arange(len(lens) + 1))
        self.has = self.ptr[1:] > self.ptr[:-1]
        self.rows = np.flatnonzero(self.has)
        self.h_first = _fingerprints(self.wl, self.pos[self.ptr[self.rows]])

    def __len__(self) -> int:
        return len(self.has)


def _is_disk_index(d: Path) -> bool:
    try:
        return json.loads((d / "index.json").read_text(encoding="utf-8")).get("format") == _FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def build_index(texts: Sequence[str], doc_ids: Sequence[str] | None = None, *,
                backend: str = "auto", directory: str | Path | None = None,
                threshold_bytes: int = AUTO_DISK_BYTES, shard_bytes: int = DEFAULT_SHARD_BYTES):
    """The corpus index for ``--index memory|disk|auto``.

    ``auto`` builds the on-disk index when the corpus has more than ``threshold_bytes`` UTF-8
    bytes (and a ``directory`` for it), else the in-memory one. ``disk`` reuses ``directory``
    when it already holds a leakaudit disk index of the same number of documents and bytes.
    """
    from leakaudit.corpus.index import CorpusIndex

    if backend not in INDEX_BACKENDS:
        raise InputError(f"unknown index backend {backend!r}; known: {', '.join(INDEX_BACKENDS)}")
    if backend == "auto":
        size = sum(len(_encode(t)) for t in texts)
        backend = "disk" if size > threshold_bytes and directory is not None else "memory"
    if backend == "memory":
        return CorpusIndex.build(list(texts), list(doc_ids) if doc_ids is not None else None)
    if directory is None:
        raise InputError("the on-disk index needs a directory (--index-dir)")
    d = Path(directory)
    if (d / "index.json").is_file() and _is_disk_index(d):
        idx = DiskCorpusIndex(d)
        if len(idx) == len(texts) and idx.n_bytes == sum(len(_encode(t)) for t in texts) and \
                (doc_ids is None or idx.doc_ids == [str(x) for x in doc_ids]):
            return idx
        return DiskCorpusIndex.build(texts, d, doc_ids, shard_bytes=shard_bytes, overwrite=True)
    return DiskCorpusIndex.build(texts, d, doc_ids, shard_bytes=shard_bytes)
