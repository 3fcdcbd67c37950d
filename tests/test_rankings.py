import math
import zlib

import numpy as np
import pytest

from leakaudit.attacks.extraction.dedup import is_duplicate, select_deduplicated, trigrams
from leakaudit.attacks.extraction.rankings import RANKINGS, RankingInputs, compute_rankings
from leakaudit.signals.lm import max_window_mean_logprob, min_k_mean
from leakaudit.targets.base import TokenScores


def ts(lps):
    lps = np.asarray(lps, dtype=np.float32)
    return TokenScores(token_ids=np.arange(len(lps)), logprobs=lps, is_argmax=np.zeros(len(lps), bool))


def test_ranking_formulas_by_hand():
    texts = ["aaaa bbbb", "hello world"]
    target = [ts([-1.0, -3.0]), ts([-0.5, -0.5])]  # log PPL = 2.0 and 0.5
    lower = [ts([-2.0, -4.0]), ts([-1.0, -1.0])]  # log PPL = 3.0 and 1.0
    ref = [ts([-4.0, -4.0]), ts([-0.5, -1.5])]  # log PPL = 4.0 and 1.0
    r = compute_rankings(RankingInputs(texts, target, lower, {"small": ref}), window=1, min_k=0.5)
    np.testing.assert_allclose(r["perplexity"], [-2.0, -0.5])
    np.testing.assert_allclose(r["reference:small"], [4.0 / 2.0, 1.0 / 0.5])
    np.testing.assert_allclose(r["lowercase"], [3.0 / 2.0, 1.0 / 0.5])
    z = [len(zlib.compress(t.encode())) for t in texts]
    np.testing.assert_allclose(r["zlib"], [z[0] / 2.0, z[1] / 0.5])
    np.testing.assert_allclose(r["window"], [-1.0, -0.5])  # best single token
    np.testing.assert_allclose(r["min_k"], [-3.0, -0.5])  # lowest half
    assert set(r) == {"perplexity", "reference:small", "zlib", "lowercase", "window", "min_k"}


def test_every_ranking_puts_the_memorized_sample_first():
    """Polarity contract: a sample the target knows far better than the reference, its lowercased
    form and its compressibility suggest ranks above a generic one."""
    rng = np.random.default_rng(0)
    texts = ["Ab1 Zq9 Kx7 secret key value " * 3, "the the the the the the the the"]
    memorized = ts(np.full(60, -0.05))
    generic = ts(rng.normal(-2.5, 0.3, 60))
    target = [memorized, generic]
    lower = [ts(np.full(60, -3.0)), ts(rng.normal(-2.6, 0.3, 60))]
    ref = [ts(np.full(60, -4.0)), ts(rng.normal(-2.6, 0.3, 60))]
    r = compute_rankings(RankingInputs(texts, target, lower, {"ref": ref}))
    for name, s in r.items():
        assert s[0] > s[1], name


def test_window_is_min_perplexity_window():
    s = ts([-5, -5, -0.1, -0.1, -0.1, -5])
    assert math.isclose(max_window_mean_logprob([s], window=3)[0], -0.1, rel_tol=1e-6)
    assert math.isclose(max_window_mean_logprob([s], window=50)[0], np.mean(s.logprobs), rel_tol=1e-6)


def test_min_k_matches_definition():
    s = ts([-1, -2, -3, -4, -5, -6, -7, -8, -9, -10])
    assert math.isclose(min_k_mean([s], k=0.2)[0], -9.5)
    assert math.isclose(min_k_mean([s], k=0.25)[0], np.mean([-10, -9]))  # int(2.5) = 2, as the official code


def test_empty_texts_rank_last():
    r = compute_rankings(RankingInputs(["", "a b c"], [ts([]), ts([-1.0])], [ts([]), ts([-1.0])]))
    for name, s in r.items():
        assert s[0] < s[1], name


def test_unknown_ranking_suggests():
    with pytest.raises(KeyError, match="Did you mean: min_k"):
        RANKINGS.get("mink")


def test_trigram_dedup_rule_from_the_paper():
    a = trigrams("the cat sat on the mat today")  # 5 trigrams
    b = trigrams("the cat sat on a rug")  # shares (the,cat,sat),(cat,sat,on): 2 of a's 5
    c = trigrams("the cat sat on the mat")  # shares 4 of a's 5
    assert sum(a.values()) == 5
    assert not is_duplicate(a, b)
    assert is_duplicate(a, c) and is_duplicate(c, a)
    # exactly half counts as duplicate (>=)
    d = trigrams("w1 w2 w3 w4 w5 w6")  # 4 trigrams
    e = trigrams("w1 w2 w3 w4 x y z")  # shares 2 -> 2 >= 4/2
    assert is_duplicate(d, e)
    # multiset: a repeated trigram counts as often as it occurs in both
    f = trigrams("a b c a b c a b c")  # abc x3, bca x2, cab x2
    g = trigrams("a b c x")  # abc x1 -> 1 of 7
    assert not is_duplicate(f, g)


def test_select_deduplicated_skips_near_copies():
    texts = ["alpha beta gamma delta epsilon zeta", "alpha beta gamma delta epsilon eta",
             "one two three four five six", "seven eight nine ten eleven twelve"]
    tris = [trigrams(t) for t in texts]
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    sel, skipped = select_deduplicated(scores, tris, k=3)
    assert sel == [0, 2, 3] and skipped == 1
    sel, _ = select_deduplicated(scores, tris, k=2, eligible=np.array([False, True, True, True]))
    assert sel == [1, 2]
