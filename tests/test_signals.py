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


def test_texts_hash_separates_boundaries():
    assert texts_hash(["ab", "c"]) != texts_hash(["a", "bc"])
    assert texts_hash(["x"]) == texts_hash(["x"])
