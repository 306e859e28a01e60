"""DDPM-OOD on CPU: the grid and its cost, PLMS against the exact ODE map of Gaussian data,
reconstruction errors with a known answer, order/batch invariance, the z-statistics' data."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ood_bench.utils.errors import MissingWeightsError, UserError
from ood_bench.data import DataContext, load_dataset
from ood_bench.methods.base import RunContext
from ood_bench.methods.ddpm_ood import DDPMOOD, DDPMOODConfig
from ood_bench.methods.ddpm_ood.plms import chain_evaluations, chain_levels, reconstruct, start_times, time_grid
from ood_bench.methods.ddpm_ood.zscores import ZStats
from ood_bench.methods.unet import build_unet, ddpm_scheduler

MU, SIGMA = 0.3, 0.5  # the Gaussian data N(μ, σ²) per pixel, in the model's range


def linear_abar(dtype=torch.float64) -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=dtype)
    return torch.cumprod(1 - betas, 0)


class OracleUNet(torch.nn.Module):
    """The exact ε-predictor of data N(μ, σ²): ε*(x, t) = √(1−ᾱ)(x − √ᾱ μ)/(ᾱ σ² + 1 − ᾱ); counts calls."""

    def __init__(self, abar: torch.Tensor, mu: float = MU, sigma: float = SIGMA):
        super().__init__()
        self.abar, self.mu, self.sigma, self.calls = abar, mu, sigma, 0

    def forward(self, x, t):
        self.calls += 1
        a = self.abar[t].to(x.dtype).view(-1, 1, 1, 1)
        return SimpleNamespace(sample=(1 - a).sqrt() * (x - a.sqrt() * self.mu) / (a * self.sigma ** 2 + 1 - a))


def exact_map(x: torch.Tensor, a_from: float, a_to: float) -> torch.Tensor:
    """The probability-flow ODE map of N(μ, σ²) data from ᾱ ``a_from`` to ᾱ ``a_to``."""
    va, vb = a_from * SIGMA ** 2 + 1 - a_from, a_to * SIGMA ** 2 + 1 - a_to
    return a_to ** 0.5 * MU + (vb / va) ** 0.5 * (x - a_from ** 0.5 * MU)


TINY = dict(image_size=8, channels=1, base_channels=16, channel_mult=(1, 2), layers_per_block=1,
            attention_resolutions=(), norm_groups=8, dropout=0.0, metrics=("mse",))


def method(**options) -> DDPMOOD:
    cfg = DDPMOODConfig(**{**TINY, **options})
    return DDPMOOD(cfg, RunContext(device=torch.device("cpu"), batch_size=16))


def with_unet(m: DDPMOOD, unet) -> DDPMOOD:
    """The method with ``unet`` as its shared ID DDPM (what the engine hands it)."""
    m.artifacts = {"ddpm": SimpleNamespace(unet=unet, scheduler=m.scheduler)}
    m.unet = unet
    return m


def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_unet(8, 1, 16, (1, 2), 1, (), 0.0, norm_num_groups=8).eval()


# ------------------------------------------------------------------------ grid and cost
def test_paper_grid_starts_and_350_evaluations():
    c = DDPMOODConfig()
    grid = c.grid()
    assert grid[:3] == [1, 11, 21] and grid[-1] == 991 and len(grid) == 100
    assert c.starts() == [1, 161, 321, 481, 641, 801, 961]
    assert [len(chain_levels(grid, s)) - 1 for s in c.starts()] == [1, 17, 33, 49, 65, 81, 97]
    assert chain_levels(grid, 21) == [21, 11, 1, 0]
    assert DDPMOOD(c, RunContext(device=torch.device("cpu"))).cost()["unet"] == 350
    later = DDPMOODConfig(grid_offset=0)
    assert later.starts() == [10, 170, 330, 490, 650, 810, 970]
    assert chain_levels(later.grid(), 20) == [20, 10, 0]
    assert sum(chain_evaluations(later.grid(), s, "plms") for s in later.starts()) == 350
    assert sum(chain_evaluations(grid, s, "ddim") for s in c.starts()) == 343
    with pytest.raises(ValueError, match="grid_offset"):
        time_grid(1000, 100, 10)
    assert start_times(grid, 50) == [1, 501]


@pytest.mark.parametrize("sampler,offset,expected", [("plms", 1, 350), ("ddim", 1, 343), ("plms", 0, 350)])
def test_a_counting_unet_sees_the_cost(sampler, offset, expected):
    m = method(sampler=sampler, grid_offset=offset)
    oracle = with_unet(m, OracleUNet(m.scheduler.alphas_cumprod)).unet
    m.distances(torch.rand(3, 1, 8, 8), torch.Generator().manual_seed(0))
    assert oracle.calls == expected == m.cost()["unet"]  # one call per batch and level: per image


def test_budget_maps_steps_and_reps_onto_grid_and_starts():
    c = DDPMOODConfig()
    assert DDPMOOD.with_budget(c, None, None) is c
    four = DDPMOOD.with_budget(c, None, 4)
    assert four.starts() == [1, 251, 501, 751] and four.inference_steps == 100
    short = DDPMOOD.with_budget(c, 20, None)  # the number of starts is kept
    assert short.inference_steps == 20 and short.starts() == [1, 151, 301, 451, 601, 751, 901]
    m = DDPMOOD(short, RunContext(device=torch.device("cpu")))
    assert m.budget() == {"steps": 20.0, "reps": 7.0}
    assert m.cost()["unet"] == sum(len(chain_levels(short.grid(), s)) for s in short.starts())
    assert set(DDPMOOD.cost_knobs) <= set(c.stage_dict("score"))


def test_bad_options_are_value_errors():
    for bad in (dict(metrics=("ssim",)), dict(sampler="euler"), dict(intensity="z"), dict(score="mse@5"),
                dict(metrics=("mse",), score="z_lpips"), dict(inference_steps=0)):
        with pytest.raises(ValueError):
            DDPMOODConfig(**bad)
    assert DDPMOODConfig(metrics=("mse",), score="mse@161").score == "mse@161"


# ------------------------------------------------------------------------ the sampler
@pytest.mark.parametrize("start", [1, 161, 481, 961])
def test_plms_follows_the_exact_ode_of_gaussian_data(start):
    abar = linear_abar()
    oracle = OracleUNet(abar)
    grid = time_grid(1000, 100, 1)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(start)) * 1.3
    eps = lambda z, t: oracle(z, torch.full((len(z),), t)).sample
    out = reconstruct(eps, x, start, grid, abar, "plms")
    want = exact_map(x, float(abar[start]), float(abar[0]))
    assert out.dtype == torch.float64
    assert (out - want).abs().max() < 1e-3
    ddim = reconstruct(eps, x, start, grid, abar, "ddim")
    assert (ddim - want).abs().max() < 0.1  # first order: further off, but the same map
    if start > 1:  # the multistep corrector is what makes PLMS accurate (one step: both are DDIM + Heun-like)
        assert (out - want).abs().max() < (ddim - want).abs().max() / 20


def test_reconstruction_error_grows_with_the_start_and_with_a_shift():
    """Unclamped mean MSE of ID data ≈ 2σ²(1 − ρ_s) (model range; /4 in [0, 1]) with
    ρ_s = σ√ᾱ_s/√(σ²ᾱ_s + 1 − ᾱ_s); a mean shift δ adds (1 − ρ_s)²δ²."""
    m = method(clamp=False, inference_steps=100, start_skip=16)
    with_unet(m, OracleUNet(m.scheduler.alphas_cumprod.double()))
    g = torch.Generator().manual_seed(0)
    n = 128
    ident = (MU + SIGMA * torch.randn(n, 1, 8, 8, generator=g) + 1) / 2  # [0, 1] view of N(μ, σ²)
    delta = 1.0
    shifted = ident + delta / 2
    d_id = m.distances(ident, torch.Generator().manual_seed(1))
    d_sh = m.distances(shifted, torch.Generator().manual_seed(1))
    abar = m.scheduler.alphas_cumprod.double()
    prev = -1.0
    for s in [161, 481, 801, 961]:
        a = float(abar[s])
        rho = SIGMA * a ** 0.5 / (SIGMA ** 2 * a + 1 - a) ** 0.5
        expect_id = 2 * SIGMA ** 2 * (1 - rho) / 4
        expect_sh = expect_id + (1 - rho) ** 2 * delta ** 2 / 4
        got_id, got_sh = d_id[f"mse@{s}"].mean().item(), d_sh[f"mse@{s}"].mean().item()
        assert got_id == pytest.approx(expect_id, rel=0.08), s
        assert got_sh == pytest.approx(expect_sh, rel=0.08), s
        assert got_id > prev and got_sh > got_id
        prev = got_id
    # z-scores against ID statistics: shifted data score higher, on average well above 0
    stats = ZStats.fit({k: v.double().numpy() for k, v in d_id.items()})
    z_id = stats.combined(d_id, ["mse"], m.config.starts())["z"]
    z_sh = stats.combined(d_sh, ["mse"], m.config.starts())["z"]
    assert abs(z_id.mean().item()) < 1e-5 and z_sh.mean().item() > 2.0
    assert (z_sh > z_id.median()).float().mean() > 0.95


# ------------------------------------------------------------------------ invariances
def test_starts_in_any_order_or_alone_give_the_same_reconstructions():
    m = with_unet(method(inference_steps=20, start_skip=5), tiny_unet())
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    starts = m.config.starts()
    assert starts == [1, 251, 501, 751]
    fwd = m.reconstructions(x, torch.Generator().manual_seed(7))
    rev = m.reconstructions(x, torch.Generator().manual_seed(7), starts[::-1])
    for s in starts:
        alone = m.reconstructions(x, torch.Generator().manual_seed(7), [s])
        assert torch.equal(fwd[s], rev[s]) and torch.equal(fwd[s], alone[s])
    other = m.reconstructions(x, torch.Generator().manual_seed(8))
    assert not torch.equal(fwd[501], other[501])  # the noise does depend on the batch seed


def test_an_image_scores_the_same_alone_and_among_any_batch_mates():
    m = with_unet(method(inference_steps=20, start_skip=5), tiny_unet())
    m.stats = ZStats({f"mse@{s}": 0.01 for s in m.config.starts()}, {f"mse@{s}": 0.02 for s in m.config.starts()}, 10)
    m.stats_options = m.current_stats_options()
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 1, 8, 8, generator=g)
    batch1 = torch.cat([a, torch.rand(3, 1, 8, 8, generator=g)])
    batch2 = torch.cat([a, torch.zeros(2, 1, 8, 8)])
    alone = m.score_batch(a, torch.Generator().manual_seed(5)).scores
    for batch in (batch1, batch2):
        got = m.score_batch(batch, torch.Generator().manual_seed(5)).scores
        assert set(got) == {"z", "z_mse", "mse@1", "mse@251", "mse@501", "mse@751"}
        for k in got:
            torch.testing.assert_close(got[k][:1], alone[k], rtol=1e-5, atol=1e-6)
    noise = m.noise(torch.Size([3, 1, 8, 8]), 5, 251)
    assert torch.equal(noise[:1], m.noise(torch.Size([1, 1, 8, 8]), 5, 251))


# ------------------------------------------------------------------------ z-statistics
def test_zstats_are_the_mean_and_sample_std():
    s = ZStats.fit({"mse@1": np.array([1.0, 2.0, 3.0, 6.0])})
    assert s.mean["mse@1"] == 3.0 and s.std["mse@1"] == pytest.approx(np.sqrt(14 / 3))
    z = s.combined({"mse@1": torch.tensor([3.0, 3.0 + np.sqrt(14 / 3)])}, ["mse"], [1])
    torch.testing.assert_close(z["z"], torch.tensor([0.0, 1.0], dtype=torch.float64))
    two = ZStats({"mse@1": 0.0, "lpips@1": 1.0, "mse@5": 0.0, "lpips@5": 1.0},
                 {"mse@1": 1.0, "lpips@1": 2.0, "mse@5": 1.0, "lpips@5": 2.0}, 5)
    d = {"mse@1": torch.tensor([2.0]), "mse@5": torch.tensor([4.0]), "lpips@1": torch.tensor([3.0]),
         "lpips@5": torch.tensor([1.0])}
    out = two.combined(d, ["mse", "lpips"], [1, 5])
    assert out["z_mse"].item() == 3.0 and out["z_lpips"].item() == 0.5 and out["z"].item() == 3.5
    with pytest.raises(UserError, match="≥ 2"):
        ZStats.fit({"mse@1": np.array([1.0])})
    with pytest.raises(UserError, match="spread"):
        ZStats.fit({"mse@1": np.array([1.0, 1.0])})


def test_zstats_come_from_the_validation_images_only(tmp_path):
    ctx = DataContext()
    digits = load_dataset("digits", "train", ctx)
    val, other_val = digits.take(12, seed=1), digits.take(12, seed=2)
    test_a, test_b = load_dataset("digits", "test", ctx).take(8), load_dataset("noise", "test", ctx).take(8)

    def fitted(validation, train):
        m = with_unet(method(inference_steps=10, start_skip=3), tiny_unet())
        m.validation = validation
        m.fit(train)
        return m

    m1 = fitted(val, test_a)
    m2 = fitted(val, test_b)  # other "training" images: the statistics ignore them
    assert m1.stats == m2.stats and m1.stats.count == 12
    assert fitted(other_val, test_a).stats != m1.stats
    before = m1.stats
    m1.score(test_a), m1.score(test_b)  # scoring never touches the statistics
    assert m1.stats == before
    m1.save(tmp_path)
    m3 = with_unet(method(inference_steps=10, start_skip=3), tiny_unet())
    m3.load(tmp_path)
    assert m3.stats == before
    np.testing.assert_allclose(m3.score(test_a).scores["z"], m1.score(test_a).scores["z"], rtol=1e-6)
    # a changed score option needs statistics of its own: re-measured on the validation images
    m4 = with_unet(method(inference_steps=10, start_skip=2), tiny_unet())
    m4.load(tmp_path)
    with pytest.raises(UserError, match="validation hold-out is needed"):
        m4.score(test_a)
    m4.validation = val
    assert len(m4.score(test_a).scores) == 2 + 5


def test_missing_lpips_weights_is_the_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"alexnet-owt-7be5be79\.pth"):
        DDPMOOD.preflight(DDPMOODConfig())  # the paper's metrics include LPIPS
    DDPMOOD.preflight(DDPMOODConfig(metrics=("mse",)))  # MSE only runs offline
    DDPMOOD.preflight(DDPMOODConfig(metrics=("mse", "features")))


# ------------------------------------------------------------------------ end to end
UNET_SET = ["image_size=8", "channels=1", "base_channels=16", "channel_mult=[1,2]", "layers_per_block=1",
            "attention_resolutions=[]", "norm_groups=8", "dropout=0.0", "epochs=1", "train_batch_size=32",
            "warmup_steps=2", "hflip=false"]


def test_cli_end_to_end_shares_lmds_ddpm(tmp_path, capsys):
    import json

    import pandas as pd

    from ood_bench.cli import main

    sets = ([f"lmd.{o}" for o in UNET_SET] + ["lmd.reps=2", "lmd.steps=2", "lmd.mask_blocks=4", "lmd.distances=[mse]",
            "lmd.score=mse"] + [f"ddpm-ood.{o}" for o in UNET_SET]
            + ["ddpm-ood.metrics=[mse]", "ddpm-ood.inference_steps=10", "ddpm-ood.start_skip=3",
               "ddpm-ood.grid_offset=1"])
    argv = ["run", "--method", "lmd", "ddpm-ood", "--id", "digits", "--ood", "noise", "--device", "cpu",
            "--limit", "12", "--train-limit", "80", "--validation", "0.1", "--quiet", "--bootstrap", "0",
            "--cache-dir", str(tmp_path / "cache"), "--set", *sets]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    (entry,) = man["artifacts"].values()  # one ID DDPM for both methods
    assert entry["kind"] == "ddpm-unet" and [u["status"] for u in entry["uses"]] == ["trained", "shared"]
    assert man["validation"]["seeds"]["0"]["n"] == 8
    scores = pd.read_csv(tmp_path / "run" / "scores.csv")
    ours = scores[scores["method"] == "ddpm-ood"]
    assert len(ours) == 24 and {"z", "z_mse", "mse@1", "mse@301", "mse@601", "mse@901"} <= set(ours.columns)
    assert ours[["z", "mse@901"]].notna().all().all()
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert (metrics[metrics["method"] == "ddpm-ood"]["nfe"] == 2 + 5 + 8 + 11).all()
    # again: DDPM and statistics from the cache, the same scores
    assert main([*argv, "--out", str(tmp_path / "run2")]) == 0
    again = pd.read_csv(tmp_path / "run2" / "scores.csv")
    pd.testing.assert_series_equal(again[again["method"] == "ddpm-ood"]["z"], ours["z"])
    man2 = json.loads((tmp_path / "run2" / "manifest.json").read_text())
    assert [u["status"] for u in next(iter(man2["artifacts"].values()))["uses"]] == ["loaded", "shared"]


def test_compiled_unet_gives_the_same_reconstructions_with_one_graph():
    """The fast path (torch.compile; aot_eager on a CPU): the UNet gets its level as a tensor, so
    every level and start of the chains runs one traced graph."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from ood_bench.utils.device import prepare_network

    plain = tiny_unet()
    fast = tiny_unet()
    prepare_network(fast, torch.device("cpu"), compile=True, backend="aot_eager")
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # as scoring runs
        a = with_unet(method(inference_steps=10, start_skip=3), plain).reconstructions(x, torch.Generator().manual_seed(3))
        torch._dynamo.reset()
        counters.clear()
        b = with_unet(method(inference_steps=10, start_skip=3), fast).reconstructions(x, torch.Generator().manual_seed(3))
    assert counters["stats"]["unique_graphs"] == 1
    for s in a:
        torch.testing.assert_close(b[s], a[s], rtol=1e-5, atol=1e-5)
