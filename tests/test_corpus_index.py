import random
import re

import numpy as np
import pytest

from leakaudit.corpus.index import CorpusIndex
from leakaudit.errors import InputError

DOCS = ["the cat sat", "the cat ran", "a dog"]


@pytest.fixture(scope="module")
def idx():
    return CorpusIndex.build(DOCS, ["d0", "d1", "d2"])


def word_offsets(text):
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def test_counts(idx):
    assert len(idx) == 3
    assert idx.n_bytes == len("the cat sat") + len("the cat ran") + len("a dog")
    assert idx.count("the cat") == 2
    assert idx.doc_count("the cat") == 2
    assert idx.count("cat s") == 1
    assert idx.count("sat the") == 0  # would only exist across the document boundary
    assert idx.count("sat") == 1 and idx.count("t") == 5
    assert idx.count("a dog") == 1 and idx.count("a dogs") == 0
    assert idx.count("zebra") == 0 and idx.doc_count("zebra") == 0
    with pytest.raises(ValueError):
        idx.count("")


def test_repeats_in_one_document_count_once_for_doc_count():
    ix = CorpusIndex.build(["abc xyz abc xyz abc", "nothing"])
    assert ix.count("abc") == 3
    assert ix.doc_count("abc") == 1
    assert ix.count("xyz abc") == 2 and ix.doc_count("xyz abc") == 1


def test_locate_char_offsets_with_multibyte():
    ix = CorpusIndex.build(["é日本 cat", "cat first", "xx"], ["u", "v", "w"])
    assert ix.locate("cat") == [("u", 4), ("v", 0)]
    assert ix.locate("cat", limit=1) == [("u", 4)]
    assert ix.locate("本") == [("u", 2)]
    assert ix.locate("dog") == []


def brute_ms(docs, q: bytes):
    out = []
    for i in range(len(q)):
        best = 0
        for L in range(1, len(q) - i + 1):
            if any(q[i:i + L] in d for d in docs):
                best = L
            else:
                break
        out.append(best)
    return out


def test_matching_statistics_fixed(idx):
    assert idx.matching_statistics("the cat").tolist() == [7, 6, 5, 4, 3, 2, 1]
    # "dog sat": "dog" (3) then "og" ... " sat" is in d0
    assert idx.matching_statistics("dog sat").tolist() == [3, 2, 1, 4, 3, 2, 1]
    assert idx.matching_statistics("the cat", positions=[4, 0, 7]).tolist() == [3, 7, 0]
    assert idx.matching_statistics("").tolist() == []
    with pytest.raises(ValueError):
        idx.matching_statistics("abc", positions=[4])


def test_matching_statistics_random_vs_brute_force():
    rng = random.Random(1234)
    alphabet = ["a", "b", " ", "é", "日", "本", "c"]
    for _ in range(40):
        docs = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
                for _ in range(rng.randint(1, 5))]
        ix = CorpusIndex.build(docs)
        enc = [d.encode() for d in docs]
        for _ in range(4):
            # queries mixing corpus pieces and random characters
            src = rng.choice(docs)
            a = rng.randint(0, len(src))
            q = src[a:a + rng.randint(0, 12)] + "".join(
                rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
            if rng.random() < 0.5:
                q = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3))) + q
            qb = q.encode()
            ms = ix.matching_statistics(q)
            assert ms.tolist() == brute_ms(enc, qb), (docs, q)
            # counts against brute force, for every substring on char boundaries
            for i in range(len(q)):
                for j in range(i + 1, min(len(q), i + 5) + 1):
                    s = q[i:j]
                    sb = s.encode()
                    n_occ = sum(sum(1 for k in range(len(d)) if d.startswith(sb, k)) for d in enc)
                    assert ix.count(s) == n_occ
                    assert ix.doc_count(s) == sum(sb in d for d in enc)


def test_longest_match(idx):
    m = idx.longest_match("I think the cat ran away")
    assert (m.text, m.char_start, m.char_end) == ("the cat ran", 8, 19)
    assert m.n_bytes == 11 and m.count == 1 and m.doc_count == 1
    assert m.locations == [("d1", 0)]
    m2 = idx.longest_match("the cat")
    assert m2.text == "the cat" and m2.count == 2 and m2.doc_count == 2
    assert m2.locations == [("d0", 0), ("d1", 0)]
    none = idx.longest_match("ZZZ")
    assert none.n_bytes == 0 and none.text == "" and none.count == 0


def test_longest_match_shrinks_to_char_boundaries():
    # "é" (c3 a9) and "ê" (c3 aa) share their first byte: a byte match "x\xc3" must not be
    # reported as a partial character.
    ix = CorpusIndex.build(["xé"])
    m = ix.longest_match("xê")
    assert m.text == "x" and (m.char_start, m.char_end) == (0, 1) and m.n_bytes == 1
    ix2 = CorpusIndex.build(["日本語です"])
    m2 = ix2.longest_match("今日本語")
    assert (m2.text, m2.char_start, m2.char_end, m2.n_bytes) == ("日本語", 1, 4, 9)
    assert m2.locations == [("0", 0)]


