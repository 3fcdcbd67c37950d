"""Deduplication (defenses/dedup.py): planted repeated spans >= 50 tokens and planted
near-duplicate documents are removed exactly, nothing planted as unique is touched."""

import random

import pytest

from leakaudit.defenses.dedup import (
    DedupConfig,
    deduplicate,
    duplicate_window_histogram,
    edit_similarity,
    exact_substring_spans,
    word_ngrams,
)

import numpy as np


def _words(rng, n):
    return [("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7))) for _ in range(n)]


def planted(seed=0):
    """20 unique documents of random words; later documents get copies of 50-, 80- and 49-token
    spans of earlier ones; three near-duplicates (1-2 words changed) and one document sharing 45
    words with another (Jaccard ~0.2, must stay)."""
    rng = random.Random(seed)
    docs = [_words(rng, 150) for _ in range(20)]
    plan = {"spans": [], "near": {}, "short": []}
    # (source doc, start, length, target doc, insert at word)
    for src, a, n, dst, at in ((0, 10, 50, 5, 30), (1, 0, 80, 7, 100), (0, 10, 50, 9, 0),
                               (2, 40, 60, 11, 150)):
        span = docs[src][a: a + n]
        docs[dst] = docs[dst][:at] + span + docs[dst][at:]
        plan["spans"].append((dst, " ".join(span)))
    # a 49-token repeat: below the threshold, must stay
    span = docs[3][5:54]
    docs[13] = docs[13][:20] + span + docs[13][20:]
    plan["short"].append((13, " ".join(span)))
    texts = [" ".join(d) for d in docs]
    for src, changes in ((4, 1), (6, 2), (4, 2)):
        w = list(docs[src])
        for k in range(changes):
            w[20 + 37 * k] = "zzzzzzz"
        plan["near"][len(texts)] = src
        texts.append(" ".join(w))
    half = docs[8][:45] + _words(rng, 105)  # 45 shared words: under both thresholds
    texts.append(" ".join(half))
    return texts, plan


def test_planted_duplicates_removed_exactly():
    texts, plan = planted()
    res = deduplicate(texts)
    near = {r["doc_id"]: r for r in res.removals if r["reason"] == "near_duplicate_document"}
    assert set(near) == {str(j) for j in plan["near"]}
    for j, src in plan["near"].items():
        assert near[str(j)]["duplicate_of"] == str(src)
        assert near[str(j)]["jaccard"] >= 0.8
    spans = [r for r in res.removals if r["reason"] == "repeated_span"]
    assert sorted((r["doc_id"], r["n_tokens"]) for r in spans) == sorted(
        (str(d), len(s.split())) for d, s in plan["spans"])
    for d, s in plan["spans"]:
        assert s not in res.texts[d]
        assert " ".join(res.texts[d].split()) == " ".join(texts[d].replace(s, " ").split())
    first_seen = {r["doc_id"]: r["first_seen_in"] for r in spans}
    assert first_seen == {"5": "0", "7": "1", "9": "0", "11": "2"}
    touched = {int(r["doc_id"]) for r in res.removals}
    for i, t in enumerate(texts):  # everything else, including the 49-token repeat, untouched
        if i not in touched:
            assert res.texts[i] == t and res.kept[i]
    assert res.kept[13] and plan["short"][0][1] in res.texts[13]
    assert res.kept[len(texts) - 1]
    # the duplicate-count distribution: windows seen twice or more before, none after
    assert sum(v for k, v in res.windows_before.items() if k != "1") > 0
    assert set(res.windows_after) == {"1"}


def test_datasketch_backend_finds_the_same_near_duplicates():
    pytest.importorskip("datasketch")
    texts, plan = planted()
    a = deduplicate(texts, config=DedupConfig(method="near"))
    b = deduplicate(texts, config=DedupConfig(method="near", backend="datasketch", num_perm=900,
                                              bands=45, rows=20))
    assert [r["doc_id"] for r in a.removals] == [r["doc_id"] for r in b.removals] == [
        str(j) for j in sorted(plan["near"])]


def test_exact_substring_by_hand():
    # 0..9 then a repeat of 2..7 (6 tokens) in doc 1 and a repeat inside doc 2 itself
    docs = [np.arange(10), np.array([50, 2, 3, 4, 5, 6, 7, 51]), np.array([60, 61, 62, 63, 60, 61, 62, 63, 99])]
    spans, hist = exact_substring_spans(docs, min_tokens=4)
    assert spans[0] == []
    assert spans[1] == [(1, 7, (0, 2))]  # tokens 1..6 of doc 1, first seen at token 2 of doc 0
    assert spans[2] == [(4, 8, (2, 0))]  # the second copy of 60 61 62 63, first seen at 0
    # window positions by count: (2 3 4 5), (3 4 5 6), (4 5 6 7) twice each (doc 0 and 1), and
    # (60 61 62 63) twice in doc 2: 8 positions; once: doc 0 7-3, doc 1 5-3, doc 2 6-2
    assert hist == {"1": 4 + 2 + 4, "2": 8}
    # a repeat that only exists across a document boundary (2 3 | 4 5) is not a repeated span
    docs = [np.array([1, 2, 3]), np.array([4, 5, 6]), np.array([9, 1, 2, 3]), np.array([4, 5, 6, 8])]
    spans, hist = exact_substring_spans(docs, min_tokens=4)
    assert spans == [[], [], [], []] and hist == {"1": 2}


def test_helpers_and_negative_control():
    assert word_ngrams("a b c d e f", 5) == ["a b c d e", "b c d e f"]
    assert word_ngrams("a b", 5) == ["a b"]
    assert edit_similarity("a b c d", "a b x d") == pytest.approx(0.75)
    rng = random.Random(1)
    texts = [" ".join(_words(rng, 120)) for _ in range(15)]
    res = deduplicate(texts)
    assert res.removals == [] and res.texts == texts and all(res.kept)
    assert duplicate_window_histogram(texts) == {"1": 15 * (120 - 49)}


def test_hf_tokenizer_spans():
    from leakaudit.training.lm import train_tokenizer

    texts, plan = planted()
    tok = train_tokenizer(texts, vocab_size=400)
    res = deduplicate(texts, tokenizer=tok, config=DedupConfig(method="exact"))
    for d, s in plan["spans"]:
        assert s not in res.texts[d]
    for i in range(5):
        assert res.texts[i] == texts[i]


def test_cli_defend_dedup_and_scrub(tmp_path):
    import json
    import os

    from typer.testing import CliRunner

    from leakaudit.cli import app

    texts, plan = planted()
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts))
                   + json.dumps({"id": "pii", "text": "mail jane.roe@example.org now"}) + "\n")
    r = CliRunner().invoke(app, ["defend", "dedup", str(src), "--out", str(tmp_path / "dd")])
    assert r.exit_code == 0, r.output
    kept = [json.loads(x)["id"] for x in (tmp_path / "dd" / "corpus.jsonl").read_text().splitlines()]
    assert len(kept) == len(texts) + 1 - len(plan["near"])
    summary = json.loads((tmp_path / "dd" / "defense.json").read_text())
    assert summary["removed_by_reason"] == {"near_duplicate_document": 3, "repeated_span": 4}
    assert oct(os.stat(tmp_path / "dd" / "corpus.jsonl").st_mode & 0o777) == "0o600"
    r = CliRunner().invoke(app, ["defend", "scrub", str(src), "--out", str(tmp_path / "sc")])
    assert r.exit_code == 0, r.output
    assert "[EMAIL]" in (tmp_path / "sc" / "corpus.jsonl").read_text()
    r = CliRunner().invoke(app, ["defend", "dedup", str(src), "--out", str(tmp_path / "x"), "--bands", "7"])
    assert r.exit_code == 2 and "bands" in r.output


def test_cli_defend_capacity(tmp_path):
    import json

    from typer.testing import CliRunner

    from leakaudit.cli import app

    texts, _ = planted()
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    r = CliRunner().invoke(app, ["defend", "capacity", str(src), "--out", str(tmp_path / "cap"), "--width", "16",
                                 "--width", "8", "--n-layer", "1", "--n-head", "2", "--n-ctx", "64",
                                 "--epochs", "1", "--vocab-size", "300"])
    assert r.exit_code == 0, r.output
    sizes = {}
    for w in (16, 8):
        cfg = json.loads((tmp_path / "cap" / f"w{w}" / "config.json").read_text())
        sizes[w] = json.loads((tmp_path / "cap" / f"w{w}" / "leakaudit_training.json").read_text())["n_params"]
        assert cfg["n_embd"] == w
    assert sizes[16] > sizes[8]
    bad = CliRunner().invoke(app, ["defend", "capacity", str(src), "--out", str(tmp_path / "x"), "--width", "15",
                                   "--n-head", "2"])
    assert bad.exit_code == 2 and "multiple" in bad.output
