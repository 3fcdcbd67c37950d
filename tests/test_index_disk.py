"""The on-disk, memory-mapped corpus index answers exactly like the in-memory one."""

from __future__ import annotations

import json
import os
import random
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from leakaudit.corpus import index_disk
from leakaudit.corpus.index import CorpusIndex
from leakaudit.corpus.index_disk import DiskCorpusIndex, build_index
from leakaudit.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
_WORD = re.compile(r"\S+")


def _offsets(text):
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]


def _same(mem, disk, spans, texts, windows=(1, 3, 10, 50)):
    for q in spans:
        assert disk.count(q) == mem.count(q), q
        assert disk.doc_count(q) == mem.doc_count(q), q
        assert disk.locate(q, 3) == mem.locate(q, 3), q
    assert disk.count_many(spans).tolist() == [mem.count(q) for q in spans]
    for t in texts:
        assert (disk.matching_statistics(t) == mem.matching_statistics(t)).all(), t
        assert disk.longest_match(t, 4) == mem.longest_match(t, 4), t
        for w in windows:
            assert disk.window_match(t, _offsets(t), w) == mem.window_match(t, _offsets(t), w), (t, w)
    offs = [_offsets(t) for t in texts]
    for w in windows:
        assert disk.window_match_many(texts, offs, w) == [mem.window_match(t, o, w)
                                                          for t, o in zip(texts, offs)]


@pytest.mark.parametrize("scalar_max", [8, 0])  # plain bisect path and vectorised path
def test_matches_memory_index_on_random_unicode(tmp_path, monkeypatch, scalar_max):
    monkeypatch.setattr(index_disk, "_SCALAR_MAX", scalar_max)
    rng = random.Random(0)
    alpha = ["ab", "a", "b", "é", "ü ", "x", " ", "abc", "😀", "\x00", "\ud800"]
    texts = ["".join(rng.choice(alpha) for _ in range(rng.randint(0, 40))) for _ in range(40)]
    ids = [f"d{i}" for i in range(len(texts))]
    mem = CorpusIndex.build(texts, ids)
    queries = ["".join(rng.choice(alpha) for _ in range(rng.randint(1, 14))) for _ in range(12)]
    for shard_bytes in (60, 10**6):  # several shards, one shard
        disk = DiskCorpusIndex.build(texts, tmp_path / f"s{shard_bytes}", ids, shard_bytes=shard_bytes)
        assert (len(disk), disk.n_bytes, disk.doc_ids) == (len(mem), mem.n_bytes, mem.doc_ids)
        _same(mem, disk, queries, queries, windows=(1, 3, 20))


def test_hand_checked_answers(tmp_path):
    disk = DiskCorpusIndex.build(["abcab", "xxabc", "ab"], tmp_path / "i", ["A", "B", "C"],
                                 shard_bytes=9)  # "abcab" alone, then "xxabc" + "ab"
    assert disk.n_shards == 2
    assert disk.count("ab") == 4  # A twice, B once, C once
    assert disk.doc_count("ab") == 3
    assert disk.locate("ab", 10) == [("A", 0), ("A", 3), ("B", 2), ("C", 0)]
    assert disk.count("abx") == 0 and disk.count("bxx") == 0  # never across documents
    m = disk.longest_match("zzxxabcq")
    assert (m.text, m.count, m.doc_count, m.locations) == ("xxabc", 1, 1, [("B", 0)])
    assert disk.matching_statistics("cab").tolist() == [3, 2, 1]


def test_lab_corpus_identical(tmp_path):
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus

    c = generate_lab_corpus(LabCorpusConfig.quick())
    texts = [d["text"] for d in c.train]
    ids = [d["id"] for d in c.train]
    mem = CorpusIndex.build(texts, ids)
    disk = DiskCorpusIndex.build(texts, tmp_path / "lab", ids, shard_bytes=200_000)
    assert disk.n_shards >= 3
    rng = random.Random(1)
    spans = [x["sentence"] for x in c.canaries[:10]] + [b["text"][:200] for b in c.boilerplate]
    for _ in range(20):
        t = rng.choice(texts)
        a = rng.randrange(max(1, len(t) - 300))
        spans.append(t[a : a + rng.randint(1, 300)] or "a")
    # "generations": held-out text with a training passage spliced in, and plain held-out text
    gens = []
    for i in range(12):
        t = rng.choice(texts)
        a = rng.randrange(max(1, len(t) - 600))
        h = c.heldout[i]["text"]
        gens.append(h[:200] + t[a : a + 600] + h[200:400])
    gens += [d["text"][:500] for d in c.heldout[:5]]
    _same(mem, disk, spans, gens, windows=(10, 50))
    assert any(disk.window_match(g, _offsets(g), 50).has_window for g in gens[:12])
    assert not any(disk.window_match(g, _offsets(g), 50).has_window for g in gens[12:])


