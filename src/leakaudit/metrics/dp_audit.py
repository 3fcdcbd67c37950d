"""Empirical DP auditing: statistically valid lower bounds ε̂ on the ε a training run provides.

numpy/scipy only (this layer never imports torch). A lower bound ε̂ *above* a claimed ε proves the
claim false (at the stated confidence); a lower bound *below* it proves nothing on its own: the
audit may simply be too weak. Every result therefore carries the largest ε the same audit could
certify with a perfect attacker (``max_certifiable``).

Definitions used throughout
---------------------------
- (ε, δ)-DP: for neighbouring datasets D, D' and every event S, P[M(D) ∈ S] ≤ e^ε·P[M(D') ∈ S] + δ.
- ``alpha`` / ``beta``: the audit's failure probability; the bound holds with confidence 1 − alpha
  (multi-run) or 1 − beta (one-run).
- Scores are "higher = more likely the audit example was trained on".

Multi-run audit (Jagielski, Ullman & Oprea, "Auditing Differentially Private Machine Learning:
How Private is Private SGD?", NeurIPS 2020, arXiv 2006.07709; Nasr, Song, Thakurta, Papernot &
Carlini, "Adversary Instantiation: Lower Bounds for Differentially Private Machine Learning",
IEEE S&P 2021, arXiv 2101.04535). N_in models are trained with the audit example(s) and N_out
without; each model gives one score s. The test "in iff s ≥ t" has false-positive rate
FPR = P[s ≥ t | out] and false-negative rate FNR = P[s < t | in]. (ε, δ)-DP implies
1 − FNR ≤ e^ε·FPR + δ and 1 − FPR ≤ e^ε·FNR + δ, so with Clopper–Pearson upper bounds FNR_hi,
FPR_hi (each one-sided at alpha/2, jointly valid at 1 − alpha)

    ε̂ = max( log((1 − δ − FNR_hi) / FPR_hi), log((1 − δ − FPR_hi) / FNR_hi) ).

This is :func:`leakaudit.metrics.roc.epsilon_lower_bound_counts` (TF Privacy's golden value is
pinned there); this module adds the threshold choice: a threshold picked to maximise ε̂ on the
same runs that bound it inflates ε̂, so t is chosen on *selection* runs and ε̂ is computed on
disjoint *certification* runs, or, when the thresholds are fixed before any run, the search over
T of them is paid for by a union (Bonferroni) bound: each test at alpha / T.

One-run audit (Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run",
NeurIPS 2023, arXiv 2305.08846). m canaries are each included independently with probability ½
in one training run. The attacker ranks them by score, guesses "in" for its k₊ highest and "out"
for its k₋ lowest and abstains on the rest: r = k₊ + k₋ guesses, v of them correct. Under
(ε, δ)-DP the number of correct guesses is (up to the δ term) stochastically dominated by
Binomial(r, q), q = e^ε / (1 + e^ε) (Theorem 3.1 / Appendix D). The p-value of "the training is
(ε, δ)-DP" given v is

    p(ε) = P[Bin(r, q) ≥ v] + 2·m·δ·max_{1≤i≤v} P[v − i ≤ Bin(r, q) < v] / i,

and ε̂ is the largest ε with p(ε) < beta (bisection, as in the paper's code). Choosing (k₊, k₋)
after seeing which guesses were right would inflate ε̂; here the candidate pairs form a grid fixed
by m alone and each is tested at beta / |grid| (Bonferroni), or a single pair fixed in advance
is tested at beta.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

from leakaudit.metrics.roc import epsilon_lower_bound_counts

#: The sentence every report prints next to an ε̂ that does not exceed the claim.
NOT_A_PROOF = ("ε̂ below the claimed ε proves nothing on its own: the audit can certify at most "
               "the maximum certifiable ε shown, and a weak attack certifies less.")


# --------------------------------------------------------------------------------------------
# One run (Steinke, Nasr & Jagielski 2023)
# --------------------------------------------------------------------------------------------

def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """p-value of the null hypothesis "the training is (ε, δ)-DP" after v correct guesses out of r
    on m canaries each included with probability ½ (Steinke et al. 2023, Appendix D, vectorised).

    p = P[Bin(r, q) ≥ v] + 2·m·δ·max_{1≤i≤v} P[v − i ≤ Bin(r, q) < v] / i, q = 1 / (1 + e^{−ε}).

    >>> round(one_run_p_value(1000, 10, 10, 0.0, 0.0), 6)   # ε = 0: ten fair coins all right
    0.000977
    >>> round(one_run_p_value(1000, 10, 5, 0.0, 0.0), 4)    # P[Bin(10, ½) ≥ 5]
    0.623
    """
    _check_counts(m, r, v)
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need epsilon >= 0 and 0 <= delta <= 1, got {epsilon}, {delta}")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(stats.binom.sf(v - 1, r, q))  # P[Bin(r, q) >= v]
    if v == 0 or delta == 0:
        return min(tail, 1.0)
    pmf = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[Bin = v - i], i = 1..v
    ratio = float(np.max(np.cumsum(pmf) / np.arange(1, v + 1)))
    return min(tail + ratio * delta * 2 * m, 1.0)


def one_run_epsilon(m: int, r: int, v: int, *, delta: float, beta: float) -> float:
    """ε̂: the largest ε at which "(ε, δ)-DP" is rejected at level ``beta`` (p-value < beta), i.e.
    a lower bound on ε with confidence 1 − beta. Bisection exactly as the paper's ``get_eps_audit``
    (start at 1, step up by 1, then 30 halvings). 0 when nothing can be rejected.

    Golden values (research note §7.5, the paper's code): m = 1000, δ = 1e-5, 95% confidence,
    10/50/100/200 correct guesses with none wrong:

    >>> [round(one_run_epsilon(1000, k, k, delta=1e-5, beta=0.05), 3) for k in (10, 50, 100, 200)]
    [1.015, 2.756, 3.465, 4.166]
    >>> round(one_run_epsilon(1000, 100, 90, delta=1e-5, beta=0.05), 2)   # 90 of 100 right
    1.63
    >>> round(one_run_epsilon(1000, 500, 400, delta=1e-5, beta=0.05), 2)   # 400 of 500 right
    1.2
    >>> round(one_run_epsilon(1000, 1000, 600, delta=1e-5, beta=0.05), 2)
    0.3
    >>> one_run_epsilon(1000, 100, 50, delta=1e-5, beta=0.05)             # chance level
    0.0
    """
    _check_counts(m, r, v)
    if not 0 < beta < 1:
        raise ValueError(f"beta must be in (0, 1), got {beta}")
    if one_run_p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    lo, hi = 0.0, 1.0
    while one_run_p_value(m, r, v, hi, delta) < beta:
        hi += 1.0
        if hi > 1000:  # p-value < beta at every ε: only when 2mδ·(…) and the tail both vanish
            return math.inf
    for _ in range(30):
        mid = (lo + hi) / 2
        if one_run_p_value(m, r, v, mid, delta) < beta:
            lo = mid
        else:
            hi = mid
    return lo


def default_k_grid(m: int) -> list[tuple[int, int]]:
    """The (k₊, k₋) pairs searched by default, a function of m alone (fixed before any data):
    k₊, k₋ ∈ {0} ∪ {⌈f·m⌉ : f ∈ 1%, 5%, 10%, 25%, 50%}, not both 0, k₊ + k₋ ≤ m. Every extra pair
    costs power (each is tested at beta / |grid|), so the grid is short.

    >>> g = default_k_grid(1000); len(g), g[:3], (500, 500) in g
    (35, [(0, 10), (0, 50), (0, 100)], True)
    """
    if m < 1:
        raise ValueError(f"need at least one canary, got m={m}")
    ks = sorted({0} | {max(1, math.ceil(f * m)) for f in (0.01, 0.05, 0.1, 0.25, 0.5)})
    return [(a, b) for a in ks for b in ks if (a or b) and a + b <= m]


@dataclass(frozen=True)
class OneRunResult:
    """One-run audit outcome. ``epsilon`` is ε̂ (valid at confidence 1 − beta with the grid search
    paid for); ``k_pos``/``k_neg``/``r``/``v`` describe the pair that gave it; ``max_certifiable``
    is ε̂ of a perfect attacker under the same m, δ, beta and grid; ``n_tests`` = |grid|."""

    epsilon: float
    max_certifiable: float
    m: int
    n_in: int
    k_pos: int
    k_neg: int
    r: int
    v: int
    delta: float
    beta: float
    n_tests: int

    def to_dict(self) -> dict:
        return {**asdict(self), "confidence": 1 - self.beta, "method": "steinke2023_one_run"}


def max_certifiable_one_run(m: int, *, delta: float, beta: float,
                            k_grid: list[tuple[int, int]] | None = None) -> float:
    """Largest ε̂ the one-run audit can certify: every guess right, best pair of the grid, each
    pair tested at beta / |grid| (Bonferroni). A single fixed pair: ``k_grid=[(k_pos, k_neg)]``.

    >>> round(max_certifiable_one_run(1000, delta=1e-5, beta=0.05, k_grid=[(100, 100)]), 3)
    4.166
    >>> round(max_certifiable_one_run(1000, delta=1e-5, beta=0.05, k_grid=[(500, 500)]), 3)
    5.782
    >>> round(max_certifiable_one_run(1000, delta=1e-5, beta=0.05), 2)   # default grid, 35 tests
    4.63
    """
    grid = default_k_grid(m) if k_grid is None else k_grid
    return _max_certifiable(m, tuple(sorted({kp + kn for kp, kn in grid})), delta, beta / len(grid))


@lru_cache(maxsize=256)
def _max_certifiable(m: int, rs: tuple[int, ...], delta: float, b: float) -> float:
    return max(one_run_epsilon(m, r, r, delta=delta, beta=b) for r in rs)


def one_run_guesses(scores, included, k_pos: int, k_neg: int, *, seed: int = 0) -> tuple[int, int]:
    """(r, v) when guessing "in" for the ``k_pos`` highest and "out" for the ``k_neg`` lowest scores.
    ``included`` is the 0/1 inclusion of each canary. Ties are broken by a permutation drawn from
    ``seed`` (never by canary order, which a caller might have sorted by inclusion).

    >>> one_run_guesses([5, 4, 3, 2, 1, 0], [1, 1, 0, 1, 0, 0], 2, 2)
    (4, 4)
    >>> one_run_guesses([5, 4, 3, 2, 1, 0], [1, 1, 0, 1, 0, 0], 3, 0)
    (3, 2)
    """
    s, z = _check_canaries(scores, included)
    if k_pos < 0 or k_neg < 0 or k_pos + k_neg > len(s):
        raise ValueError(f"need 0 <= k_pos + k_neg <= m = {len(s)}, got {k_pos} + {k_neg}")
    order = np.lexsort((np.random.default_rng(seed).permutation(len(s)), -s))
    top, bottom = order[:k_pos], order[len(s) - k_neg:]
    return k_pos + k_neg, int(z[top].sum() + (1 - z[bottom]).sum())


def one_run_audit(scores, included, *, delta: float, beta: float,
                  k_grid: list[tuple[int, int]] | None = None, seed: int = 0) -> OneRunResult:
    """ε̂ of a one-run audit (Steinke et al. 2023): the best over ``k_grid`` (default
    :func:`default_k_grid`) of :func:`one_run_epsilon` at beta / |grid|.

    ``scores``: one per canary, higher = more likely included; ``included``: the 0/1 coin flips.
    The grid must be chosen without looking at ``included`` (the default depends on m only);
    ``seed`` breaks ties between equal scores.

    >>> z = np.r_[np.ones(500), np.zeros(500)]
    >>> res = one_run_audit(z, z, delta=1e-5, beta=0.05)   # a perfect attacker
    >>> res.epsilon == res.max_certifiable, round(res.epsilon, 2), res.r
    (True, 4.63, 1000)
    >>> one_run_audit(np.zeros(1000), z, delta=1e-5, beta=0.05).epsilon   # an uninformative one
    0.0
    """
    s, z = _check_canaries(scores, included)
    m = len(s)
    grid = default_k_grid(m) if k_grid is None else list(k_grid)
    if not grid:
        raise ValueError("k_grid is empty")
    b = beta / len(grid)
    best = (-1.0, 0, 0, 0, 0)
    for kp, kn in grid:
        r, v = one_run_guesses(s, z, kp, kn, seed=seed)
        # p(ε) increases with ε, so a pair whose p-value at the best ε so far is not below b
        # cannot beat it: one evaluation instead of a bisection.
        if best[0] > 0 and one_run_p_value(m, r, v, best[0], delta) >= b:
            continue
        e = one_run_epsilon(m, r, v, delta=delta, beta=b)
        if e > best[0]:
            best = (e, kp, kn, r, v)
    e, kp, kn, r, v = best
    return OneRunResult(epsilon=max(e, 0.0),
                        max_certifiable=max_certifiable_one_run(m, delta=delta, beta=beta, k_grid=grid),
                        m=m, n_in=int(z.sum()), k_pos=kp, k_neg=kn, r=r, v=v, delta=delta, beta=beta,
                        n_tests=len(grid))


# --------------------------------------------------------------------------------------------
# Many runs (Jagielski et al. 2020; Nasr et al. 2021)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MultiRunResult:
    """Multi-run audit outcome. ε̂ = ``epsilon`` at confidence 1 − alpha, from the threshold test
    "in iff score ≥ threshold" on the certification runs: ``tp`` of ``n_in`` in-runs and ``fp`` of
    ``n_out`` out-runs flagged. ``selection`` says how the threshold was chosen: "split" (on
    ``n_select_in`` + ``n_select_out`` other runs) or "bonferroni" (over ``n_tests`` thresholds
    fixed in advance). ``max_certifiable`` is ε̂ of perfectly separated certification runs."""

    epsilon: float
    max_certifiable: float
    threshold: float
    tp: int
    n_in: int
    fp: int
    n_out: int
    fnr_hi: float
    fpr_hi: float
    alpha: float
    delta: float
    selection: str
    n_tests: int
    n_select_in: int
    n_select_out: int

    def to_dict(self) -> dict:
        return {**asdict(self), "confidence": 1 - self.alpha, "method": "jagielski2020_clopper_pearson"}


def multi_run_bound_at(scores_in, scores_out, threshold: float, *, alpha: float,
                       delta: float) -> tuple[float, int, int]:
    """(ε̂, TP, FP) of the single test "in iff score ≥ threshold" (Clopper–Pearson, confidence
    1 − alpha, see the module docstring). Reuses :func:`epsilon_lower_bound_counts`.

    500 perfectly separated runs per side at alpha = 0.01 (TF Privacy's audit test):

    >>> round(multi_run_bound_at(np.ones(500), np.zeros(500), 0.5, alpha=0.01, delta=0)[0], 7)
    4.5419158

    Research note §7.5 (1,000 runs per side, alpha = 0.05, δ = 0): TP = 500 with FP = 5, and FP = 0:

    >>> r = lambda fp: multi_run_bound_at(np.r_[np.ones(500), np.zeros(500)],
    ...                                   np.r_[np.ones(fp), np.zeros(1000 - fp)], 0.5, alpha=0.05, delta=0)
    >>> round(r(5)[0], 2), r(5)[1:], round(r(0)[0], 2)
    (3.7, (500, 5), 4.85)
    """
    si, so = _finite(scores_in, "scores_in"), _finite(scores_out, "scores_out")
    tp, fp = int((si >= threshold).sum()), int((so >= threshold).sum())
    return epsilon_lower_bound_counts(tp, len(si), fp, len(so), alpha=alpha, delta=delta), tp, fp


def _cp_hi(k: int, n: int, a: float) -> float:
    return 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))


def multi_run_audit(scores_in, scores_out, *, alpha: float, delta: float,
                    thresholds=None, select_fraction: float = 0.5, seed: int = 0) -> MultiRunResult:
    """ε̂ of a multi-run audit, with the threshold search accounted for.

    - ``thresholds`` given (a grid fixed before the runs): every threshold is tested on all runs at
      alpha / len(thresholds) and the best is reported ("bonferroni").
    - otherwise ("split"): a seeded ``select_fraction`` of the in-runs and of the out-runs choose the
      threshold (the one maximising the same bound on them); ε̂ is computed on the other runs only.

    >>> rng = np.random.default_rng(0)
    >>> res = multi_run_audit(rng.normal(3, 1, 200), rng.normal(0, 1, 200), alpha=0.05, delta=1e-5)
    >>> res.selection, res.n_in, res.n_out, 0 < res.epsilon <= res.max_certifiable
    ('split', 100, 100, True)
    >>> multi_run_audit(np.zeros(50), np.zeros(50), alpha=0.05, delta=1e-5).epsilon   # no signal
    0.0
    """
    si, so = _finite(scores_in, "scores_in"), _finite(scores_out, "scores_out")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if thresholds is not None:
        grid = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if len(grid) == 0:
            raise ValueError("thresholds is empty")
        a = alpha / len(grid)
        best = max((multi_run_bound_at(si, so, float(t), alpha=a, delta=delta) + (float(t),)
                    for t in grid), key=lambda x: x[0])
        e, tp, fp, t = best
        n_in, n_out, n_tests, sel, ns_in, ns_out = len(si), len(so), len(grid), "bonferroni", 0, 0
    else:
        if not 0 < select_fraction < 1:
            raise ValueError(f"select_fraction must be in (0, 1), got {select_fraction}")
        rng = np.random.default_rng(seed)
        pi, po = rng.permutation(len(si)), rng.permutation(len(so))
        ci, co = int(round(select_fraction * len(si))), int(round(select_fraction * len(so)))
        if min(ci, co, len(si) - ci, len(so) - co) < 1:
            raise ValueError(f"need at least one selection and one certification run per side; got "
                             f"{len(si)} in-runs and {len(so)} out-runs")
        sel_in, cert_in, sel_out, cert_out = si[pi[:ci]], si[pi[ci:]], so[po[:co]], so[po[co:]]
        t = _select_threshold(sel_in, sel_out, alpha=alpha, delta=delta)
        e, tp, fp = multi_run_bound_at(cert_in, cert_out, t, alpha=alpha, delta=delta)
        si, so, a = cert_in, cert_out, alpha
        n_in, n_out, n_tests, sel, ns_in, ns_out = len(cert_in), len(cert_out), 1, "split", ci, co
    return MultiRunResult(
        epsilon=e, max_certifiable=max_certifiable_multi_run(n_in, n_out, alpha=a, delta=delta),
        threshold=t, tp=tp, n_in=n_in, fp=fp, n_out=n_out, fnr_hi=_cp_hi(n_in - tp, n_in, a),
        fpr_hi=_cp_hi(fp, n_out, a), alpha=alpha, delta=delta, selection=sel, n_tests=n_tests,
        n_select_in=ns_in, n_select_out=ns_out)


def _select_threshold(sel_in: np.ndarray, sel_out: np.ndarray, *, alpha: float, delta: float) -> float:
    """The threshold chosen on the selection runs: among the midpoints between consecutive distinct
    selection scores (thinned to at most 64 quantiles), the one with the largest bound at
    ``alpha``, then the largest TPR − FPR (a few selection runs bound nothing, so every candidate
    ties at 0 and the empirical separation decides), then the one nearest 0. Any rule is valid:
    the certification runs never take part.

    >>> float(_select_threshold(np.array([2.0, 3.0]), np.array([-1.0, 0.5]), alpha=0.05, delta=0))
    1.25
    """
    u = np.unique(np.r_[sel_in, sel_out])
    candidates = np.r_[u[0] - 1.0, (u[:-1] + u[1:]) / 2, u[-1] + 1.0] if len(u) > 1 else u
    if len(candidates) > 64:
        candidates = np.unique(np.quantile(candidates, np.linspace(0, 1, 64), method="nearest"))

    def key(c):
        e = multi_run_bound_at(sel_in, sel_out, float(c), alpha=alpha, delta=delta)[0]
        return e, float((sel_in >= c).mean() - (sel_out >= c).mean()), -abs(float(c))

    return float(max(candidates, key=key))


def max_certifiable_multi_run(n_in: int, n_out: int, *, alpha: float, delta: float) -> float:
    """ε̂ of perfectly separated runs (TP = n_in, FP = 0): the most a multi-run audit of this size
    can certify at confidence 1 − alpha.

    >>> [round(max_certifiable_multi_run(n, n, alpha=0.05, delta=1e-5), 2) for n in (10, 25, 50, 100)]
    [0.81, 1.84, 2.57, 3.28]
    """
    return epsilon_lower_bound_counts(n_in, n_in, 0, n_out, alpha=alpha, delta=delta)


# --------------------------------------------------------------------------------------------

def _check_counts(m: int, r: int, v: int) -> None:
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")


def _finite(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if len(a) == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has {int((~np.isfinite(a)).sum())} non-finite values")
    return a


def _check_canaries(scores, included) -> tuple[np.ndarray, np.ndarray]:
    s = _finite(scores, "scores")
    z = np.asarray(included).reshape(-1)
    if z.shape != s.shape:
        raise ValueError(f"scores has {len(s)} entries but included has {len(z)}")
    if not np.all((z == 0) | (z == 1)):
        raise ValueError("included must be 0 (left out) or 1 (trained on)")
    return s, z.astype(np.int64)


# --------------------------------------------------------------------------------------------
# White-box: gradient canaries observed in every step's noisy update
# --------------------------------------------------------------------------------------------
#
# Symbols: a DP-SGD step releases S_t + N(0, σ²C²·I), S_t the sum of the clipped per-example
# gradients of the step's batch (each of norm ≤ C). A gradient canary i is a per-example gradient
# along a unit direction u_i; its observation in step t is x_{t,i} = <update_t, u_i> / C, in units
# of C: N(1 + b, σ²) when the canary was in the batch (clipped to norm C), N(b, σ²) when not
# (b: what the other examples contribute along u_i).

def whitebox_llr_scores(x, *, noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """One score per canary for the one-run white-box audit: the log-likelihood ratio, summed over
    all T steps, of "the canary is in the dataset" (each step: in the batch with probability q,
    shift 1) against "it is not", under the *claimed* mechanism (σ, q):

        score_i = Σ_t log(1 − q + q·exp((x_{t,i} − ½) / σ²)).

    ``x``: (T, m) observations in units of C. No knowledge of which steps sampled a canary is used
    (that randomness is the claim's amplification); σ and q are fixed before any data, so the
    score is a valid one-run test statistic (Steinke et al. 2023, white-box), Neyman–Pearson
    optimal for one step of an honest pipeline. Higher = more likely included.

    One step, q = ½, σ = 1: x = ½ gives log(½ + ½) = 0; x = 0.5 + ln 3 gives log 2:

    >>> s = whitebox_llr_scores(np.array([[0.5, 0.5 + math.log(3)]]), noise_multiplier=1.0, sample_rate=0.5)
    >>> [round(float(v), 6) for v in s]
    [0.0, 0.693147]
    >>> float(whitebox_llr_scores(np.array([[3.0], [1.0]]), noise_multiplier=1.0, sample_rate=1.0)[0])  # q = 1: Σ(x − ½)/σ²
    3.0
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"observations must be a non-empty (steps, canaries) array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"observations have {int((~np.isfinite(a)).sum())} non-finite values")
    if not (noise_multiplier > 0 and 0 < sample_rate <= 1):
        raise ValueError(f"need noise_multiplier > 0 and 0 < sample_rate <= 1, got {noise_multiplier}, {sample_rate}")
    z = (a - 0.5) / noise_multiplier**2
    if sample_rate == 1:
        return z.sum(axis=0)
    return np.logaddexp(math.log1p(-sample_rate), math.log(sample_rate) + z).sum(axis=0)


def detrend_steps(x, *, window: int) -> np.ndarray:
    """Observations minus their running median over ``window`` steps (per canary, centred, edges
    repeated): what the other examples contribute along a canary's coordinate drifts slowly over
    training and would swamp the canary's shifts; the median of a short window follows the drift
    and ignores the rare shifts. A function of the observations alone, so still a valid one-run
    score input.

    >>> detrend_steps(np.array([[0.0], [0.1], [1.2], [0.3], [0.4]]), window=3).ravel().round(2).tolist()
    [0.0, 0.0, 0.9, -0.1, 0.0]
    """
    from scipy.ndimage import median_filter

    a = np.asarray(x, dtype=np.float64)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd number >= 1, got {window}")
    return a - median_filter(a, size=(window, 1), mode="nearest")


def gdp_delta(epsilon: float, mu: float) -> float:
    """δ(ε) of μ-Gaussian DP (Dong, Roth & Su 2022, Cor. 2.13):
    δ = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2).

    >>> round(gdp_delta(0.0, 1.0), 6)   # = 2Φ(½) − 1, the total variation of N(0,1) and N(1,1)
    0.382925
    """
    if mu <= 0:
        return 0.0
    return float(stats.norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * stats.norm.cdf(-epsilon / mu - mu / 2))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The smallest ε with δ(ε) ≤ ``delta`` for a μ-GDP mechanism (bisection; 0 when μ ≤ 0).

    >>> round(gdp_epsilon(1.0, 1e-5), 3), round(gdp_epsilon(2.0, 1e-5), 3)
    (4.377, 9.997)
    >>> round(gdp_delta(gdp_epsilon(1.0, 1e-5), 1.0), 9)
    1e-05
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if mu <= 0 or gdp_delta(0.0, mu) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while gdp_delta(hi, mu) > delta:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gdp_delta(mid, mu) > delta else (lo, mid)
    return hi


def gdp_mu_lower_bound(tp: int, n_in: int, fp: int, n_out: int, *, alpha: float) -> float:
    """A lower bound on μ from one threshold test, assuming the Gaussian trade-off curve (Nasr et
    al. 2023, "Tight Auditing of Differentially Private Machine Learning", §4): with Clopper–Pearson
    upper bounds FNR_hi, FPR_hi (each one-sided at alpha/2),
    μ̂ = Φ⁻¹(1 − FPR_hi) − Φ⁻¹(FNR_hi), floored at 0.

    100 of 100 in-samples flagged, 0 of 100 out-samples, alpha = 0.05 (FPR_hi = FNR_hi =
    1 − 0.025^(1/100) = 0.03622): μ̂ = 2·Φ⁻¹(0.96378):

    >>> round(gdp_mu_lower_bound(100, 100, 0, 100, alpha=0.05), 4)
    3.5928
    >>> gdp_mu_lower_bound(50, 100, 50, 100, alpha=0.05)
    0.0
    """
    if not (0 <= tp <= n_in and 0 <= fp <= n_out and n_in > 0 and n_out > 0):
        raise ValueError(f"need 0 <= tp <= n_in, 0 <= fp <= n_out, both sides non-empty; got {tp}/{n_in}, {fp}/{n_out}")
    fnr_hi, fpr_hi = _cp_hi(n_in - tp, n_in, alpha), _cp_hi(fp, n_out, alpha)
    if fnr_hi >= 1 or fpr_hi >= 1:
        return 0.0
    return max(float(stats.norm.ppf(1 - fpr_hi) - stats.norm.ppf(fnr_hi)), 0.0)


@dataclass(frozen=True)
class StepGDPResult:
    """Per-step Gaussian-DP audit (Nasr et al. 2023, white-box): ``mu`` is a lower bound (confidence
    1 − alpha) on one step's μ in units where an honest step has μ = 1/σ; ``threshold``, ``tp`` of
    ``n_in`` and ``fp`` of ``n_out`` describe the certifying test (chosen on ``n_select_in`` +
    ``n_select_out`` other samples); ``max_mu`` is μ̂ of perfectly separated samples."""

    mu: float
    max_mu: float
    threshold: float
    tp: int
    n_in: int
    fp: int
    n_out: int
    alpha: float
    n_select_in: int
    n_select_out: int

    def to_dict(self) -> dict:
        return {**asdict(self), "confidence": 1 - self.alpha, "method": "nasr2023_step_gdp"}


def step_gdp_audit(x_in, x_out, *, alpha: float, select_fraction: float = 0.2, seed: int = 0) -> StepGDPResult:
    """Lower bound on a step's μ from observations with the canary in the step (``x_in``) and
    without (``x_out``): a seeded ``select_fraction`` of each side picks the threshold (the one with
    the largest :func:`gdp_mu_lower_bound` among 49 quantiles, 2% to 98%, of the selection samples); the
    other samples certify it. A fifth is enough to place the threshold (on a Gaussian shift of 0.4
    with 1,000 in-samples, μ̂ averages 0.24 with a fifth and 0.18 with half).

    >>> rng = np.random.default_rng(0)
    >>> res = step_gdp_audit(rng.normal(1, 1, 4000), rng.normal(0, 1, 4000), alpha=0.05)
    >>> 0.8 < res.mu < 1.0, res.n_in, res.max_mu > 4
    (True, 3200, True)
    >>> step_gdp_audit(np.zeros(100), np.zeros(100), alpha=0.05).mu
    0.0
    """
    si, so = _finite(x_in, "x_in"), _finite(x_out, "x_out")
    if not (0 < alpha < 1 and 0 < select_fraction < 1):
        raise ValueError(f"need alpha and select_fraction in (0, 1), got {alpha}, {select_fraction}")
    rng = np.random.default_rng(seed)
    pi, po = rng.permutation(len(si)), rng.permutation(len(so))
    ci, co = round(select_fraction * len(si)), round(select_fraction * len(so))
    if min(ci, co, len(si) - ci, len(so) - co) < 1:
        raise ValueError(f"need at least two samples per side; got {len(si)} in, {len(so)} out")
    sel_in, cert_in, sel_out, cert_out = si[pi[:ci]], si[pi[ci:]], so[po[:co]], so[po[co:]]
    cands = np.unique(np.quantile(np.r_[sel_in, sel_out], np.linspace(0.02, 0.98, 49)))

    def mu_at(a_in, a_out, t):
        tp, fp = int((a_in >= t).sum()), int((a_out >= t).sum())
        return gdp_mu_lower_bound(tp, len(a_in), fp, len(a_out), alpha=alpha), tp, fp

    t = float(max(cands, key=lambda c: (mu_at(sel_in, sel_out, c)[0], (sel_in >= c).mean() - (sel_out >= c).mean())))
    mu, tp, fp = mu_at(cert_in, cert_out, t)
    return StepGDPResult(mu=mu, max_mu=gdp_mu_lower_bound(len(cert_in), len(cert_in), 0, len(cert_out), alpha=alpha),
                         threshold=t, tp=tp, n_in=len(cert_in), fp=fp, n_out=len(cert_out), alpha=alpha,
                         n_select_in=ci, n_select_out=co)


def poisson_sampling_p_value(counts, *, steps: int, sample_rate: float) -> float:
    """p-value of "each canary was put in each of ``steps`` batches independently with probability
    q" (Poisson sampling, as claimed) given how many batches each in-canary was in: two-sided tests
    of the rate (Σ counts ~ Bin(m·T, q)) and of the dispersion (Σ (c − Tq)² / (Tq(1 − q)) ≈ χ²(m)),
    Bonferroni-combined. Shuffled fixed-size batches put every canary in exactly one batch per
    epoch: no dispersion at all.

    >>> poisson_sampling_p_value(np.full(200, 5), steps=50, sample_rate=0.1) < 1e-12   # shuffling
    True
    >>> rng = np.random.default_rng(0)
    >>> poisson_sampling_p_value(rng.binomial(50, 0.1, 200), steps=50, sample_rate=0.1) > 0.05
    True
    """
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    if len(c) == 0 or steps < 1 or not 0 < sample_rate < 1:
        raise ValueError(f"need counts, steps >= 1 and 0 < sample_rate < 1; got {len(c)}, {steps}, {sample_rate}")
    m, mean, var = len(c), steps * sample_rate, steps * sample_rate * (1 - sample_rate)
    p_rate = float(stats.binomtest(int(c.sum()), m * steps, sample_rate).pvalue)
    disp = float(((c - mean) ** 2).sum() / var)
    p_disp = 2 * min(float(stats.chi2.cdf(disp, m)), float(stats.chi2.sf(disp, m)))
    return min(1.0, 2 * min(p_rate, p_disp))
