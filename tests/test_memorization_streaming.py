"""Window selection streams the corpus: the pieces tokenize exactly like the whole document, the
windows equal those cut from the whole tokenization, and peak memory does not grow with a
document's length beyond its exact-match index (issue 12, item 7; issue 27)."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from leakaudit.attacks.memorization import MemorizationConfig
from leakaudit.attacks.memorization import measure
from leakaudit.corpus.index import CorpusIndex

WORDS = ("patient john doe order ticket priority high shipped street call lorem ipsum dolor "
         "sit amet quick brown fox jumps lazy dog 1234 5521 555-201-7788 café naïve").split()


def _doc(n_words: int, seed: int) -> str:
    rng = random.Random(seed)
    seps = [" ", " ", " ", "  ", ", ", ". ", "\t"]
    return "".join(rng.choice(WORDS) + rng.choice(seps) for _ in range(n_words))


def test_pieces_concatenate_to_the_whole_tokenization(tiny_lm, monkeypatch):
    text = _doc(3000, 0)
    whole = tiny_lm.document_ids([text])[0]
    pieces = list(measure.iter_document_tokens(tiny_lm, text, chunk_chars=500))
    assert len(pieces) > 10
    ids = [int(t) for p, _, _ in pieces for t in p]
    assert ids == whole
    offs = [(int(a), int(b)) for _, s, e in pieces for a, b in zip(s, e)]
    assert offs == [tuple(o) for o in tiny_lm.token_offsets(text)]


@pytest.mark.parametrize("stratify", [False, True])
def test_streamed_windows_equal_windows_of_the_whole_document(tiny_lm, monkeypatch, stratify):
    docs = [_doc(400, 1), "Hello", _doc(900, 3)]
    ids = ["a", "b", "c"]
    index = CorpusIndex.build(docs, ids)
    cfg = MemorizationConfig(prefix_lengths=(8,), suffix_length=8, n_sequences=40, stride=5,
                             stratify=stratify, seed=3)
    monkeypatch.setattr(measure, "CHUNK_CHARS", 10**9)  # one piece per document
    a = measure.select_sequences(tiny_lm, docs, ids, index, config=cfg, log=lambda *_: None)
    monkeypatch.setattr(measure, "CHUNK_CHARS", 300)  # many pieces per document
    b = measure.select_sequences(tiny_lm, docs, ids, index, config=cfg, log=lambda *_: None)
    assert (a.ids, a.offsets, a.texts, a.suffix_texts, a.dup_counts) == \
           (b.ids, b.offsets, b.texts, b.suffix_texts, b.dup_counts)
    assert len(a.ids) == 40 and a.n_docs_skipped == 1
    for d, o, w, t in zip(a.doc_ids, a.offsets, a.ids, a.texts):
        whole = tiny_lm.document_ids([docs[ids.index(d)]])[0]
        assert w == whole[o: o + 16]
        assert t in docs[ids.index(d)]  # the window's text, cut by its tokens' offsets


_PEAK = ("import sys\n"
         "from leakaudit.cli import main\n"
         "sys.argv = ['leakaudit'] + sys.argv[1:]\n"
         "try:\n    main()\n"
         "finally:\n"
         # VmHWM is this process's own peak: ru_maxrss would carry the parent's peak across
         # vfork + exec (the pytest process that had trained the lab models read as 2.1 GB)
         "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
         "    print('PEAK_MB', int(hwm.split()[1]) / 1024, file=sys.stderr)\n")


def _peak_mb(model_dir, corpus, out) -> float:
    r = subprocess.run([sys.executable, "-c", _PEAK, "memorization", "--model", str(model_dir),
                        "--corpus", str(corpus), "--out", str(out), "--sequences", "10",
                        "--greedy-check", "2"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return float(r.stderr.split("PEAK_MB")[-1].split()[0])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memorization_peak_memory_grows_by_the_index_alone(tiny_model_dir, tmp_path):
    """`leakaudit memorization` on one-line documents of 4 and 16 MB: peak memory grows by the
    exact-match index (the text and its int64 suffix array, 9 bytes per character) and nothing
    else, measured as a slope between the two sizes instead of one 50 MB run (issue 27)."""
    peaks = {}
    for mb in (4, 16):
        doc = _doc(mb * 2**20 // 5, 4)[: mb * 2**20]
        corpus = tmp_path / f"big{mb}.jsonl"
        corpus.write_text(json.dumps({"id": "big", "text": doc}) + "\n")
        peaks[mb] = _peak_mb(tiny_model_dir, corpus, tmp_path / f"out{mb}")
    slope = (peaks[16] - peaks[4]) / 12  # MB of peak memory per MB of document
    print(f"peak RSS {peaks[4]:.0f} MB at 4 MB, {peaks[16]:.0f} MB at 16 MB: {slope:.1f} B/char")
    # before streaming, a 50 MB document took 16 GB (~300 bytes per character)
    assert slope < 16, peaks
    assert peaks[16] + slope * 34 < 2048  # a 50 MB document stays under 2 GB