def test_files_private_reopen_and_refuse(tmp_path):
    d = tmp_path / "idx"
    DiskCorpusIndex.build(["alpha beta", "gamma"], d)
    for f in d.rglob("*"):
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode == (0o700 if f.is_dir() else 0o600), f
    again = DiskCorpusIndex.open(d)
    assert again.count("a") == 5 and again.doc_ids == ["0", "1"]
    with pytest.raises(InputError, match="not empty"):
        DiskCorpusIndex.build(["x"], d)
    DiskCorpusIndex.build(["x"], d, overwrite=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        DiskCorpusIndex.build(["x"], other, overwrite=True)  # never deletes what is not ours
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(InputError, match="index.json"):
        DiskCorpusIndex.open(other)
    (d / "shard-00000" / "sa.npy").unlink()
    with pytest.raises(InputError):
        DiskCorpusIndex.open(d)


def test_empty_and_short(tmp_path):
    disk = DiskCorpusIndex.build(["", "ab"], tmp_path / "e")
    mem = CorpusIndex.build(["", "ab"])
    _same(mem, disk, ["a", "ab", "abc"], ["", "ab", "xab"], windows=(1, 5))
    none = DiskCorpusIndex.build([], tmp_path / "n")
    assert len(none) == 0 and none.count("a") == 0 and none.longest_match("abc").n_bytes == 0


def test_build_index_backend_choice(tmp_path):
    texts = ["one two three", "four five"]
    assert isinstance(build_index(texts, backend="memory"), CorpusIndex)
    assert isinstance(build_index(texts, backend="auto", directory=tmp_path / "a"), CorpusIndex)
    auto = build_index(texts, backend="auto", directory=tmp_path / "b", threshold_bytes=10)
    assert isinstance(auto, DiskCorpusIndex)
    reused = build_index(texts, backend="disk", directory=tmp_path / "b")
    assert isinstance(reused, DiskCorpusIndex) and reused.count("f") == 2
    changed = build_index(texts + ["six"], backend="disk", directory=tmp_path / "b")
    assert len(changed) == 3  # a stale index of other documents is rebuilt, not reused
    with pytest.raises(InputError, match="--index-dir"):
        build_index(texts, backend="disk")
    with pytest.raises(InputError, match="unknown index backend"):
        build_index(texts, backend="sqlite")


@pytest.mark.slow
def test_corpus_larger_than_the_memory_allowed(tmp_path):
    """28 MB of text (an index of ~7x the allowance on disk) indexed and queried by a process
    allowed 20 MB of private memory (RLIMIT_DATA) above its baseline, measured after a warm-up
    (imports, the compiled search and numpy's first buffers: a fresh-clone run once ran out of
    a 16 MB allowance counted from before them); its answers equal the in-memory index's."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_index
    finally:
        sys.path.pop(0)
    out = tmp_path / "answers.json"
    allowance_mb, corpus_mb = 20, 28
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_index.py"), "--mb", str(corpus_mb),
         "--shard-mb", "1", "--limit-mb", str(allowance_mb), "--lookups", "2000",
         "--generations", "20", "--dir", str(tmp_path / "idx"), "--answers", str(out)],
        capture_output=True, text=True, env=env, timeout=900)
    print(proc.stdout, proc.stderr[-3000:])
    assert proc.returncode == 0
    res = json.loads(out.read_text())
    assert res["n_bytes"] >= corpus_mb * 2**20
    assert res["disk_bytes"] > 6 * allowance_mb * 2**20  # the index is >6x what it may allocate
    assert res["n_bytes"] > allowance_mb * 2**20  # the text alone does not fit either
    assert 0 < res["vm_data_peak_above_mb"] < allowance_mb  # measured use, below the cap
    texts = [t for _, t in bench_index.corpus_stream(corpus_mb * 2**20, 0)]
    mem = CorpusIndex.build(texts)
    del texts
    spans, gens = bench_index.check_queries()
    expect = json.loads(json.dumps(bench_index.answers(mem, spans, gens)))
    assert res["answers"] == expect
    assert any(w[2] for w in expect["window"]) and not all(w[2] for w in expect["window"])
    assert any(c == 0 for c in expect["count"]) and any(c > 1 for c in expect["count"])


def test_memorization_cli_same_findings_with_disk_index(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from tests.conftest import TEXTS

    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                              for i, t in enumerate(TEXTS)))
    runner = CliRunner()
    recs = {}
    for backend in ("memory", "disk"):
        out = tmp_path / backend
        r = runner.invoke(app, [str(a) for a in [
            "memorization", "--model", tiny_model_dir, "--corpus", corpus, "--out", out,
            "--prefix", "4", "--suffix", "4", "--sequences", "20", "--greedy-check", "0",
            "--index", backend]])
        assert r.exit_code == 0, r.output
        recs[backend] = [x for x in map(json.loads, (out / "report.jsonl").read_text().splitlines())
                         if x.get("kind") not in ("run", "setup") and x.get("entry_type") != "run"]
    assert (tmp_path / "disk-index" / "index.json").is_file()
    assert recs["memory"] == recs["disk"] and recs["disk"]
    r = CliRunner().invoke(app, ["memorization", "--model", str(tiny_model_dir), "--corpus",
                                 str(corpus), "--out", str(tmp_path / "z"), "--index", "sqlite"])
    assert r.exit_code == 2 and "--index must be one of" in r.output
