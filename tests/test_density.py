"""The post-hoc density module: GMM grid search, KDE, kNN (CPU, tiny)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ood_bench.methods.density import (GMMDensity, KDEDensity, KNNDensity, load_densities, save_densities)
from ood_bench.utils.errors import ConfigError, NonFiniteScoresError


def mixture(n: int, seed: int = 0) -> np.ndarray:
    """Three well-separated isotropic 2-D clusters (unit variance, centres 8 apart)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    return centres[rng.integers(0, 3, n)] + rng.standard_normal((n, 2))


def test_gmm_grid_picks_the_true_component_count_and_is_reproducible():
    f = mixture(600)
    a = GMMDensity(components=(1, 2, 3, 4), covariances=("full",), cv_folds=5, seed=0).fit(f)
    assert a.report()["components"] == 3
    assert [r["components"] for r in a.report()["cv"]] == [1, 2, 3, 4]
    b = GMMDensity(components=(1, 2, 3, 4), covariances=("full",), cv_folds=5, seed=0).fit(f)
    q = mixture(50, seed=1)
    assert np.array_equal(a.score(q), b.score(q))  # bit-identical


def test_gmm_picks_two_components_on_bimodal_data_with_the_covariance_grid():
    rng = np.random.default_rng(3)
    f = np.concatenate([rng.normal(-4, 1, (300, 3)), rng.normal(4, 1, (300, 3))])
    d = GMMDensity(components=(1, 2), covariances=("full", "diag", "spherical"), cv_folds=4, shuffle=True, seed=1).fit(f)
    assert d.report()["components"] == 2
    assert len(d.report()["cv"]) == 6


def test_gmm_nll_is_a_density_of_the_raw_features():
    """The standardisation's Jacobian is added back: a 1-component GMM on N(m, s²) data scores
    x by the Gaussian NLL of the raw value."""
    rng = np.random.default_rng(0)
    f = rng.normal(3.0, 2.0, (4000, 1))
    d = GMMDensity(components=(1,), seed=0).fit(f)
    x = np.array([[3.0], [7.0]])
    m, s = f.mean(), f.std()
    expected = 0.5 * np.log(2 * np.pi * s**2) + (x[:, 0] - m) ** 2 / (2 * s**2)
    assert np.allclose(d.score(x), expected, rtol=1e-4)


@pytest.mark.parametrize("make", [
    lambda: GMMDensity(components=(2, 3), cv_folds=3, seed=0),
    lambda: KDEDensity(bandwidth=0.0, cv_folds=3, seed=0),
    lambda: KDEDensity(bandwidth=1.0),
    lambda: KNNDensity(k=5),
    lambda: KNNDensity(k=3, standardize=True),
])
def test_off_distribution_points_score_higher_and_state_round_trips(make, tmp_path):
    f = mixture(300)
    d = make().fit(f)
    rng = np.random.default_rng(5)
    id_test = mixture(200, seed=2)
    far = rng.uniform(-6, 14, (200, 2))
    far = far[np.abs(far[:, None, :] - np.array([[0, 0], [8, 0], [0, 8]])[None]).max(-1).min(-1) > 3]
    s_id, s_far = d.score(id_test), d.score(far)
    y = np.r_[np.zeros(len(s_id)), np.ones(len(s_far))]
    assert roc_auc_score(y, np.r_[s_id, s_far]) > 0.95
    save_densities({"a": d}, tmp_path)
    with np.load(tmp_path / "density.npz", allow_pickle=False) as z:  # plain arrays only
        assert all(z[k].dtype != object for k in z.files)
    back = load_densities(tmp_path)["a"]
    assert type(back) is type(d) and back.report() == d.report()
    assert np.array_equal(back.score(far), s_far)


def test_kde_cv_bandwidth_is_reproducible_and_sensible():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((400, 1))
    a = KDEDensity(bandwidth=0.0, cv_folds=5, seed=0).fit(f)
    b = KDEDensity(bandwidth=0.0, cv_folds=5, seed=0).fit(f)
    assert a.report()["bandwidth"] == b.report()["bandwidth"]
    assert 0.1 < a.report()["bandwidth"] < 1.0  # Silverman for N(0,1), n=400: 0.32
    assert len(a.report()["cv"]) == 7


def test_knn_returns_the_kth_neighbour_distance():
    f = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [6.0, 0.0], [10.0, 0.0], [15.0, 0.0]])
    d = KNNDensity(k=5).fit(f)
    # from (0, 0): neighbours at 0, 1, 3, 6, 10 → 5th is 10; from (0, 4): 4, √17, 5, √52, √116
    assert np.allclose(d.score(np.array([[0.0, 0.0], [0.0, 4.0]])), [10.0, np.sqrt(116.0)])


def test_bad_input_is_refused_with_a_clear_message():
    f = mixture(100)
    nan = f.copy()
    nan[7, 1] = np.nan
    for d in (GMMDensity(components=(2, 3), cv_folds=5), KDEDensity(bandwidth=1.0), KNNDensity()):
        with pytest.raises(NonFiniteScoresError, match="1 of 100 feature vectors contain NaN.*row 7"):
            d.fit(nan)
    with pytest.raises(ConfigError, match="too few for 10-fold"):
        GMMDensity(components=(1, 2), cv_folds=10).fit(f[:6])
    with pytest.raises(ConfigError, match="fewer than the 20 needed"):
        GMMDensity(components=(2, 20), cv_folds=10).fit(f[:20])
    with pytest.raises(ConfigError, match="fewer than k = 5"):
        KNNDensity(k=5).fit(f[:3])
    with pytest.raises(ConfigError, match="covariances must be among"):
        GMMDensity(covariances=("banana",))
    d = KNNDensity().fit(f)
    with pytest.raises(ConfigError, match="3 dimensions, the density was fitted on 2"):
        d.score(np.zeros((4, 3)))
    with pytest.raises(NonFiniteScoresError):
        d.score(np.full((2, 2), np.inf))
