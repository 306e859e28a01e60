"""diffusion-nll / diffusion-ic: the bound's maths on Gaussian data with the exact ε-predictor,
units, the compressor, per-image seeding, and the methods end to end (CPU, tiny)."""
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ood_bench.methods.likelihood import bound as B
from ood_bench.methods.likelihood.compress import compressed_bits, decode, encode

M, S = 0.1, 0.5  # the Gaussian data N(M, S²) of the analytic tests


def optimal_eps(sched: B.Schedule, m: float = M, s: float = S):
    """The exact ε-predictor of iid N(m, s²) data: E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ m)/(ᾱ s² + 1 − ᾱ)."""
    ac = sched.alphas_cumprod

    def eps(xt, i):
        a = ac[i].view(-1, 1, 1, 1)
        return ((1 - a).sqrt() * (xt.double() - a.sqrt() * m) / (a * s * s + 1 - a)).float()
    return eps


def scaled_schedule(T: int) -> B.Schedule:
    return B.Schedule.linear(T, 1e-4 * 1000 / T, 0.02 * 1000 / T)


def gens(n: int, offset: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(1000 + offset + i) for i in range(n)]


# ---------------------------------------------------------------------------------- units
def test_bits_are_nats_over_ln2_and_bpd_times_d_is_bits():
    nats = torch.tensor([1.0, 3072.0 * 2.5], dtype=torch.float64)
    assert torch.allclose(B.nats_to_bits(nats), nats / math.log(2))
    assert torch.allclose(B.nats_to_bpd(nats, 3072) * 3072, B.nats_to_bits(nats))
    # the spec's trap: a natural-log NLL is 1/ln 2 ≈ 1.44× smaller than in bits
    assert float(B.nats_to_bits(1.0)) == pytest.approx(1.4426950408889634)
    terms = B.BoundTerms(prior=torch.tensor([1.0]), kl=torch.tensor([2.0]), decoder=torch.tensor([3.0]), dims=4)
    bpd = terms.bpd()
    assert float(bpd["nll_bpd"]) == pytest.approx(6.0 / math.log(2) / 4)
    assert float(bpd["prior_bpd"] + bpd["kl_bpd"] + bpd["decoder_bpd"]) == pytest.approx(float(bpd["nll_bpd"]))


def test_uint8_grid_and_quantisation():
    k = torch.tensor([0, 1, 254, 255], dtype=torch.uint8)
    assert torch.allclose(B.uint8_to_x0(k), torch.tensor([-1.0, -1 + 2 / 255, 1 - 2 / 255, 1.0], dtype=torch.float64))
    assert torch.equal(B.quantize01(k.float() / 255), k)  # a loader's [0,1] values round-trip
    assert torch.equal(B.quantize01(torch.tensor([0.5 / 255 + 1e-4, 1.2, -0.1])), torch.tensor([1, 255, 0], dtype=torch.uint8))


