import numpy as np

from edgemoe.stats import median_ci, median_ci_exact, ratio_ci, signed_rank_ci


def test_median_interval_brackets_the_median_and_is_reproducible():
    x = np.random.default_rng(1).normal(100, 5, 30)
    e = median_ci(x)
    assert e.lo < e.value < e.hi and e.value == np.median(x)
    assert median_ci(x) == e


def test_interval_narrows_with_more_repetitions():
    rng = np.random.default_rng(2)
    few, many = median_ci(rng.normal(100, 10, 5)), median_ci(rng.normal(100, 10, 200))
    assert (many.hi - many.lo) < (few.hi - few.lo)


def test_ratio_of_known_speeds():
    rng = np.random.default_rng(3)
    r = ratio_ci(rng.normal(90, 1, 50), rng.normal(100, 1, 50))
    assert 0.88 < r.lo < r.value < r.hi < 0.92


def test_missing_values_give_nan_not_zero():
    assert np.isnan(median_ci([]).value) and np.isnan(ratio_ci([1.0], []).value)


def test_exact_median_interval_is_distribution_free_order_statistics():
    import math

    from edgemoe.stats import median_ci_exact

    assert median_ci_exact([3, 1, 2, 5, 4]).lo == -math.inf  # 5 values: P(all on one side) = 1/16 > 5%
    e = median_ci_exact([6, 1, 5, 2, 4, 3])
    assert (e.value, e.lo, e.hi, e.n) == (3.5, 1, 6, 6)  # 6 values: [min, max], coverage 1 - 2/64
    e = median_ci_exact(range(1, 11))
    assert (e.lo, e.hi) == (2, 9)  # 10 values: P(Binom(10, 1/2) <= 1) = 11/1024 <= 2.5% < 56/1024
    rng = np.random.default_rng(0)  # coverage at least 95% on a skewed distribution
    hits = [(e := median_ci_exact(rng.lognormal(0, 1, 12))).lo <= 1 <= e.hi for _ in range(2000)]
    assert np.mean(hits) >= 0.95


def test_signed_rank_distribution_is_exact():
    from itertools import combinations

    from edgemoe.stats import _signed_rank_cdf

    n = 7
    sums = np.array([sum(c) for k in range(n + 1) for c in combinations(range(1, n + 1), k)])
    assert np.allclose(_signed_rank_cdf(n), [np.mean(sums <= t) for t in range(n * (n + 1) // 2 + 1)])


def test_signed_rank_interval_is_the_hodges_lehmann_estimate_with_walsh_bounds():
    x = [1.0, 1.02, 0.98, 1.05, 0.97, 1.01]
    e = signed_rank_ci(x)
    assert (e.lo, e.hi, e.n) == (0.97, 1.05, 6)  # n = 6: P(T+ = 0) = 1/64 <= 0.025, the extreme Walsh averages
    logs = np.log(x)
    walsh = [(a + b) / 2 for i, a in enumerate(logs) for b in logs[i:]]
    assert e.value == np.exp(np.median(walsh))
    assert np.isinf(signed_rank_ci(x[:5]).lo)  # five rounds bound no 95% interval


def test_signed_rank_covers_and_is_narrower_than_order_statistics_for_normal_noise():
    rng = np.random.default_rng(2)
    cover = {"sr": 0, "os": 0}
    width = {"sr": 0.0, "os": 0.0}
    for _ in range(1000):
        v = np.exp(rng.normal(0, 0.04, 10))
        for name, e in (("sr", signed_rank_ci(v)), ("os", median_ci_exact(v))):
            cover[name] += e.lo <= 1 <= e.hi
            width[name] += e.hi - e.lo
    assert 0.93 <= cover["sr"] / 1000 <= 0.97
    assert width["sr"] < 0.8 * width["os"]
