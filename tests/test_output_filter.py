"""MemFree output filter: hand-checkable n-grams, the logits processor, text/stream filtering."""

import pytest
import torch

from leakaudit.defenses.output_filter import (
    REFUSAL,
    FilteredTextLM,
    MemFreeLM,
    NgramFilter,
    StreamFilter,
    TokenNgramIndex,
    check_output,
    memfree_processor,
    verbatim_windows,
)
from leakaudit.errors import CapabilityError, InputError
from leakaudit.targets.base import SamplingConfig


def test_ngram_filter_by_hand():
    # corpus [1 2 3 4] and [2 3 5]: trigrams (1,2,3), (2,3,4), (2,3,5)
    f = NgramFilter.build([[1, 2, 3, 4], [2, 3, 5]], n=3, fp_rate=1e-6)
    assert (1, 2, 3) in f and (2, 3, 4) in f and (2, 3, 5) in f
    assert (3, 4, 2) not in f and (4, 2, 3) not in f  # (4, 2, 3) would cross the documents
    assert f.n_added_ == 3 and f.describe()["n"] == 3
    # in [9 1 2 3 4 2 3 5] the tokens at 3 (1 2 3), 4 (2 3 4) and 7 (2 3 5) complete trigrams
    assert f.blocked_positions([9, 1, 2, 3, 4, 2, 3, 5]) == [3, 4, 7]
    assert f.blocked_positions([9, 1, 2, 3, 4, 2, 3, 5], start=5) == [7]
    fp = f.measure_fp_rate(vocab_size=1000, n_probes=2000, seed=0)
    assert fp["configured"] == 1e-6 and fp["measured"]["k"] == 0


def test_fp_rate_is_what_was_asked():
    # a filter over 5,000 random 4-grams at fp 5%: measured rate near 5% on 4,000 fresh probes
    import random
    rng = random.Random(1)
    seqs = [[rng.randrange(50_000) for _ in range(4)] for _ in range(5000)]
    f = NgramFilter.build(seqs, n=4, fp_rate=0.05)
    m = f.measure_fp_rate(vocab_size=50_000, n_probes=4000, seed=2,
                          exact={tuple(s) for s in seqs})["measured"]
    assert m["ci_low"] <= 0.05 <= m["ci_high"] + 0.01 and m["value"] < 0.08


def test_bad_parameters():
    with pytest.raises(InputError):
        NgramFilter(n=1, fp_rate=0.01, expected_items=10)
    with pytest.raises(InputError):
        NgramFilter(n=3, fp_rate=0.0, expected_items=10)


def test_processor_masks_only_completing_tokens():
    # context ... 1 2; trigrams (1,2,7) and (1,2,8) in the filter: greedy needs 1 allowed token
    f = NgramFilter.build([[1, 2, 7], [1, 2, 8]], n=3, fp_rate=1e-6)
    scores = torch.tensor([[0.0, 0, 0, 0, 0, 0, 0, 9, 8, 5]])
    ids = torch.tensor([[5, 1, 2]])
    out = memfree_processor(f, SamplingConfig(greedy=True))(ids, scores.clone())
    assert out[0, 7] == float("-inf") and out[0, 8] == float("-inf")
    assert int(out.argmax()) == 9  # the next candidate is used
    # a context that starts no training trigram is untouched
    same = memfree_processor(f, SamplingConfig(greedy=True))(torch.tensor([[5, 2, 1]]), scores.clone())
    assert torch.equal(same, scores)
    # top-k=2: the two best allowed tokens must be known; 7 and 8 blocked, 9 and one more allowed
    out2 = memfree_processor(f, SamplingConfig(top_k=2))(ids, scores.clone())
    assert torch.isinf(out2[0, [7, 8]]).all() and torch.isfinite(out2[0, [0, 9]]).all()


