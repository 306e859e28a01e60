"""Bootstrap intervals and the paired test."""
import numpy as np
import pytest

from ood_bench.reporting.bootstrap import auroc_vec, confidence_intervals, fpr95_vec, paired_p_values
from ood_bench.reporting.metrics import auroc, fpr95


def test_vectorised_statistics_equal_the_sklearn_metrics():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = np.round(rng.normal(0, 1, rng.integers(5, 60)), 1)  # rounding makes ties
        b = np.round(rng.normal(0.7, 1, rng.integers(5, 60)), 1)
        assert auroc_vec(a, b) == pytest.approx(auroc(a, b))
        assert fpr95_vec(a, b) == pytest.approx(fpr95(a, b))
    batch = auroc_vec(np.stack([a, a + 1]), np.stack([b, b]))
    assert batch == pytest.approx([auroc(a, b), auroc(a + 1, b)])


def _sample(n, rng):
    return rng.normal(0, 1, n), rng.normal(1.0, 1, n)


def test_interval_contains_the_point_estimate_and_shrinks_with_more_samples():
    rng = np.random.default_rng(1)
    widths = []
    for n in (40, 400, 4000):
        a, b = _sample(n, rng)
        ci = confidence_intervals(a, b, n_resamples=500)
        assert ci["auroc"].low <= auroc(a, b) <= ci["auroc"].high
        assert ci["fpr95"].low <= fpr95(a, b) <= ci["fpr95"].high
        widths.append(ci["auroc"].high - ci["auroc"].low)
    assert widths[0] > widths[1] > widths[2] > 0


def test_seed_axis_gives_the_interval_of_the_seed_mean():
    rng = np.random.default_rng(2)
    a, b = _sample(200, rng)
    ids, oods = np.stack([a, a + 0.2]), np.stack([b, b])
    ci = confidence_intervals(ids, oods, n_resamples=500)
    mean = (auroc(a, b) + auroc(a + 0.2, b)) / 2
    assert ci["auroc"].low <= mean <= ci["auroc"].high


def test_paired_p_is_one_half_for_identical_scores_and_small_for_a_clear_winner():
    rng = np.random.default_rng(3)
    a, b = _sample(150, rng)
    same = paired_p_values(a, b, a, b, n_resamples=500)
    assert same == {"auroc": 0.5, "fpr95": 0.5}
    better = paired_p_values(a, b + 1.5, a, b, n_resamples=500)   # A separates far better
    assert better["auroc"] < 0.05 and better["fpr95"] < 0.05
    worse = paired_p_values(a, b, a, b + 1.5, n_resamples=500)
    assert worse["auroc"] > 0.95
    with pytest.raises(ValueError, match="same images"):
        paired_p_values(a, b, a[:-1], b)


def test_zero_resamples_means_no_bootstrap():
    a, b = np.arange(10.0), np.arange(10.0) + 5
    ci = confidence_intervals(a, b, n_resamples=0)
    assert np.isnan(ci["auroc"].low) and np.isnan(ci["fpr95"].high)
    assert all(np.isnan(v) for v in paired_p_values(a, b, a, b, n_resamples=0).values())