# ---------------------------------------------------------------------------------- terms
@pytest.mark.parametrize("variance", B.VARIANCES)
def test_step_kl_closed_form_equals_torch_kl_divergence(variance):
    sched = B.Schedule.linear(1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(5, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps_hat = eps + 0.3 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    i = torch.tensor([1, 2, 50, 500, 999])
    ac = sched.alphas_cumprod[i].view(-1, 1, 1, 1)
    xt = ac.sqrt() * x0 + (1 - ac).sqrt() * eps
    mu_q = B.posterior_mean(x0, xt, i, sched)
    mu_p = B.posterior_mean(B.predicted_x0(xt, eps_hat, i, sched), xt, i, sched)
    var_q = sched.posterior_variance[i].view(-1, 1, 1, 1)
    var_p = sched.variance(variance)[i].view(-1, 1, 1, 1)
    ref = kl_divergence(Normal(mu_q, var_q.sqrt().expand_as(mu_q)), Normal(mu_p, var_p.sqrt().expand_as(mu_p))).flatten(1).sum(1)
    got = B.step_kl(eps, eps_hat, i, sched, variance)
    assert torch.allclose(got, ref, rtol=1e-6, atol=0)
    assert torch.allclose(B.step_kl_general(x0, xt, eps_hat, i, sched, variance, clip_x0=False), ref, rtol=1e-6, atol=0)
    if variance == "fixed_small":  # perfect prediction, matching variance: zero
        assert torch.allclose(B.step_kl(eps, eps, i, sched, variance), torch.zeros(5, dtype=torch.float64), atol=1e-9)


def test_fixed_large_constant_is_0486_bits_per_dim_for_the_linear_schedule():
    sched = B.Schedule.linear(1000)
    eps = torch.zeros(999, 1, 1, 1, dtype=torch.float64)
    const = B.step_kl(eps, eps, torch.arange(1, 1000), sched, "fixed_large").sum()  # D = 1, ε̂ = ε
    assert float(B.nats_to_bits(const)) == pytest.approx(0.486, abs=0.001)


def test_prior_term_matches_the_gaussian_kl():
    sched = B.Schedule.linear(1000)
    x0 = torch.linspace(-1, 1, 12, dtype=torch.float64).view(1, 3, 2, 2)
    a = sched.alphas_cumprod[-1]
    ref = kl_divergence(Normal(a.sqrt() * x0, (1 - a).sqrt()), Normal(0.0, 1.0)).sum()
    assert float(B.prior_kl(x0, sched)[0]) == pytest.approx(float(ref), rel=1e-9)
    assert float(B.prior_kl(x0, sched)[0]) / 12 < 2e-5  # ≤ 2e-5 nats/dim (spec)


@pytest.mark.parametrize("cdf", B.DECODER_CDFS)
def test_decoder_masses_over_the_256_bins_sum_to_one(cdf):
    grid = B.uint8_to_x0(torch.arange(256)).view(256, 1)
    for mu in (-1.2, -0.7, 0.0, 0.33, 1.2):
        for s in (1e-3, 0.01, 0.5):
            p = B.discretized_log_prob(grid, torch.full_like(grid, mu), s, cdf).exp().sum()
            tol = 1e-9 if cdf == "exact" else 2e-2
            # the 1e-12 floor adds at most 256e-12
            assert float(p) == pytest.approx(1.0, abs=tol + 3e-10), (mu, s)


def test_exact_decoder_is_accurate_in_both_tails():
    x = torch.tensor([0.5], dtype=torch.float64)
    for mu in (0.5 - 0.05, 0.5 + 0.05):  # 5 decoder-σ away, on either side (upper tail near Φ = 1)
        got = float(B.discretized_log_prob(x, torch.tensor([mu], dtype=torch.float64), 0.01).exp())
        n = Normal(torch.tensor(mu, dtype=torch.float64), torch.tensor(0.01, dtype=torch.float64))
        ref = float(n.cdf(torch.tensor(0.5 + 1 / 255, dtype=torch.float64)) - n.cdf(torch.tensor(0.5 - 1 / 255, dtype=torch.float64)))
        assert got == pytest.approx(ref, rel=1e-6)


def test_stratified_plan_covers_every_stratum_and_is_unbiased():
    i, w = B.timestep_plan(1000, 0, None)
    assert torch.equal(i, torch.arange(1, 1000)) and bool((w == 1).all())
    i, w = B.timestep_plan(1000, 10, torch.Generator().manual_seed(0))
    assert len(i) == 10 and float(w.sum()) == 999 and bool((i[1:] > i[:-1]).all()) and int(i.min()) >= 1
    kl_t = torch.linspace(5.0, 0.1, 999, dtype=torch.float64) ** 3  # steep, like KL_t
    ests = [float((w * kl_t[j - 1]).sum()) for j, w in
            (B.timestep_plan(1000, 10, torch.Generator().manual_seed(s)) for s in range(400))]
    assert np.mean(ests) == pytest.approx(float(kl_t.sum()), rel=0.02)
    assert np.std(ests) > 0


# ---------------------------------------------------------------------------------- Gaussian data
def _continuous_decoder(sched):
    s = sched.betas[0].sqrt()
    return lambda x0, mean: -Normal(mean, s).log_prob(x0).flatten(1).sum(1)


@pytest.mark.parametrize("T,expected", [(100, 0.011), (1000, 0.0011)])
def test_gaussian_bound_with_exact_eps_matches_the_true_nll(T, expected):
    """Spec: fixed_large, continuous decoder N(μ, β₁), β ends scaled by 1000/T: VLB − NLL =
    expected (nats/dim) on average; the per-image spread is ≈ 0.02 nats/dim."""
    sched = scaled_schedule(T)
    n = 10
    x0 = M + S * torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    opts = B.BoundOptions(variance="fixed_large", pairs_per_call=2000)
    terms = B.bound_terms(optimal_eps(sched), x0, sched, gens(n), opts, _continuous_decoder(sched))
    true = -Normal(M, S).log_prob(x0).flatten(1).sum(1)
    gap = ((terms.total - true) / 3072).mean()
    assert float(gap) == pytest.approx(expected, abs=0.02)


def test_fixed_small_keeps_a_046_nats_per_dim_gap():
    """β̃ instead of β on Gaussian data costs ≈ 0.46 nats/dim at T = 1000 (pins β vs β̃)."""
    sched = scaled_schedule(1000)
    x0 = M + S * torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    terms = B.bound_terms(optimal_eps(sched), x0, sched, gens(4), B.BoundOptions(variance="fixed_small", pairs_per_call=2000),
                          _continuous_decoder(sched))
    gap = ((terms.total - (-Normal(M, S).log_prob(x0).flatten(1).sum(1))) / 3072).mean()
    assert float(gap) == pytest.approx(0.46, abs=0.05)


def test_discretised_gaussian_bound_is_above_the_exact_nll_by_a_small_margin():
    """8-bit data: the bound over all T = 1000 steps with the discretised decoder (√β̃₂) upper-bounds
    the exact −ln P(k) of the discretised Gaussian, per image, by a margin (≈ 0.2 nats/dim: the
    decoder's x₁ noise √β₁ = 0.01 is wider than a bin) far below the NLL itself (5.4 nats/dim)."""
    sched = B.Schedule.linear(1000)
    n = 6
    x0 = M + S * torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    k = B.quantize01((x0 + 1) / 2)
    xq = B.uint8_to_x0(k)
    exact = -B.discretized_log_prob(xq, torch.full_like(xq, M), S).flatten(1).sum(1)  # −ln P(k), edges to ±∞
    terms = B.variational_bound(optimal_eps(sched), k, sched, gens(n), B.BoundOptions(variance="fixed_large", pairs_per_call=2000))
    gap = (terms.total - exact) / 3072
    assert bool((gap > 0).all()), gap
    assert float(gap.mean()) < 0.35 and float(gap.max()) < 0.45
    assert float(exact.mean() / 3072) == pytest.approx(5.36, abs=0.05)


def test_stratified_estimator_averages_to_the_full_bound():
    sched = scaled_schedule(100)
    x0 = (M + S * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)).repeat(300, 1, 1, 1)
    no_decoder = lambda x, m: torch.zeros(len(x), dtype=torch.float64)
    kl = {K: B.bound_terms(optimal_eps(sched), x0, sched, gens(300), B.BoundOptions(variance="fixed_large", timesteps=K,
                                                                                     pairs_per_call=5000), no_decoder).kl
          for K in (0, 10)}
    se = math.sqrt(float(kl[0].var() + kl[10].var()) / 300)
    assert abs(float(kl[10].mean() - kl[0].mean())) < 4 * se  # unbiased
    assert float(kl[10].std()) > 3 * float(kl[0].std())  # the estimator's own variance


def test_ood_shift_gets_higher_nll_under_a_narrow_id_gaussian():
    sched = B.Schedule.linear(200, 1e-4 * 5, 0.02 * 5)
    eps_model = optimal_eps(sched, m=0.0, s=0.1)
    g = torch.Generator().manual_seed(4)
    id_x = 0.1 * torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    ood_x = id_x + 0.4
    to_k = lambda x: B.quantize01((x + 1) / 2)
    opts = B.BoundOptions(variance="fixed_large", timesteps=40)
    nll_id = B.variational_bound(eps_model, to_k(id_x), sched, gens(4), opts).total
    nll_ood = B.variational_bound(eps_model, to_k(ood_x), sched, gens(4), opts).total
    assert bool((nll_ood > nll_id).all())


def test_an_image_gets_the_same_bound_in_any_batch():
    sched = scaled_schedule(50)
    k = torch.randint(0, 256, (5, 1, 6, 6), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    opts = B.BoundOptions(variance="fixed_small", timesteps=7, pairs_per_call=13)
    seeds = [11, 12, 13, 14, 15]
    g = lambda ss: [torch.Generator().manual_seed(s) for s in ss]
    whole = B.variational_bound(optimal_eps(sched), k, sched, g(seeds), opts).total
    alone = torch.cat([B.variational_bound(optimal_eps(sched), k[j:j + 1], sched, g([seeds[j]]), opts).total for j in range(5)])
    perm = [3, 0, 4, 1, 2]
    shuffled = B.variational_bound(optimal_eps(sched), k[perm], sched, g([seeds[j] for j in perm]), opts).total
    assert torch.allclose(whole, alone, rtol=1e-12, atol=0)
    assert torch.allclose(whole[perm], shuffled, rtol=1e-12, atol=0)
    other = B.variational_bound(optimal_eps(sched), k, sched, g([s + 100 for s in seeds]), opts).total
    assert not torch.allclose(whole, other)


# ---------------------------------------------------------------------------------- compression
@pytest.mark.parametrize("codec", ["png", "jpeg2000", "webp"])
def test_compression_is_lossless_and_constant_images_are_cheap(codec):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    const = np.full((32, 32, 3), 117, dtype=np.uint8)
    assert np.array_equal(decode(encode(noise, codec))[..., :3], noise)
    assert compressed_bits(const, codec) < 0.1 * compressed_bits(noise, codec)
    if codec == "png":
        assert compressed_bits(noise, codec) >= 8 * noise.size  # noise does not compress
        gray = rng.integers(0, 256, (8, 8, 1), dtype=np.uint8)
        assert np.array_equal(decode(encode(gray)), gray)


# ---------------------------------------------------------------------------------- the methods
from ood_bench.cli import main  # noqa: E402
from ood_bench.data import DataContext, load_dataset  # noqa: E402
from ood_bench.methods.base import RunContext  # noqa: E402
from ood_bench.methods.likelihood import DiffusionIC, DiffusionICConfig, DiffusionNLL, DiffusionNLLConfig  # noqa: E402
from ood_bench.methods.ddpm import DDPMArtifact  # noqa: E402
from ood_bench.methods.likelihood.reuse import MEMO  # noqa: E402
from ood_bench.methods.unet import unet_from_config  # noqa: E402
from ood_bench.utils.errors import ConfigError  # noqa: E402

TINY = dict(image_size=8, channels=1, base_channels=16, channel_mult=(1, 2), layers_per_block=1, attention_resolutions=(),
            norm_groups=8, dropout=0.0, epochs=1, train_batch_size=32, warmup_steps=5, hflip=False, diffusion_steps=40,
            timesteps=6)


def _ctx(tmp_path=None, bs=16):
    return RunContext(device=torch.device("cpu"), batch_size=bs, work_dir=None if tmp_path is None else tmp_path / "w")


def test_nll_scores_do_not_depend_on_the_batch_and_ic_reuses_the_bound(tmp_path):
    MEMO.clear()
    torch.manual_seed(0)
    cfg = DiffusionNLLConfig(**TINY)
    ddpm = DDPMArtifact(unet_from_config(cfg).eval(), cfg.scheduler())  # the shared ID DDPM (untrained)
    m = DiffusionNLL(cfg, _ctx(tmp_path, bs=3))
    m.artifacts = {"ddpm": ddpm}
    m.fit(None)
    assert m.unet is ddpm.unet and m.variance == "fixed_small" and m.requires()["ddpm"].kind == "ddpm-unet"
    test = load_dataset("digits", "test", DataContext()).take(7)
    s3 = m.score(test)
    assert set(s3.scores) == {"nll_bpd", "prior_bpd", "kl_bpd", "decoder_bpd"} and s3.primary == "nll_bpd"
    np.testing.assert_allclose(s3.scores["prior_bpd"] + s3.scores["kl_bpd"] + s3.scores["decoder_bpd"],
                               s3.scores["nll_bpd"], rtol=1e-5)
    assert m.cost() == {"unet": 7.0} and m.budget() == {"steps": 6.0, "reps": 1.0}  # 6 KL steps + the decoder
    full = DiffusionNLL.with_budget(cfg, 1000, 3)
    assert (full.timesteps, full.n_noise) == (0, 3) and DiffusionNLL(full, _ctx()).cost() == {"unet": 120.0}
    assert DiffusionNLL.with_budget(cfg, 10, None).timesteps == 10
    MEMO.clear()
    m.ctx.batch_size = 5
    s5 = m.score(test)
    np.testing.assert_allclose(s5.scores["nll_bpd"], s3.scores["nll_bpd"], rtol=1e-6)
    assert len(MEMO) == 7 and MEMO.hits == 0
    np.testing.assert_array_equal(m.score(test).scores["nll_bpd"], s5.scores["nll_bpd"])
    assert MEMO.hits == 0  # a method never reads its own entries: scoring again computes again
    # IC with the same weights reads the 7 bounds instead of recomputing them
    ic = DiffusionIC(DiffusionICConfig(**TINY), _ctx(bs=4))
    ic.artifacts = {"ddpm": ddpm}
    ic.load(tmp_path)
    assert ic.requires() == m.requires()  # one recipe: one DDPM for both
    si = ic.score(test)
    assert MEMO.hits == 7 and len(MEMO) == 7
    d = 64
    np.testing.assert_allclose(si.scores["nll_bits"], s3.scores["nll_bpd"] * d, rtol=1e-5)  # bits = bpd · D
    np.testing.assert_allclose(si.scores["ic_bits"], si.scores["nll_bits"] - si.scores["png_bits"], rtol=1e-5)
    np.testing.assert_allclose(si.scores["ic_bpd"] * d, si.scores["ic_bits"], rtol=1e-5)
    assert set(si.scores) == {"ic_bits", "ic_bpd", "nll_bits", "png_bits", "png_bpd"}
    # another seed draws other noise (and is not served from the memo)
    other = DiffusionNLL(DiffusionNLLConfig(**TINY), RunContext(device=torch.device("cpu"), seed=1, batch_size=3))
    other.artifacts = {"ddpm": ddpm}
    other.fit(None)
    assert not np.allclose(other.score(test).scores["kl_bpd"], s3.scores["kl_bpd"])
    # a direct score_batch call (ood-bench speed) seeds its images from the generator's seed,
    # and neither reads nor fills the memo
    MEMO.clear()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    a = m.score_batch(x, torch.Generator().manual_seed(5)).scores
    assert torch.equal(a["kl_bpd"], m.score_batch(x, torch.Generator().manual_seed(5)).scores["kl_bpd"])
    b = ic.score_batch(x, torch.Generator().manual_seed(5)).scores  # computed again, the same numbers
    assert torch.allclose(b["nll_bits"], a["nll_bpd"] * 64, rtol=1e-6) and len(MEMO) == 0 and MEMO.hits == 0


class StubNLL(DiffusionIC):
    """IC with a stub likelihood: ``bits[j]`` bits for image j of the batch."""
    bits: list[float] = []

    def bound_nats(self, k, generator):
        n = torch.tensor(self.bits[:len(k)], dtype=torch.float64) * math.log(2)  # nats, as the bound returns
        return torch.zeros_like(n), n, torch.zeros_like(n)


def test_ic_turns_the_likelihood_paradox_around():
    """The paradox, constructed: the ID image is complex (noise-like) and gets 6 bits/dim; the OOD
    image is simple (flat) and gets a *higher* likelihood, 2 bits/dim. NLL ranks the OOD image as
    the more in-distribution one; IC = NLL − PNG (bits, whole image) ranks it above the ID image."""
    d = 3 * 16 * 16
    complex_id = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    simple_ood = torch.full((1, 3, 16, 16), 0.5)
    ic = StubNLL(DiffusionICConfig(image_size=16, channels=3), _ctx())
    ic.bits = [6.0 * d, 2.0 * d]
    out = ic.score_batch(torch.cat([complex_id, simple_ood]), torch.Generator().manual_seed(0))
    nll, png, s = (out.scores[k].double() for k in ("nll_bits", "png_bits", "ic_bits"))
    assert float(nll[0]) == pytest.approx(6.0 * d, rel=1e-6)  # bits, not nats
    assert float(nll[1]) < float(nll[0])  # NLL: the OOD image looks *more* in-distribution
    assert float(png[0]) > 8 * d and float(png[1]) < 0.1 * float(png[0])
    assert float(s[1]) > float(s[0])  # IC: the OOD image scores higher
    # a stub NLL equal to the compressed length gives IC = 0
    ic.bits = [float(png[0]), float(png[1])]
    out = ic.score_batch(torch.cat([complex_id, simple_ood]), torch.Generator().manual_seed(0))
    assert torch.allclose(out.scores["ic_bits"], torch.zeros(2), atol=1e-2)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="variance"):
        DiffusionNLLConfig(variance="learned")
    with pytest.raises(ValueError, match="compressor"):
        DiffusionICConfig(compressor="gif")
    with pytest.raises(ValueError, match="score"):
        DiffusionICConfig(compressor="webp", score="png_bits")
    DiffusionICConfig(compressor="webp", score="webp_bits")


def test_cli_end_to_end_on_a_tiny_preset(tmp_path, capsys):
    opts = [f"{m}.{k}={list(v) if isinstance(v, tuple) else v}" for m in ("diffusion-nll", "diffusion-ic")
            for k, v in TINY.items()]
    rc = main(["run", "--method", "diffusion-nll", "diffusion-ic", "--id", "digits04", "--ood", "noise",
               "--limit", "12", "--train-limit", "64", "--set", *opts, "--out", str(tmp_path / "o"),
               "--cache-dir", str(tmp_path / "c"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    import pandas as pd
    m = pd.read_csv(tmp_path / "o" / "metrics.csv")
    assert {"diffusion-nll", "diffusion-ic"} <= set(m["method"])
    rc = main(["run", "--method", "diffusion-nll", "--id", "digits04", "--ood", "noise", "--limit", "4",
               "--set", "diffusion-nll.variance=learned", "--quiet"])
    assert rc == 2 and "variance" in capsys.readouterr().err
