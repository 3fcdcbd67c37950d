"""The DP-audit statistics (metrics/dp_audit.py) against the paper's reference code and against
mechanisms whose exact ε is known (randomized response, the Gaussian mechanism)."""

import math

import numpy as np
import pytest
import scipy.stats
from scipy.stats import norm

from leakaudit.metrics.dp_audit import (
    max_certifiable_multi_run,
    max_certifiable_one_run,
    multi_run_audit,
    one_run_audit,
    one_run_epsilon,
    one_run_p_value,
)


def _reference_p_value(m, r, v, eps, delta):
    """Steinke, Nasr & Jagielski 2023, Appendix D, as published (loop form)."""
    q = 1 / (1 + math.exp(-eps))
    beta = scipy.stats.binom.sf(v - 1, r, q)
    alpha = 0
    s = 0
    for i in range(1, v + 1):
        s = s + scipy.stats.binom.pmf(v - i, r, q)
        if s > i * alpha:
            alpha = s / i
    return min(beta + alpha * delta * 2 * m, 1)


@pytest.mark.parametrize("m,r,v,eps,delta", [(1000, 10, 10, 1.0, 1e-5), (1000, 200, 170, 2.5, 1e-5),
                                             (500, 500, 300, 0.4, 1e-6), (100, 40, 20, 0.0, 1e-3),
                                             (2000, 300, 290, 4.0, 0.0), (1000, 1000, 1000, 6.0, 1e-5)])
def test_p_value_matches_reference_loop(m, r, v, eps, delta):
    assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(_reference_p_value(m, r, v, eps, delta),
                                                                 rel=1e-9, abs=1e-15)


def _randomized_response(eps, m, seed):
    """An exactly ε-DP release of each canary's inclusion bit: the true bit with probability
    e^ε / (1 + e^ε). The best possible attacker reads the bit."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, m)
    keep = rng.random(m) < math.exp(eps) / (1 + math.exp(eps))
    noisy = np.where(keep, z, 1 - z)
    return noisy + 0.01 * rng.random(m), z  # scores: higher = guessed in; tiny jitter orders ties


def test_one_run_sound_on_randomized_response():
    # ε = 1 randomized response: ε̂ must stay ≤ 1 (it holds with probability ≥ 95% per seed; the
    # seeds are fixed so the test is deterministic).
    for seed in range(5):
        s, z = _randomized_response(1.0, 1000, seed)
        res = one_run_audit(s, z, delta=1e-5, beta=0.05)
        assert res.epsilon <= 1.0, (seed, res)
        assert res.epsilon > 0.2  # and it has power: it detects most of the ε
        assert res.n_tests == 35


def test_one_run_power_and_negative_control():
    s, z = _randomized_response(4.0, 1000, 0)
    res = one_run_audit(s, z, delta=1e-5, beta=0.05)
    assert 2.5 < res.epsilon <= 4.0
    rng = np.random.default_rng(1)
    noise = one_run_audit(rng.normal(size=1000), rng.integers(0, 2, 1000), delta=1e-5, beta=0.05)
    assert noise.epsilon < 0.3  # no information: nothing (or almost nothing) certified


def test_one_run_search_is_paid_for():
    # The same perfect guesses certify less when 35 (k+, k-) pairs were searched than with one pair
    # fixed in advance; a perfect attacker reaches max_certifiable exactly.
    z = np.r_[np.ones(500), np.zeros(500)]
    rng = np.random.default_rng(0)
    perm = rng.permutation(1000)
    fixed = one_run_audit(z[perm], z[perm], delta=1e-5, beta=0.05, k_grid=[(100, 100)])
    assert fixed.epsilon == pytest.approx(one_run_epsilon(1000, 200, 200, delta=1e-5, beta=0.05))
    searched = one_run_audit(z[perm], z[perm], delta=1e-5, beta=0.05)
    assert searched.epsilon == searched.max_certifiable
    assert max_certifiable_one_run(1000, delta=1e-5, beta=0.05 / 35, k_grid=[(500, 500)]) == \
        pytest.approx(searched.max_certifiable)


def _gaussian_eps(mu, delta):
    """ε of the Gaussian mechanism with sensitivity/σ = mu at δ (Balle & Wang 2018, Theorem 8)."""
    def d(eps):
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta
    return scipy.optimize.brentq(d, 0, 100)


def test_multi_run_sound_on_gaussian_mechanism():
    # In-runs score N(mu, 1), out-runs N(0, 1): the exact (ε, δ) is known.
    for mu in (1.0, 2.0, 3.0):
        eps = _gaussian_eps(mu, 1e-5)
        for seed in range(3):
            rng = np.random.default_rng(seed)
            res = multi_run_audit(rng.normal(mu, 1, 400), rng.normal(0, 1, 400), alpha=0.05, delta=1e-5,
                                  seed=seed)
            assert res.epsilon <= eps, (mu, seed, res.epsilon, eps)
            assert res.epsilon <= res.max_certifiable
    # power at mu = 3 (ε ≈ 9.6): well above 1
    rng = np.random.default_rng(0)
    assert multi_run_audit(rng.normal(3, 1, 400), rng.normal(0, 1, 400), alpha=0.05, delta=1e-5).epsilon > 1.5


def test_multi_run_bonferroni_grid():
    si, so = np.ones(100), np.zeros(100)
    one = multi_run_audit(si, so, alpha=0.05, delta=0, thresholds=[0.5])
    many = multi_run_audit(si, so, alpha=0.05, delta=0, thresholds=np.linspace(0.1, 0.9, 20))
    assert one.selection == "bonferroni" and one.n_tests == 1 and many.n_tests == 20
    assert one.epsilon == pytest.approx(max_certifiable_multi_run(100, 100, alpha=0.05, delta=0))
    assert many.epsilon < one.epsilon  # the same separation certifies less after a 20-way search
    assert many.epsilon == pytest.approx(max_certifiable_multi_run(100, 100, alpha=0.05 / 20, delta=0))


def test_multi_run_split_uses_disjoint_runs():
    si, so = np.ones(30), np.zeros(30)
    res = multi_run_audit(si, so, alpha=0.05, delta=0, select_fraction=0.5)
    assert (res.n_in, res.n_out, res.n_select_in, res.n_select_out) == (15, 15, 15, 15)
    assert res.epsilon == pytest.approx(max_certifiable_multi_run(15, 15, alpha=0.05, delta=0))


@pytest.mark.parametrize("call", [
    lambda: one_run_audit([1.0, np.nan], [0, 1], delta=1e-5, beta=0.05),
    lambda: one_run_audit([1.0, 2.0], [0, 2], delta=1e-5, beta=0.05),
    lambda: one_run_audit([1.0, 2.0, 3.0], [0, 1], delta=1e-5, beta=0.05),
    lambda: one_run_epsilon(10, 5, 6, delta=1e-5, beta=0.05),
    lambda: one_run_epsilon(10, 5, 5, delta=1e-5, beta=1.5),
    lambda: multi_run_audit([], [0.0], alpha=0.05, delta=0),
    lambda: multi_run_audit([1.0], [0.0], alpha=0.05, delta=0),  # too few runs to split
])
def test_bad_input_is_rejected(call):
    with pytest.raises(ValueError):
        call()