def test_window_match_word_tokens(idx):
    text = "x the cat sat y the cat"
    offs = word_offsets(text)  # x | the cat sat | y | the cat
    r = idx.window_match(text, offs, window=3)
    assert (r.n_tokens, r.longest_run_tokens, r.has_window) == (7, 3, True)
    assert r.first_window == (2, 13) and text[2:13] == "the cat sat"
    r4 = idx.window_match(text, offs, window=4)
    assert r4.longest_run_tokens == 3 and not r4.has_window and r4.first_window is None


def test_window_match_short_text_needs_exact_whole_text(idx):
    r = idx.window_match("the cat", word_offsets("the cat"), window=50)
    assert r.has_window and r.first_window == (0, 7) and r.longest_run_tokens == 2
    # the tokens occur, but the text with its trailing space does not
    r2 = idx.window_match("a dog ", word_offsets("a dog "), window=50)
    assert not r2.has_window and r2.longest_run_tokens == 2
    assert not idx.window_match("", [], window=5).has_window


def test_window_match_against_brute_force():
    rng = random.Random(7)
    words = ["aa", "b", "é", "日本", "cc", "d"]
    for _ in range(30):
        docs = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(3)]
        ix = CorpusIndex.build(docs)
        src = rng.choice(docs).split(" ")
        a = rng.randint(0, len(src) - 1)
        toks = src[a:a + rng.randint(1, 8)] + [rng.choice(words) for _ in range(rng.randint(0, 4))]
        text = " ".join(toks)
        offs = word_offsets(text)
        best = 0
        for j in range(len(offs)):
            for k in range(j, len(offs)):
                span = text[offs[j][0]:offs[k][1]]
                if any(span in d for d in docs):
                    best = max(best, k - j + 1)
        for window in (2, 3):
            r = ix.window_match(text, offs, window=window)
            assert r.longest_run_tokens == best, (docs, text)
            if len(offs) >= window:
                assert r.has_window == (best >= window)


def test_window_match_uses_bytes_of_multibyte_tokens():
    ix = CorpusIndex.build(["日本 語 です", "other"])
    text = "日本 語 です"
    # tokens 日本 | " 語" | " です" (leading-space tokens, as byte-level BPE makes them)
    r = ix.window_match(text, [(0, 2), (2, 4), (4, 7)], window=3)
    assert r.has_window and r.first_window == (0, 7) and r.longest_run_tokens == 3
    r2 = ix.window_match("日本 語 でした", [(0, 2), (2, 4), (4, 8)], window=3)
    assert r2.longest_run_tokens == 2 and not r2.has_window
    with pytest.raises(ValueError):
        ix.window_match(text, [(0, 2)], window=0)


def test_save_load_round_trip(tmp_path, idx):
    idx.save(tmp_path / "ix")
    again = CorpusIndex.load(tmp_path / "ix")
    assert len(again) == 3 and again.n_bytes == idx.n_bytes and again.doc_ids == ["d0", "d1", "d2"]
    for s in ("the cat", "cat s", "a", "sat the", "dog"):
        assert again.count(s) == idx.count(s) and again.locate(s) == idx.locate(s)
    assert np.array_equal(again.matching_statistics("dog sat"), idx.matching_statistics("dog sat"))
    with pytest.raises(InputError, match="index.json"):
        CorpusIndex.load(tmp_path)
    (tmp_path / "ix" / "sa.npy").unlink()
    with pytest.raises(InputError, match="sa.npy"):
        CorpusIndex.load(tmp_path / "ix")


def test_empty_index_and_bad_ids():
    ix = CorpusIndex.build([])
    assert len(ix) == 0 and ix.count("a") == 0 and ix.locate("a") == []
    assert ix.matching_statistics("ab").tolist() == [0, 0]
    assert ix.longest_match("ab").n_bytes == 0
    with pytest.raises(ValueError):
        CorpusIndex.build(["a", "b"], ["only one"])


def test_window_match_with_byte_level_bpe_offsets():
    """Real tokenizer offsets: a multi-byte char split over two tokens gives overlapping spans."""
    tokenizers = pytest.importorskip("tokenizers")
    docs = ["The patient 日本 presented with café fever on Monday.", "Other text here."]
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(docs, vocab_size=300, min_frequency=1, show_progress=False)
    text = "xx The patient 日本 presented with café fever on Monday. yy"
    offs = bpe.encode(text).offsets
    ix = CorpusIndex.build(docs)
    r = ix.window_match(text, offs, window=10)
    # brute force over the same (running-maximum) spans
    best = 0
    for j in range(len(offs)):
        for k in range(j, len(offs)):
            end = max(e for _, e in offs[: k + 1])
            if text[offs[j][0]:end] in docs[0]:
                best = max(best, k - j + 1)
    assert r.longest_run_tokens == best >= 10 and r.has_window
    s, e = r.first_window
    assert text[s:e] in docs[0] and text[s:e].startswith("The")
    m = ix.longest_match(text)
    assert m.text == docs[0] and m.locations == [("0", 0)]
