"""ROC analysis for membership inference, evaluated as Carlini et al. 2022 ask: TPR at low FPR.

numpy/scipy only (this layer never imports torch). Convention everywhere: ``labels`` are 1 for
members (positives) and 0 for non-members; ``scores`` are "higher = more likely member".

Symbols: P = number of members, N = number of non-members; for a threshold t, TP(t) = #members
with score ≥ t, FP(t) = #non-members with score ≥ t, TPR = TP/P, FPR = FP/N.

References:
- Carlini, Chien, Nasr, Song, Terzis, Tramèr, "Membership Inference Attacks From First Principles",
  IEEE S&P 2022 (arXiv 2112.03570): TPR at FPR ≤ 0.1% on a log-log ROC.
- Jagielski, Ullman, Oprea, "Auditing Differentially Private Machine Learning: How Private is
  Private SGD?", NeurIPS 2020 (arXiv 2006.07709): ε lower bound from Clopper–Pearson bounds on
  the TPR and FPR of a threshold attack.
- Yeom, Giacomelli, Fredrikson, Jha, "Privacy Risk in Machine Learning", CSF 2018 (arXiv
  1709.01604): membership advantage = TPR − FPR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import beta

from leakaudit.metrics.stats import clopper_pearson

#: The FPRs at which every membership result reports its TPR.
DEFAULT_FPRS: tuple[float, ...] = (0.1, 0.01, 0.001, 0.0001)


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores has {s.shape[0]} entries but labels has {y.shape[0]}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} non-finite values")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 (non-member) or 1 (member)")
    y = y.astype(np.int64)
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError("need at least one member and one non-member")
    return s, y


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full ROC: ``(fpr, tpr, thresholds)`` at every distinct score, highest threshold first.

    Same points and conventions as ``sklearn.metrics.roc_curve(labels, scores,
    drop_intermediate=False)``: the first point is (0, 0) with threshold +inf; point i is the
    attack "member iff score ≥ thresholds[i]".

    >>> fpr, tpr, thr = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    >>> fpr.tolist(), tpr.tolist(), thr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0], [inf, 0.8, 0.4, 0.35, 0.1])
    """
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    return fpr, tpr, np.r_[np.inf, s[last]]


def auc(scores, labels) -> float:
    """Area under the ROC curve (trapezoidal; ties count one half).

    Equals the probability that a random member scores above a random non-member, plus half the
    probability of a tie (Mann–Whitney U / (P·N)).

    >>> auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    >>> auc([1, 1, 1, 1], [0, 1, 0, 1])
    0.5
    """
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))