def test_memfree_target_never_completes_a_corpus_ngram(tiny_lm):
    from leakaudit.corpus.index import CorpusIndex
    from tests.conftest import TEXTS

    n = 4
    f = NgramFilter.from_texts(TEXTS, tiny_lm, n=n, fp_rate=1e-4)
    index = CorpusIndex.build(TEXTS)
    tindex = TokenNgramIndex(tiny_lm, TEXTS)
    filt = MemFreeLM(tiny_lm, f)
    unf = tiny_lm.generate_ids(tiny_lm.tokenize(["The quick brown"]),
                               SamplingConfig(greedy=True, max_new_tokens=8), seed=0)[0]
    prompts = tiny_lm.tokenize(["The quick brown", "Patient John", "Order 5521"])
    for sampling in (SamplingConfig(greedy=True, max_new_tokens=24),
                     SamplingConfig(top_k=5, max_new_tokens=24)):
        for g in filt.generate_ids(prompts, sampling, seed=0):
            ids = g.prompt_ids + g.new_ids
            assert f.blocked_positions(ids, start=len(g.prompt_ids)) == []
            # verified without the Bloom filter: the token suffix array finds no training n-gram
            assert tindex.hits(g.new_ids, n=n, context_ids=g.prompt_ids) == []
    assert filt.stats_.steps > 0
    with pytest.raises(CapabilityError):
        filt.score(["The quick brown fox"])
    with pytest.raises(CapabilityError):  # a target without logits: use FilteredTextLM
        MemFreeLM(FilteredTextLM(tiny_lm, f, mode="cut"), f)
    # negative control: both index checks see the n-grams of a training text's own tokens
    ids = tiny_lm.tokenize([TEXTS[0]])[0]
    assert tindex.hits(ids[3:], n=n, context_ids=ids[:3]) == list(range(len(ids) - 3))
    assert verbatim_windows(index, tiny_lm, ids[3:], n=n, context_ids=ids[:3]) != []
    assert unf.new_ids  # the unfiltered model generates (an untrained one rarely hits n-grams)


def test_token_index_by_hand(tiny_lm):
    # two "documents" whose tokens are [a b c d] and [b c e]; trigrams by hand
    a, b, c, d, e = (tiny_lm.tokenize([w])[0][0] for w in ("The", "quick", "brown", "fox", "dog"))

    class Fake:
        def tokenize(self, texts):
            return [[a, b, c, d], [b, c, e]][: len(texts)]

    t = TokenNgramIndex(Fake(), ["x", "y"])
    assert t.count([a, b, c]) == 1 and t.count([b, c]) == 2 and t.count([c, d, b]) == 0
    assert t.hits([c, d], n=3, context_ids=[a, b]) == [0, 1]  # (a b c), (b c d)
    assert t.hits([d, b, c, e], n=3) == [3]  # only (b c e); (d b c) crosses nothing


def test_check_output_cut_refuse_and_stream(tiny_lm):
    from tests.conftest import TEXTS

    f = NgramFilter.from_texts(TEXTS, tiny_lm, n=4, fp_rate=1e-6)
    out = " jumps over the lazy dog. And more."
    r = check_output(f, tiny_lm, out, prompt="The quick brown fox", mode="cut")
    assert r.blocked and r.cut_at_char is not None and out.startswith(r.text)
    assert "lazy dog" not in r.text
    assert check_output(f, tiny_lm, out, prompt="The quick brown fox", mode="refuse").text == REFUSAL
    clean = check_output(f, tiny_lm, "zzq yyx", prompt="", mode="cut")
    assert not clean.blocked and clean.text == "zzq yyx"
    s = StreamFilter(f, tiny_lm, mode="cut", prompt="The quick brown fox")
    shown = "".join(s.feed(c) for c in [" jumps", " over the", " lazy dog.", " And more."]) + s.close()
    assert shown == r.text and s.result.blocked
    # the text target filters another target's outputs the same way
    ft = FilteredTextLM(tiny_lm, f, mode="cut")
    g = ft.generate(["The quick brown fox"], SamplingConfig(greedy=True, max_new_tokens=12), seed=0)[0]
    full = tiny_lm.tokenize([g.text])[0]
    assert f.blocked_positions(full, start=len(tiny_lm.tokenize([g.prompt_text])[0])) == []


