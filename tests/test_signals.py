import numpy as np

from leakaudit.signals.lm import score_cached, texts_hash


def test_cache_reuses_the_pass_and_returns_identical_arrays(tiny_lm, tmp_path):
    texts = ["alpha beta gamma", "Patient John Doe", ""]
    calls = []
    orig = tiny_lm.score

    def counting(*a, **k):
        calls.append(1)
        return orig(*a, **k)

    tiny_lm.score = counting
    try:
        a = score_cached(tiny_lm, texts, cache_dir=tmp_path, vocab_stats=True)
        b = score_cached(tiny_lm, texts, cache_dir=tmp_path, vocab_stats=True)
        c = score_cached(tiny_lm, texts[:2], cache_dir=tmp_path)  # other texts: a new pass
    finally:
        tiny_lm.score = orig
    assert len(calls) == 2
    assert len(list(tmp_path.glob("signals-*.npz"))) == 2
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.logprobs, y.logprobs)
        np.testing.assert_array_equal(x.is_argmax, y.is_argmax)
        np.testing.assert_array_equal(x.vocab_var, y.vocab_var)
    assert len(b[2]) == 0 and len(c) == 2


def test_a_pass_with_vocab_stats_answers_one_without(tiny_lm, tmp_path):
    """A model that is the target (Min-K%++ asks for the vocabulary statistics) and the reference
    (log-probs only) over the same texts runs once: the fine-tuning lab's base battery scored its
    240 documents twice (2 min of a 14-min battery). The log-probs served are the fresh pass's."""
    texts = ["alpha beta gamma", "Patient John Doe"]
    fresh = score_cached(tiny_lm, texts)  # no cache: a plain log-prob pass
    calls = []
    orig = tiny_lm.score

    def counting(*a, **k):
        calls.append(k.get("vocab_stats"))
        return orig(*a, **k)

    tiny_lm.score = counting
    try:
        score_cached(tiny_lm, texts, cache_dir=tmp_path, vocab_stats=True)
        lp = score_cached(tiny_lm, texts, cache_dir=tmp_path)
        score_cached(tiny_lm, texts[:1], cache_dir=tmp_path)  # other texts: a pass of its own
    finally:
        tiny_lm.score = orig
    assert calls == [True, False]
    for x, y in zip(lp, fresh):
        np.testing.assert_array_equal(x.logprobs, y.logprobs)
        np.testing.assert_array_equal(x.token_ids, y.token_ids)
        assert x.vocab_mean is None and x.vocab_var is None


def test_texts_hash_separates_boundaries():
    assert texts_hash(["ab", "c"]) != texts_hash(["a", "bc"])
    assert texts_hash(["x"]) == texts_hash(["x"])
