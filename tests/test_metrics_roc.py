"""Golden values for the membership metrics: scikit-learn's ROC/AUC and TF Privacy's ε bound."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from leakaudit.metrics.roc import (auc, auc_bootstrap_ci, epsilon_lower_bound,
                                   epsilon_lower_bound_counts, evaluate_membership,
                                   membership_advantage, roc_curve, tpr_at_fpr)


@pytest.mark.parametrize("seed", range(5))
def test_roc_and_auc_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + 0.7 * y
    if seed % 2:  # many ties
        s = np.round(s, 1)
    fpr, tpr, thr = roc_curve(s, y)
    sf, st, sth = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sf, atol=1e-12, rtol=0)
    np.testing.assert_allclose(tpr, st, atol=1e-12, rtol=0)
    np.testing.assert_array_equal(thr[1:], sth[1:])
    assert abs(auc(s, y) - roc_auc_score(y, s)) < 1e-12


def test_epsilon_golden_tf_privacy():
    # tensorflow_privacy epsilon_lower_bound_test: 500 perfectly separated runs, alpha = 0.01
    assert abs(epsilon_lower_bound_counts(500, 500, 0, 500, alpha=0.01) - 4.541915810224092) < 1e-9
    s = np.r_[np.ones(500), np.zeros(500)]
    assert abs(epsilon_lower_bound(s, s, alpha=0.01) - 4.541915810224092) < 1e-9


def test_tpr_at_fpr_hand_checked_and_not_resolvable():
    # 10 non-members scored 0..9, 10 members scored 5.5..14.5: at FPR <= 10% the best threshold is
    # 8.5 (one false positive: 9); members with score >= 8.5 are 8.5..14.5 -> 7 of 10.
    neg = np.arange(10.0)
    pos = np.arange(10.0) + 5.5
    s, y = np.r_[pos, neg], np.r_[np.ones(10), np.zeros(10)]
    r = tpr_at_fpr(s, y, 0.1, alpha=0.05)
    assert r.resolvable and r.tpr == 0.7 and r.fp == 1 and r.tp == 7 and r.threshold == 8.5
    assert r.ci_low == pytest.approx(0.3475471, abs=1e-6)  # CP(7, 10) at 95%
    # 10 non-members cannot resolve FPR 1%
    r = tpr_at_fpr(s, y, 0.01, alpha=0.05)
    assert not r.resolvable and r.tpr is None and r.label() == "not resolvable"
    assert membership_advantage(s, y) == pytest.approx(0.6)  # threshold 5.5: TPR 1, FPR 0.4


def test_negative_control_random_scores():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(2000), np.zeros(2000)]
    s = rng.normal(size=4000)
    m = evaluate_membership(s, y, n_boot=200, seed=0)
    assert m.auc_ci[0] < 0.5 < m.auc_ci[1]
    r = m.tpr(0.01)
    assert r.resolvable and r.ci_low <= 0.01 <= r.ci_high + 0.01
    assert not m.tpr(0.0001).resolvable
    assert m.epsilon_lb < 0.5


def test_bootstrap_ci_covers_and_is_seeded():
    rng = np.random.default_rng(2)
    y = np.r_[np.ones(200), np.zeros(200)]
    s = rng.normal(size=400) + y
    lo, hi = auc_bootstrap_ci(s, y, n_boot=300, alpha=0.05, seed=3)
    assert lo < roc_auc_score(y, s) < hi
    assert (lo, hi) == auc_bootstrap_ci(s, y, n_boot=300, alpha=0.05, seed=3)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="non-finite"):
        roc_curve([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="at least one member"):
        roc_curve([0.1, 0.2], [1, 1])
