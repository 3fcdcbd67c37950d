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
