"""The on-disk index's fast paths answer exactly as before: batched counts (deduplicated, sorted,
narrowed by the sampled keys) and the pipelined shard build (suffix sort in a background
thread) against the in-memory index and the inline build."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from leakaudit.corpus import index_disk
from leakaudit.corpus.index import CorpusIndex
from leakaudit.corpus.index_disk import DiskCorpusIndex


def _corpus(seed: int, n_docs: int):
    rng = random.Random(seed)
    words = ["ab", "abc", "b", "ba", "é", "ü", "x", "xy", "😀", "aaaa", "\x00"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 60))) for _ in range(n_docs)]
    return rng, words, texts


def test_count_many_equals_memory_counts_with_duplicates_and_any_order(tmp_path):
    rng, words, texts = _corpus(3, 120)
    mem = CorpusIndex.build(texts)
    # several shards, and more than 64 suffixes per shard so the sampled keys narrow searches
    disk = DiskCorpusIndex.build(texts, tmp_path / "idx", shard_bytes=700)
    assert disk.n_shards > 3
    spans = []
    for _ in range(400):
        t = rng.choice(texts) or "ab"
        a = rng.randrange(len(t))
        spans.append(t[a: a + rng.randint(1, 30)])  # present
        spans.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 6))))  # maybe
    spans += spans[::7] + ["a", "\x00", "é", " ", "zzz", "😀 😀"]  # duplicates, misses
    rng.shuffle(spans)
    want = [mem.count(s) for s in spans]
    got = disk.count_many(spans)
    assert got.tolist() == want
    assert sum(w > 0 for w in want) > 300 and sum(w == 0 for w in want) > 20
    # chunked narrowing: the same answers when the batch spans several chunks
    old = index_disk._BATCH_CELLS
    try:
        index_disk._BATCH_CELLS = 16 * 50
        assert disk.count_many(spans).tolist() == want
    finally:
        index_disk._BATCH_CELLS = old
    assert disk.count_many([]).tolist() == []
    with pytest.raises(ValueError):
        disk.count_many(["a", ""])


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_pipelined_build_writes_the_inline_build_byte_for_byte(tmp_path, monkeypatch):
    _, _, texts = _corpus(5, 80)
    ids = [f"doc{i}" for i in range(len(texts))]
    monkeypatch.setattr(index_disk, "_PIPELINE_MIN_SHARD", 10**12)
    inline = DiskCorpusIndex.build(texts, tmp_path / "inline", ids, shard_bytes=500)
    monkeypatch.setattr(index_disk, "_PIPELINE_MIN_SHARD", 1)  # every shard in the thread
    piped = DiskCorpusIndex.build(iter(texts), tmp_path / "piped", iter(ids), shard_bytes=500)
    assert piped.n_shards == inline.n_shards > 3
    assert _files(tmp_path / "piped") == _files(tmp_path / "inline")
    mem = CorpusIndex.build(texts, ids)
    spans = [t[3:15] for t in texts if len(t) > 15][:40] + ["ab", "é ü"]
    assert piped.count_many(spans).tolist() == [mem.count(s) for s in spans]
    for s in spans[:10]:
        assert piped.locate(s, 3) == mem.locate(s, 3)


def test_pipelined_build_reports_a_failed_shard(tmp_path, monkeypatch):
    """An error in the background sort surfaces from build() and leaves no index.json."""
    _, _, texts = _corpus(6, 40)
    monkeypatch.setattr(index_disk, "_PIPELINE_MIN_SHARD", 1)

    def boom(data, *a, **k):
        raise MemoryError("simulated")

    import pydivsufsort

    monkeypatch.setattr(pydivsufsort, "divsufsort", boom)
    with pytest.raises(MemoryError):
        DiskCorpusIndex.build(texts, tmp_path / "idx", shard_bytes=300)
    assert not (tmp_path / "idx" / "index.json").exists()


def test_sample_keys_by_hand():
    # text "abcab": suffixes sorted ab, abcab, b, bcab, cab -> sa [3, 0, 4, 1, 2]
    from pydivsufsort import divsufsort
    data = b"abcab"
    sa = divsufsort(data)
    assert list(sa) == [3, 0, 4, 1, 2]
    padded = index_disk.np.frombuffer(data + bytes(index_disk._PAD), dtype="u1")
    keys = index_disk._sample_keys(padded, sa)  # every 64th suffix: only sa[0] = 3 -> "ab"
    assert keys.tolist() == [int.from_bytes(b"ab" + bytes(6), "big")]
    assert index_disk._sample_keys(index_disk.np.zeros(index_disk._PAD, "u1"), sa[:0]).size == 0


# -- anchor filter ----------------------------------------------------------------------------

_M64 = (1 << 64) - 1


def _ref_filter(data: bytes) -> list[int]:
    """Plain-Python reference of the anchor filter: integers mod 2**64, bytes sliced directly."""
    k = index_disk._FILTER_K
    n_words = max(1, -(-len(data) // index_disk._FILTER_WORD_BYTES))
    filt = [0] * n_words
    mul = int(index_disk._ANCHOR_MUL)
    fp = [int(x) for x in index_disk._FP_MUL]
    for i in range(len(data) - k + 1):
        if (int.from_bytes(data[i: i + 4], "little") * mul) & 0xFFFFFFFF >= 1 << 28:
            continue
        h = sum(int.from_bytes(data[i + 8 * t: i + 8 * t + 8], "little") * fp[t]
                for t in range(k // 8)) & _M64
        h ^= h >> 29
        h = (h * int(index_disk._MIX)) & _M64
        h ^= h >> 32
        w = ((h >> 32) * n_words) >> 32
        filt[w] |= (1 << (h & 63)) | (1 << ((h >> 6) & 63)) | (1 << ((h >> 12) & 63))
    return filt


def test_anchor_filter_equals_a_plain_python_reference():
    rng = random.Random(11)
    text = " ".join(rng.choice(["alpha", "beta", "gamma", "délta", "😀"]) for _ in range(900))
    data = text.encode()
    padded = index_disk.np.frombuffer(data + bytes(index_disk._PAD), dtype="u1")
    old = index_disk._FILTER_CHUNK
    try:
        index_disk._FILTER_CHUNK = 1000  # several build steps
        got = index_disk._filter_fill(padded)
    finally:
        index_disk._FILTER_CHUNK = old
    want = _ref_filter(data)
    assert got.tolist() == want
    n_anchors = sum((int.from_bytes(data[i: i + 4], "little") * int(index_disk._ANCHOR_MUL))
                    & 0xFFFFFFFF < 1 << 28 for i in range(len(data) - 31))
    assert 0.03 < n_anchors / len(data) < 0.12  # about 1 position in 16
    # a shard shorter than the fingerprint has no anchor: an all-zero filter of one word
    short = index_disk.np.frombuffer(b"abc" + bytes(index_disk._PAD), dtype="u1")
    assert index_disk._filter_fill(short).tolist() == [0]


def test_filter_never_drops_a_present_span_and_drops_most_absent_ones(tmp_path):
    rng = random.Random(12)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzé") for _ in range(rng.randint(2, 8)))
             for _ in range(300)]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(50, 200))) for _ in range(150)]
    disk = DiskCorpusIndex.build(texts, tmp_path / "idx", shard_bytes=20_000)
    assert disk.n_shards >= 4 and all(sh.filter is not None for sh in disk._shards)
    present = []
    for _ in range(300):
        t = rng.choice(texts)
        a = rng.randrange(len(t) - 120)
        present.append(t[a: a + rng.randint(32, 120)])
    absent = [" ".join(rng.choice(vocab) for _ in range(20)) for _ in range(300)]
    # near misses: a real 40-word window with its 30th word changed (starts like the corpus)
    near = []
    for _ in range(300):
        ws = rng.choice(texts).split(" ")
        s = rng.randrange(len(ws) - 40)
        w = ws[s: s + 40]
        w[29] += "q"
        near.append(" ".join(w))
    spans = present + absent + near
    qb = [s.encode() for s in spans]
    lens = index_disk.np.array([len(q) for q in qb])
    starts = index_disk.np.concatenate([[0], index_disk.np.cumsum(lens)[:-1]])
    anchors = index_disk._Anchors(b"".join(qb), starts, lens)
    assert anchors.has.mean() > 0.8  # spans of >= 32 bytes; the shortest often have no anchor
    maybe = index_disk.np.array([sh.may_contain(anchors) for sh in disk._shards])  # shard x span
    for j, q in enumerate(qb):  # no false negatives: every shard that holds the span passes it
        for si, sh in enumerate(disk._shards):
            if sh.interval(q)[1] > sh.interval(q)[0]:
                assert maybe[si, j]
    mem = CorpusIndex.build(texts)
    want = [mem.count(s) for s in spans]
    assert all(w > 0 for w in want[:300]) and sum(w == 0 for w in want[300:]) > 590
    # negative control: absent spans are kept by almost no shard (false positives ~0.5%/probe)
    kept_absent = maybe[:, 300:600][:, index_disk.np.array(want[300:600]) == 0]
    assert kept_absent.mean() < 0.03
    # near misses pass their first anchor in the shard they come from, but an anchor less than
    # 32 bytes before the change usually fails: (15/16)**~35 ~ 10% pass every probe (11% seen)
    kept_near = maybe[:, 600:][:, index_disk.np.array(want[600:]) == 0]
    assert kept_near.any(axis=0).mean() < 0.3
    assert disk.count_many(spans).tolist() == want


def test_index_without_filter_still_opens_and_answers_the_same(tmp_path):
    """Indexes built before the filter existed (no "filter" in index.json, no filter.npy)."""
    import json

    rng, words, texts = _corpus(13, 90)
    d = tmp_path / "idx"
    disk = DiskCorpusIndex.build(texts, d, shard_bytes=600)
    spans = [t[a: a + 40] for t in texts if len(t) > 50 for a in (0, 7)] + ["ab ab ab", "zz"]
    want = disk.count_many(spans).tolist()
    meta = json.loads((d / "index.json").read_text())
    assert meta["filter"] == index_disk._FILTER_ID
    del meta["filter"]
    (d / "index.json").write_text(json.dumps(meta))
    for f in d.glob("shard-*/filter.npy"):
        f.unlink()
    old = DiskCorpusIndex(d)
    assert all(sh.filter is None for sh in old._shards)
    mem = CorpusIndex.build(texts)
    assert old.count_many(spans).tolist() == want == [mem.count(s) for s in spans]


def test_shards_sorted_two_at_once_write_the_same_index(tmp_path, monkeypatch):
    """``sort_workers``: shards suffix-sorted in one or two background threads, or inline, give
    byte-identical files (the pipeline is lowered to tiny shards so that it runs here)."""
    rng, words, texts = _corpus(14, 120)
    monkeypatch.setattr(index_disk, "_PIPELINE_MIN_SHARD", 1)
    built = {w: DiskCorpusIndex.build(texts, tmp_path / f"w{w}", shard_bytes=700, sort_workers=w)
             for w in (1, 2)}
    monkeypatch.setattr(index_disk, "_PIPELINE_MIN_SHARD", 1 << 40)
    built[0] = DiskCorpusIndex.build(texts, tmp_path / "inline", shard_bytes=700)
    assert built[1].n_shards >= 4
    files = {w: {p.relative_to(idx.directory): p.read_bytes()
                 for p in sorted(idx.directory.rglob("*")) if p.is_file()}
             for w, idx in built.items()}
    assert files[0] == files[1] == files[2]
    with pytest.raises(ValueError, match="sort_workers"):
        DiskCorpusIndex.build(texts, tmp_path / "bad", sort_workers=0)
    assert not (tmp_path / "bad").exists()  # refused before anything is written
