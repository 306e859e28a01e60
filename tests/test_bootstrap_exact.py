"""The fast bootstrap (image counts, sorted once) gives the reference bootstrap's numbers to the bit.

The reference below is the former implementation: ``scipy.stats.bootstrap`` on the scores
themselves with the rank-based statistics ``auroc_vec`` / ``fpr95_vec`` on every resample.
"""
import numpy as np
import pytest
from scipy.stats import bootstrap

from ood_bench.reporting.bootstrap import (CONFIDENCE, auroc_vec, confidence_intervals, fpr95_vec,
                                           paired_p_values)

REFERENCE = {"auroc": auroc_vec, "fpr95": fpr95_vec}


def _as_2d(x):
    x = np.asarray(x, dtype=np.float64)
    return x[None] if x.ndim == 1 else x


def _reference_bootstrap(data, stat, n_resamples, seed):
    return bootstrap(data, stat, n_resamples=n_resamples, confidence_level=CONFIDENCE, method="percentile",
                     vectorized=True, paired=False, axis=-1, rng=np.random.default_rng(seed))


def reference_intervals(id_scores, ood_scores, metrics, n_resamples, seed):
    def stat(i, o, axis=-1):
        return np.stack([REFERENCE[m](i, o, axis=axis).mean(axis=0) for m in metrics])

    ci = _reference_bootstrap((_as_2d(id_scores), _as_2d(ood_scores)), stat, n_resamples, seed).confidence_interval
    return {m: (float(ci.low[k]), float(ci.high[k])) for k, m in enumerate(metrics)}


def reference_p_values(id_a, ood_a, id_b, ood_b, metrics, n_resamples, seed):
    ida, oda, idb, odb = map(_as_2d, (id_a, ood_a, id_b, ood_b))
    sign = np.array([1.0 if m == "auroc" else -1.0 for m in metrics])

    def diff(i, o, axis=-1):
        out = []
        for m, sg in zip(metrics, sign):
            v = REFERENCE[m](i, o, axis=axis).mean(axis=1)
            out.append(sg * (v[0] - v[1]))
        return np.stack(out)

    d = _reference_bootstrap((np.stack([ida, idb]), np.stack([oda, odb])), diff, n_resamples, seed)
    d = d.bootstrap_distribution
    return {m: float(np.mean(d[k] < 0) + 0.5 * np.mean(d[k] == 0)) for k, m in enumerate(metrics)}


def _bits(x: float) -> bytes:
    return np.float64(x).tobytes()


def _scores(rng, seeds, n, shift, decimals):
    """Scores rounded to ``decimals`` (few decimals: many ties, within and across ID/OOD)."""
    x = np.round(rng.normal(shift, 1, (max(seeds, 1), n)), decimals)
    return x[0] if seeds == 0 else x


CASES = [  # (seeds (0 = 1-D scores), n_id, n_ood, decimals)
    (0, 37, 53, 1), (0, 276, 300, 6), (1, 20, 19, 0), (2, 64, 41, 1), (3, 90, 120, 2), (5, 33, 28, 1), (8, 30, 22, 1),
    (9, 25, 30, 1), (17, 21, 26, 1),
]


@pytest.mark.parametrize("seeds,n_id,n_ood,decimals", CASES)
@pytest.mark.parametrize("boot_seed", [0, 7])
def test_intervals_bit_identical_to_the_reference(seeds, n_id, n_ood, decimals, boot_seed):
    rng = np.random.default_rng(1000 * seeds + n_id + boot_seed)
    ids, oods = _scores(rng, seeds, n_id, 0.0, decimals), _scores(rng, seeds, n_ood, 0.6, decimals)
    for metrics in (("auroc", "fpr95"), ("fpr95",)):
        new = confidence_intervals(ids, oods, metrics, n_resamples=300, seed=boot_seed)
        ref = reference_intervals(ids, oods, metrics, n_resamples=300, seed=boot_seed)
        for m in metrics:
            assert (_bits(new[m].low), _bits(new[m].high)) == (_bits(ref[m][0]), _bits(ref[m][1])), m


@pytest.mark.parametrize("seeds,n_id,n_ood,decimals", CASES)
@pytest.mark.parametrize("boot_seed", [0, 3])
def test_paired_p_values_bit_identical_to_the_reference(seeds, n_id, n_ood, decimals, boot_seed):
    rng = np.random.default_rng(7 + 1000 * seeds + n_ood + boot_seed)
    id_a, ood_a = _scores(rng, seeds, n_id, 0.0, decimals), _scores(rng, seeds, n_ood, 0.5, decimals)
    # B: A's scores slightly perturbed (close race, many resamples with ties in the difference)
    id_b = id_a + np.round(rng.normal(0, 0.3, id_a.shape), decimals)
    ood_b = ood_a + np.round(rng.normal(0, 0.3, ood_a.shape), decimals)
    new = paired_p_values(id_a, ood_a, id_b, ood_b, n_resamples=300, seed=boot_seed)
    ref = reference_p_values(id_a, ood_a, id_b, ood_b, ("auroc", "fpr95"), n_resamples=300, seed=boot_seed)
    assert {m: _bits(v) for m, v in new.items()} == {m: _bits(v) for m, v in ref.items()}
    same = paired_p_values(id_a, ood_a, id_a, ood_a, n_resamples=300, seed=boot_seed)
    assert same == reference_p_values(id_a, ood_a, id_a, ood_a, ("auroc", "fpr95"), 300, boot_seed)


def test_one_seed_broadcasts_against_several_like_the_reference():
    rng = np.random.default_rng(11)
    ids, oods = _scores(rng, 1, 40, 0.0, 1), _scores(rng, 3, 50, 0.5, 1)
    new = confidence_intervals(ids, oods, n_resamples=200, seed=2)
    ref = reference_intervals(ids, oods, ("auroc", "fpr95"), 200, 2)
    assert {m: (_bits(v.low), _bits(v.high)) for m, v in new.items()} == \
        {m: (_bits(lo), _bits(hi)) for m, (lo, hi) in ref.items()}


def test_infinite_scores_match_and_nan_is_refused():
    rng = np.random.default_rng(5)
    ids, oods = _scores(rng, 0, 30, 0.0, 1), _scores(rng, 0, 30, 0.5, 1)
    ids[3], oods[[1, 2]] = -np.inf, np.inf
    new = confidence_intervals(ids, oods, n_resamples=200)
    ref = reference_intervals(ids, oods, ("auroc", "fpr95"), 200, 0)
    assert {m: (v.low, v.high) for m, v in new.items()} == ref
    ids[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        confidence_intervals(ids, oods, n_resamples=200)
