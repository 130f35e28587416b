"""Medians with bootstrap intervals, and ratios between models with intervals: the interval
methods that edgemoe.estimates (and the node breakdown) use; nothing else computes one
(percentile bootstrap, order statistics, Hodges-Lehmann with the signed-rank interval).

Percentile bootstrap with a fixed seed, so a table rebuilt from the same runs is identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

N_BOOT = 4000
SEED = 20250103


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float
    n: int

    def fmt(self, digits: int = 1) -> str:
        if np.isnan(self.value):
            return "–"
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


NAN = Estimate(float("nan"), float("nan"), float("nan"), 0)


def median_ci(values, conf: float = 0.95, n_boot: int = N_BOOT, seed: int = SEED) -> Estimate:
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if x.size == 0:
        return NAN
    lo, hi = bootstrap_ci(x, np.median, n_boot=n_boot, ci=conf, seed=seed)
    return Estimate(float(np.median(x)), lo, hi, int(x.size))


def bootstrap_ci(
    values: Iterable[float],
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 10000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over ``values`` (resampled with replacement)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return (float("nan"), float("nan"))
    if v.size == 1:
        return (float(v[0]), float(v[0]))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    if stat is np.mean:
        boots = v[idx].mean(axis=1)
    elif stat is np.median:
        boots = np.median(v[idx], axis=1)
    else:
        boots = np.array([stat(v[i]) for i in idx])
    a = (1.0 - ci) / 2.0
    lo, hi = np.quantile(boots, [a, 1.0 - a])
    return float(lo), float(hi)


def median_ci_exact(values, conf: float = 0.95) -> Estimate:
    """The median with a distribution-free interval from order statistics: [x_(k), x_(n+1-k)] with
    the largest k whose binomial(n, 1/2) tail is <= (1-conf)/2, so coverage is at least `conf`
    whatever the distribution. Too few values for that (n < 6 at 95%) give (-inf, inf): the rounds'
    stopping rule cannot be met by three lucky rounds, as a bootstrap of three values would allow."""
    from math import comb

    x = np.sort(np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float))
    n = x.size
    if n == 0:
        return NAN
    med = float(np.median(x))
    alpha, k, tail = (1 - conf) / 2, 0, 0.0
    while k < n // 2:
        tail += comb(n, k) / 2**n  # P(Binomial(n, 1/2) <= k)
        if tail > alpha:
            break
        k += 1
    if k == 0:
        return Estimate(med, float("-inf"), float("inf"), int(n))
    return Estimate(med, float(x[k - 1]), float(x[n - k]), int(n))


def _signed_rank_cdf(n: int) -> np.ndarray:
    """P(T+ <= t), t = 0..n(n+1)/2, of the Wilcoxon signed-rank statistic of n values (exact: the
    distribution of the sum of a random subset of 1..n, built one rank at a time)."""
    p = np.zeros(n * (n + 1) // 2 + 1)
    p[0] = 1.0
    for r in range(1, n + 1):
        p[r:] = (p[r:] + p[:-r]) / 2
        p[:r] /= 2
    return np.cumsum(p)


def signed_rank_ci(values, conf: float = 0.95) -> Estimate:
    """The Hodges-Lehmann estimate (the median of the n(n+1)/2 Walsh averages (x_i + x_j) / 2, i <= j)
    of positive values on the log scale, with the exact Wilcoxon signed-rank interval
    [W_(c), W_(M+1-c)] (c the largest with 2 P(T+ <= c-1) <= 1-conf): coverage `conf` for any
    distribution symmetric on the log scale, and about 95% of the t interval's efficiency for normal
    noise where the order-statistic interval has 64%. n < 6 at 95% gives (-inf, inf)."""
    x = np.log(np.asarray([v for v in values if v is not None and np.isfinite(v) and v > 0], dtype=float))
    n = x.size
    if n == 0:
        return NAN
    i, j = np.triu_indices(n)
    w = np.sort((x[i] + x[j]) / 2)
    value = float(np.exp(np.median(w)))
    cdf = _signed_rank_cdf(n)
    c = int(np.searchsorted(cdf, (1 - conf) / 2 + 1e-12, side="right"))  # count of t with P(T+ <= t) <= alpha/2
    if c == 0:
        return Estimate(value, float("-inf"), float("inf"), int(n))
    return Estimate(value, float(np.exp(w[c - 1])), float(np.exp(w[w.size - c])), int(n))


def ratio_ci(a, b, conf: float = 0.95, n_boot: int = N_BOOT, seed: int = SEED) -> Estimate:
    """median(a) / median(b), each resampled independently over its repetitions."""
    xa = np.asarray([v for v in a if v is not None and np.isfinite(v)], dtype=float)
    xb = np.asarray([v for v in b if v is not None and np.isfinite(v)], dtype=float)
    if xa.size == 0 or xb.size == 0:
        return NAN
    value = float(np.median(xa) / np.median(xb))
    rng = np.random.default_rng(seed)
    ba = np.median(rng.choice(xa, size=(n_boot, xa.size), replace=True), axis=1)
    bb = np.median(rng.choice(xb, size=(n_boot, xb.size), replace=True), axis=1)
    r = ba / bb
    q = (1 - conf) / 2
    return Estimate(value, float(np.quantile(r, q)), float(np.quantile(r, 1 - q)), int(min(xa.size, xb.size)))
