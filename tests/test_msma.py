"""MSMA: noise levels, features (analytic Gaussian with the exact ε-predictor), densities."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ood_bench.methods.density import GMMDensity, KNNDensity
from ood_bench.methods.msma.levels import eps_norms, msma_timesteps, paper_sigmas
from ood_bench.methods.unet import ddpm_scheduler

ACP = ddpm_scheduler().alphas_cumprod.double()  # linear 1e-4..0.02, T = 1000


def gaussian_eps(mu: torch.Tensor, s2: torch.Tensor, acp: torch.Tensor = ACP):
    """The exact ε-predictor of data N(μ, diag s²): √(1−ᾱ)(x_t − √ᾱ μ)/(ᾱ s² + 1 − ᾱ)."""
    def eps(x_t, t):
        a = acp.to(x_t.device)[t].view(-1, 1, 1, 1).to(x_t.dtype)
        return (1 - a).sqrt() * (x_t - a.sqrt() * mu) / (a * s2 + 1 - a)
    return eps


def test_timesteps_of_the_linear_schedule():
    sig = paper_sigmas(10, 1.0, 0.01)
    assert np.allclose(sig[[0, -1]], [1.0, 0.01]) and np.allclose(sig[1:] / sig[:-1], sig[1] / sig[0])
    assert msma_timesteps(ACP, sig, 2.0) == [396, 293, 199, 125, 75, 43, 24, 13, 6, 2]
    assert msma_timesteps(ACP.float(), sig, 2.0) == [396, 293, 199, 125, 75, 43, 24, 13, 6, 2]
    assert msma_timesteps(ACP, sig, 1.0) == [258, 170, 105, 62, 35, 19, 10, 4, 1, 0]
    warned = []
    ts = msma_timesteps(ACP, paper_sigmas(3, 200.0, 1e-4), 2.0, warn=warned.append)
    assert ts[0] == 999 and ts[-1] == 0 and any("exceeds" in w for w in warned)
    warned.clear()
    msma_timesteps(ACP, paper_sigmas(4, 0.004, 0.001), 1.0, warn=warned.append)
    assert any("share" in w for w in warned)


def test_features_equal_the_closed_form_for_gaussian_data():
    g = torch.Generator().manual_seed(0)
    shape = (3, 4, 4)
    mu = torch.rand(shape, generator=g, dtype=torch.float64) - 0.5
    s2 = (0.2 + torch.rand(shape, generator=g, dtype=torch.float64)) ** 2
    x = mu + s2.sqrt() * torch.randn((5, *shape), generator=g, dtype=torch.float64)
    ts = msma_timesteps(ACP, paper_sigmas(10, 1.0, 0.01))
    r = eps_norms(gaussian_eps(mu, s2), x, ACP, ts)
    for i, t in enumerate(ts):
        sig = math.sqrt((1 - ACP[t].item()) / ACP[t].item())
        expected = sig * ((x - mu) / (s2 + sig**2)).flatten(1).norm(dim=1)
        assert torch.allclose(r[:, i], expected, rtol=1e-5)


def test_expected_norms_of_isotropic_gaussian_data():
    """E r = √(ᾱ(1−ᾱ))·s·E[χ_D]/(ᾱ s² + 1 − ᾱ); E r² = ᾱ(1−ᾱ)·D·s²/(ᾱ s² + 1 − ᾱ)²."""
    g = torch.Generator().manual_seed(1)
    shape, s, n = (3, 4, 4), 0.5, 20000
    dim = math.prod(shape)
    mu = torch.full(shape, 0.1, dtype=torch.float64)
    x = mu + s * torch.randn((n, *shape), generator=g, dtype=torch.float64)
    ts = [396, 125, 13, 2]
    r = eps_norms(gaussian_eps(mu, torch.full(shape, s**2, dtype=torch.float64)), x, ACP, ts)
    e_chi = math.sqrt(2) * math.exp(math.lgamma((dim + 1) / 2) - math.lgamma(dim / 2))
    for i, t in enumerate(ts):
        a = ACP[t].item()
        den = a * s**2 + 1 - a
        assert r[:, i].mean().item() == pytest.approx(math.sqrt(a * (1 - a)) * s * e_chi / den, rel=3e-3)
        assert r[:, i].pow(2).mean().item() == pytest.approx(a * (1 - a) * dim * s**2 / den**2, rel=5e-3)


def test_network_sees_the_scaled_clean_image_at_the_chosen_steps():
    calls = []

    def recording(x_in, t):
        calls.append((x_in.clone(), t.clone()))
        return torch.ones_like(x_in)

    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ts = [396, 43, 2]
    r = eps_norms(recording, x, ACP, ts)
    assert [int(t[0]) for _, t in calls] == ts and all((t == t[0]).all() for _, t in calls)
    for (x_in, _), t in zip(calls, ts):
        assert torch.allclose(x_in, ACP[t].sqrt().float() * x)  # no noise, no clipping
    assert torch.allclose(r, torch.full((2, 3), 4.0, dtype=torch.float64))  # ‖1‖ over 16 entries
    calls.clear()
    eps_norms(recording, x, ACP, ts, input_scaling="raw")
    assert all(torch.equal(x_in, x) for x_in, _ in calls)
    w = eps_norms(recording, x, ACP, ts, weighting="vp_score")
    assert torch.allclose(w[0], 4.0 / (1 - ACP[ts]).sqrt())
    assert torch.equal(eps_norms(recording, x, ACP, ts), eps_norms(recording, x, ACP, ts))


def analytic_features(n: int, scale: float, seed: int, weighting: str = "eps") -> np.ndarray:
    shape, s = (3, 4, 4), 0.3
    g = torch.Generator().manual_seed(seed)
    mu = torch.zeros(shape, dtype=torch.float64)
    x = mu + scale * s * torch.randn((n, *shape), generator=g, dtype=torch.float64)
    ts = msma_timesteps(ACP, paper_sigmas(10, 1.0, 0.01))
    return eps_norms(gaussian_eps(mu, torch.full(shape, s**2, dtype=torch.float64)), x, ACP, ts,
                     weighting=weighting).numpy()


def test_far_samples_score_higher_and_train_vs_test_is_chance():
    """D = 48, OOD = same mean with s × 1.3: GMM and kNN both separate; ID train vs ID test does not."""
    fit, test, ood = analytic_features(5000, 1.0, 0), analytic_features(2000, 1.0, 1), analytic_features(2000, 1.3, 2)
    y = np.r_[np.zeros(2000), np.ones(2000)]
    gmm = GMMDensity(components=(4,), seed=0).fit(fit)
    knn = KNNDensity(k=5).fit(fit)
    for d in (gmm, knn):
        assert roc_auc_score(y, np.r_[d.score(test), d.score(ood)]) > 0.85
    train_vs_test = roc_auc_score(y, np.r_[gmm.score(fit[:2000]), gmm.score(test)])
    assert 0.45 < train_vs_test < 0.55


def test_gmm_is_blind_to_the_norm_weighting_knn_is_not():
    a, b = analytic_features(600, 1.0, 0), analytic_features(600, 1.0, 0, weighting="ve_score")
    q, qb = analytic_features(50, 1.2, 3), analytic_features(50, 1.2, 3, weighting="ve_score")
    ga = GMMDensity(components=(2, 3), cv_folds=3, seed=0).fit(a)
    gb = GMMDensity(components=(2, 3), cv_folds=3, seed=0).fit(b)
    assert ga.report()["components"] == gb.report()["components"]
    # standardisation removes per-level scales; only the Jacobian constant differs
    da, db = ga.score(q), gb.score(qb)
    assert np.allclose(da - da.mean(), db - db.mean(), atol=1e-6)
    assert not np.allclose(KNNDensity().fit(a).score(q), KNNDensity().fit(b).score(qb))
