import numpy as np

from edgemoe.stats import median_ci, ratio_ci


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