def _rank_auc(s: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(s)
    p = y.sum()
    n = len(y) - p
    return float((r[y == 1].sum() - p * (p + 1) / 2) / (p * n))


def auc_bootstrap_ci(scores, labels, *, n_boot: int, alpha: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval (level 1 − alpha) of the AUC.

    Members and non-members are resampled separately (stratified), ``n_boot`` times, with a
    ``numpy.random.default_rng(seed)``; the interval is the alpha/2 and 1 − alpha/2 quantiles.

    >>> lo, hi = auc_bootstrap_ci([0, 1, 2, 3, 4, 5], [0, 0, 0, 1, 1, 1], n_boot=200, alpha=0.05, seed=0)
    >>> (lo, hi)
    (1.0, 1.0)
    """
    s, y = _check(scores, labels)
    rng = np.random.default_rng(seed)
    pos, neg = s[y == 1], s[y == 0]
    yy = np.r_[np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)]
    vals = np.empty(n_boot)
    for b in range(n_boot):
        bs = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        vals[b] = _rank_auc(bs, yy)
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


def auc_diff_bootstrap_ci(pos_a, neg_a, pos_b, neg_b, *, n_boot: int, alpha: float,
                          seed: int) -> tuple[float, float, float]:
    """AUC_a − AUC_b of two scorings of the same P positives and N negatives, and its paired
    percentile bootstrap interval (level 1 − alpha).

    ``pos_a[i]`` and ``pos_b[i]`` score the same positive (likewise the negatives): each of the
    ``n_boot`` resamples draws P positive and N negative indices with replacement (both sides
    resampled, stratified) and takes the same indices for a and b, so what the two scorings
    share cancels (DeLong et al. 1988 compare correlated AUCs the same way, analytically).
    ``numpy.random.default_rng(seed)``. Returns (difference, low, high).

    >>> d, lo, hi = auc_diff_bootstrap_ci([3, 4], [0, 1], [0, 1], [3, 4], n_boot=100, alpha=0.05,
    ...                                   seed=0)
    >>> (d, lo, hi)  # a separates perfectly, b inverts it: AUC 1 − AUC 0
    (1.0, 1.0, 1.0)
    >>> auc_diff_bootstrap_ci([1, 2], [0, 3], [1, 2], [0, 3], n_boot=50, alpha=0.05, seed=0)
    (0.0, 0.0, 0.0)
    """
    pa, na, pb, nb = (np.asarray(x, dtype=np.float64) for x in (pos_a, neg_a, pos_b, neg_b))
    if pa.shape != pb.shape or na.shape != nb.shape or not len(pa) or not len(na):
        raise ValueError("both scorings need the same, non-empty positives and negatives")
    yy = np.r_[np.ones(len(pa), np.int64), np.zeros(len(na), np.int64)]
    diff = _rank_auc(np.r_[pa, na], yy) - _rank_auc(np.r_[pb, nb], yy)
    rng = np.random.default_rng(seed)
    vals = np.empty(n_boot)
    for b in range(n_boot):
        i, j = rng.integers(0, len(pa), len(pa)), rng.integers(0, len(na), len(na))
        vals[b] = _rank_auc(np.r_[pa[i], na[j]], yy) - _rank_auc(np.r_[pb[i], nb[j]], yy)
    return (float(diff), float(np.quantile(vals, alpha / 2)),
            float(np.quantile(vals, 1 - alpha / 2)))


@dataclass(frozen=True)
class TprAtFpr:
    """TPR of the best threshold whose empirical FPR is ≤ ``fpr`` (Carlini et al. 2022).

    ``resolvable`` is False when there are fewer than 1/fpr non-members: then the smallest non-zero
    FPR the data can show is above ``fpr`` and only FPR = 0 fits; the value is reported as
    "not resolvable" rather than a misleading number. The interval is Clopper–Pearson on
    ``tp`` of ``n_pos``.
    """

    fpr: float
    resolvable: bool
    tpr: float | None
    tp: int
    n_pos: int
    fp: int
    n_neg: int
    ci_low: float | None
    ci_high: float | None
    threshold: float | None
    alpha: float

    def to_dict(self) -> dict:
        return {"fpr": self.fpr, "resolvable": self.resolvable, "tpr": self.tpr, "tp": self.tp,
                "n_pos": self.n_pos, "fp": self.fp, "n_neg": self.n_neg, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "threshold": self.threshold, "ci_level": 1 - self.alpha}

    def label(self) -> str:
        if not self.resolvable:
            return "not resolvable"
        return f"{100 * self.tpr:.2f}% [{100 * self.ci_low:.2f}, {100 * self.ci_high:.2f}]"


def tpr_at_fpr(scores, labels, fpr: float, *, alpha: float) -> TprAtFpr:
    """TPR at empirical FPR ≤ ``fpr`` with a two-sided Clopper–Pearson interval at level 1 − alpha.

    >>> r = tpr_at_fpr([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 0, 0, 0, 0, 1, 1, 0, 1, 1], 0.2, alpha=0.05)
    >>> r.resolvable, r.tpr, r.fp, r.n_neg
    (True, 1.0, 1, 6)
    >>> tpr_at_fpr([0, 1, 2, 3], [0, 0, 1, 1], 0.01, alpha=0.05).resolvable
    False
    """
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    s, y = _check(scores, labels)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    fprs, tprs, thr = roc_curve(s, y)
    if n_neg < math.ceil(1 / fpr - 1e-9):
        return TprAtFpr(fpr, False, None, 0, n_pos, 0, n_neg, None, None, None, alpha)
    ok = np.flatnonzero(fprs <= fpr + 1e-12)
    i = ok[np.argmax(tprs[ok])]
    tp = int(round(tprs[i] * n_pos))
    fp = int(round(fprs[i] * n_neg))
    lo, hi = clopper_pearson(tp, n_pos, alpha=alpha)
    return TprAtFpr(fpr, True, tp / n_pos, tp, n_pos, fp, n_neg, lo, hi,
                    float(thr[i]) if np.isfinite(thr[i]) else None, alpha)


def membership_advantage(scores, labels) -> float:
    """max over thresholds of TPR − FPR (Yeom et al. 2018), i.e. 2·(best balanced accuracy) − 1.

    >>> membership_advantage([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.5
    """
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.max(tpr - fpr))


def epsilon_lower_bound_counts(tp: int, n_pos: int, fp: int, n_neg: int, *, alpha: float,
                               delta: float = 0.0) -> float:
    """ε lower bound of one threshold test from its counts (Jagielski et al. 2020, Clopper–Pearson).

    With one-sided-at-α/2 bounds TPR_lo = B(α/2; tp, n_pos−tp+1) and FPR_hi = B(1−α/2; fp+1, n_neg−fp)
    (the ends of the two-sided Clopper–Pearson intervals, as TF Privacy's ``epsilon_lower_bound``
    uses them), any (ε, δ)-DP mechanism must satisfy TPR ≤ e^ε·FPR + δ, so
    ε ≥ log((TPR_lo − δ) / FPR_hi). The same bound is taken for the complementary test,
    (1 − FPR)_lo / (1 − TPR)_hi. Returns 0 when no bound is positive.

    Golden value (TF Privacy's audit test: 500 runs, perfectly separated, α = 0.01):

    >>> round(epsilon_lower_bound_counts(500, 500, 0, 500, alpha=0.01), 7)
    4.5419158
    """
    def cp_low(k, n):
        return 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))

    def cp_high(k, n):
        return 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))

    best = 0.0
    for num, den in ((cp_low(tp, n_pos) - delta, cp_high(fp, n_neg)),
                     (cp_low(n_neg - fp, n_neg) - delta, cp_high(n_pos - tp, n_pos))):
        if num > 0 and den > 0:
            best = max(best, math.log(num / den))
    return best


def epsilon_lower_bound(scores, labels, *, alpha: float, delta: float = 0.0) -> float:
    """Largest Clopper–Pearson ε lower bound over every threshold of the ROC (Jagielski et al. 2020).

    Note: maximizing over thresholds on the same data makes the bound optimistic; for a
    certified statement choose the threshold on held-out data and bound on the rest.

    >>> round(epsilon_lower_bound(np.r_[np.ones(500), np.zeros(500)], np.r_[np.ones(500), np.zeros(500)], alpha=0.01), 7)
    4.5419158
    """
    s, y = _check(scores, labels)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    fpr, tpr, _ = roc_curve(s, y)
    tp = np.rint(tpr[1:] * n_pos).astype(np.int64)
    fp = np.rint(fpr[1:] * n_neg).astype(np.int64)

    def cp_low(k, n):
        with np.errstate(all="ignore"):
            v = beta.ppf(alpha / 2, np.maximum(k, 1), n - k + 1)
        return np.where(k == 0, 0.0, v)

    def cp_high(k, n):
        with np.errstate(all="ignore"):
            v = beta.ppf(1 - alpha / 2, k + 1, np.maximum(n - k, 1))
        return np.where(k == n, 1.0, v)

    best = 0.0
    for num, den in ((cp_low(tp, n_pos) - delta, cp_high(fp, n_neg)),
                     (cp_low(n_neg - fp, n_neg) - delta, cp_high(n_pos - tp, n_pos))):
        ok = (num > 0) & (den > 0)
        if ok.any():
            best = max(best, float(np.max(np.log(num[ok] / den[ok]))))
    return best


@dataclass
class MembershipMetrics:
    """Everything one membership evaluation reports: the ROC, AUC with a bootstrap CI, TPR at the
    standard low FPRs with Clopper–Pearson intervals, the advantage and an ε lower bound."""

    n_members: int
    n_nonmembers: int
    auc: float
    auc_ci: tuple[float, float]
    tpr_at: list[TprAtFpr]
    advantage: float
    epsilon_lb: float
    alpha: float
    roc: tuple[np.ndarray, np.ndarray] = field(repr=False, default=None)  # (fpr, tpr), thinned
    #: members and non-members were assigned at random (canaries, a randomized lab split): only
    #: then is ``epsilon_lb`` a lower bound on the ε of a DP guarantee (Jagielski et al. 2020).
    randomized_split: bool = False

    @property
    def epsilon_lb_kind(self) -> str:
        """``"dp_lower_bound"`` for randomized splits, else ``"roc_statistic_not_dp"``."""
        return "dp_lower_bound" if self.randomized_split else "roc_statistic_not_dp"

    def tpr(self, fpr: float) -> TprAtFpr:
        for r in self.tpr_at:
            if abs(r.fpr - fpr) < 1e-15:
                return r
        raise KeyError(f"no TPR at FPR {fpr} was computed; have {[r.fpr for r in self.tpr_at]}")

    def to_dict(self) -> dict:
        fpr, tpr = self.roc
        return {"n_members": self.n_members, "n_nonmembers": self.n_nonmembers, "auc": self.auc,
                "auc_ci": list(self.auc_ci), "tpr_at_fpr": [r.to_dict() for r in self.tpr_at],
                "advantage": self.advantage, "epsilon_lb": self.epsilon_lb,
                "epsilon_lb_kind": self.epsilon_lb_kind, "alpha": self.alpha,
                "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}}


def thin_roc(fpr: np.ndarray, tpr: np.ndarray, *, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` ROC points, evenly spaced in log(FPR), keeping the first and last
    point and the upper envelope (so the plotted curve is never above the true one)."""
    if len(fpr) <= max_points:
        return fpr, tpr
    grid = np.r_[0.0, np.logspace(np.log10(max(fpr[fpr > 0].min(), 1e-6)), 0, max_points - 1)]
    idx = np.searchsorted(fpr, grid, side="right") - 1
    idx = np.unique(np.clip(idx, 0, len(fpr) - 1))
    return fpr[idx], tpr[idx]


def evaluate_membership(scores, labels, *, fprs=DEFAULT_FPRS, alpha: float = 0.05,
                        n_boot: int = 1000, seed: int = 0, max_roc_points: int = 400,
                        randomized_split: bool = False) -> MembershipMetrics:
    """All membership metrics of one score vector (higher = member) against 0/1 labels.
    ``randomized_split`` says whether membership was assigned at random (see
    :attr:`MembershipMetrics.randomized_split`)."""
    s, y = _check(scores, labels)
    fpr, tpr, _ = roc_curve(s, y)
    return MembershipMetrics(
        n_members=int(y.sum()), n_nonmembers=int(len(y) - y.sum()), auc=auc(s, y),
        auc_ci=auc_bootstrap_ci(s, y, n_boot=n_boot, alpha=alpha, seed=seed),
        tpr_at=[tpr_at_fpr(s, y, f, alpha=alpha) for f in fprs],
        advantage=membership_advantage(s, y), epsilon_lb=epsilon_lower_bound(s, y, alpha=alpha),
        alpha=alpha, roc=thin_roc(fpr, tpr, max_points=max_roc_points),
        randomized_split=bool(randomized_split))
