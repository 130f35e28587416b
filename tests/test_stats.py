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
