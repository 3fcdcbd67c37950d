"""Rates with exact intervals. numpy/scipy only (this layer never imports torch)."""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import beta


@dataclass(frozen=True)
class Rate:
    """k successes out of n with a two-sided Clopper–Pearson interval at level 1 - alpha."""

    k: int
    n: int
    low: float
    high: float
    alpha: float = 0.05

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    def to_dict(self) -> dict:
        return {"k": self.k, "n": self.n, "value": self.value, "ci_low": self.low,
                "ci_high": self.high, "ci_level": 1 - self.alpha}


def clopper_pearson(k: int, n: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper–Pearson 1934) two-sided interval for a binomial proportion.

    low = B(alpha/2; k, n-k+1), high = B(1-alpha/2; k+1, n-k), where B(q; a, b) is the q-quantile
    of the Beta(a, b) distribution; low = 0 when k = 0 and high = 1 when k = n.

    >>> [round(x, 4) for x in clopper_pearson(5, 10)]
    [0.1871, 0.8129]
    >>> clopper_pearson(0, 10)[0], round(clopper_pearson(0, 10)[1], 4)
    (0.0, 0.3085)
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def rate(k: int, n: int, *, alpha: float = 0.05) -> Rate:
    low, high = clopper_pearson(k, n, alpha=alpha)
    return Rate(k=int(k), n=int(n), low=low, high=high, alpha=alpha)