def test_bypass_judging_by_hand():
    from leakaudit.audits.output_filter import STYLES, BypassConfig, _judge

    cfg = BypassConfig()
    mem = {"kind": "memorization", "target": " Thank you for your order."}
    # verbatim
    assert _judge(mem, "plain", " Thank you for your order. More", cfg) == \
        {"exact": True, "normalized": True, "near": True}
    # upper-cased output, normalized back by the upper style only
    up = " THANK YOU FOR YOUR ORDER."
    assert _judge(mem, "plain", up, cfg)["exact"] is False
    assert _judge(mem, "upper", up, cfg)["normalized"] is True
    # inserted spaces: the spaced style removes whitespace before matching
    assert _judge(mem, "spaced", " Thank  you  for  your  order.", cfg)["normalized"] is True
    # one changed word: near-verbatim (similarity 0.92), not exact
    j = _judge(mem, "plain", " Thank you for your ordre.", cfg)
    assert j == {"exact": False, "normalized": False, "near": True}
    # a secret with other separators is recovered on letters and digits
    sec = {"kind": "secret", "target": "123-45-6789"}
    assert _judge(sec, "format", " 123 45 6789 on file", cfg) == \
        {"exact": False, "near": True, "normalized": True}
    assert _judge(sec, "plain", " 987 65 4321", cfg)["near"] is False  # negative control
    assert STYLES["spaced"][0]("a b") == "a  b" and STYLES["format"][0]("a-b, c") == "ab c"


def test_evaluate_bypass_shape(tiny_lm):
    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.audits.output_filter import BypassConfig, evaluate_bypass, leak_table
    from tests.conftest import TEXTS

    f = NgramFilter.from_texts(TEXTS, tiny_lm, n=4, fp_rate=1e-4)
    cfg = BypassConfig(n_docs=3, prefix_tokens=4, suffix_tokens=4, styles=("plain", "upper"))
    res = evaluate_bypass({"unfiltered": tiny_lm, "memfree": MemFreeLM(tiny_lm, f)}, TEXTS,
                          CorpusIndex.build(TEXTS), n=4, config=cfg,
                          canaries=[{"id": "c", "prefix": "Order 5521 shipped to ",
                                     "secret": "42 Main Street", "repeats": 5}])
    t = leak_table(res, "memorization")
    assert len(t) == 2 * 2 * 5 and all(r["n"] == 3 for r in t.values())
    assert all(t[("memfree", s, "filter_ngram")]["k"] == 0 for s in ("plain", "upper"))
    assert leak_table(res, "secret")[("memfree", "plain", "exact")]["n"] == 1
    with pytest.raises(InputError):
        BypassConfig(styles=("rot13",)).validate()


def test_output_filter_command_on_a_users_model(tiny_model_dir, tmp_path):
    import json

    from typer.testing import CliRunner

    from leakaudit.cli import app
    from tests.conftest import TEXTS

    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                              for i, t in enumerate(TEXTS)))
    out = tmp_path / "of"
    r = CliRunner().invoke(app, [str(a) for a in [
        "output-filter", "--model", tiny_model_dir, "--corpus", corpus, "--n", 4, "--docs", 3,
        "--prefix", 4, "--suffix", 4, "--styles", "plain,upper", "--out", out]])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    rates = [x for x in recs if x["entry_type"] == "output_filter" and x.get("kind") == "rate"]
    assert {x["variant"] for x in rates} == {"unfiltered", "memfree"}
    assert all(x["k"] == 0 for x in rates if x["variant"] == "memfree"
               and x["measure"] == "filter_ngram")
    assert "Output filter and its bypasses" in (out / "report.html").read_text()
    bad = CliRunner().invoke(app, ["output-filter", "--model", str(tiny_model_dir), "--corpus",
                                   str(corpus), "--styles", "rot13", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown style" in bad.output
