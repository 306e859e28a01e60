"""LMD on CPU with tiny models: masks, the inpainting sampler, distances, aggregation."""
import numpy as np
import pytest
import torch

from helpers import reload_artifacts

from ood_bench.utils.errors import MissingWeightsError
from ood_bench.data import DataContext, load_dataset
from ood_bench.methods.base import RunContext
from ood_bench.methods.lmd import LMD, LMDConfig
from ood_bench.methods.lmd.distances import LPIPS, MSE, SSIM, Distance, check_lpips_weights
from ood_bench.methods.lmd.inpaint import inpaint
from ood_bench.methods.lmd.masks import checkerboard, make_masks
from ood_bench.methods.unet import build_unet, ddpm_scheduler


def test_checkerboard_pixels():
    m = checkerboard(8, 4)[0, 0]  # 2×2-pixel blocks, top-left block kept
    expected = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.float)
    assert torch.equal(m, expected.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert torch.equal(checkerboard(8, 4, inverted=True), 1 - checkerboard(8, 4))
    assert checkerboard(32, 8).mean() == 0.5 and checkerboard(32, 8)[0, 0, :4, :4].eq(1).all()


def test_checkerboard_alt_alternates_over_repetitions_image_major():
    g = torch.Generator().manual_seed(0)
    m = make_masks("checkerboard_alt", n=2, reps=3, size=8, blocks=4, generator=g)
    assert m.shape == (6, 1, 8, 8)
    normal, inverted = checkerboard(8, 4), 1 - checkerboard(8, 4)
    for img in range(2):
        assert torch.equal(m[img * 3 + 0:img * 3 + 1], normal)
        assert torch.equal(m[img * 3 + 1:img * 3 + 2], inverted)
        assert torch.equal(m[img * 3 + 2:img * 3 + 3], normal)


def test_center_and_random_masks():
    g = torch.Generator().manual_seed(0)
    c = make_masks("center", 1, 1, 8, 4, g)[0, 0]
    assert c[2:6, 2:6].eq(0).all() and c.sum() == 64 - 16
    r = make_masks("random", 3, 2, 16, 4, g, patch=4, keep_ratio=0.5)
    assert r.shape == (6, 1, 16, 16)
    patches = r[:, 0, ::4, ::4]  # one value per 4×4 patch
    assert patches.flatten(1).sum(1).eq(8).all()  # exactly ceil(16 · 0.5) patches kept each
    assert torch.equal(r[:, 0].unfold(1, 4, 4).unfold(2, 4, 4).amin((-1, -2)), patches)  # blocks are uniform
    assert not torch.equal(r[0], r[1])


@pytest.mark.parametrize("steps", [1000, 7])
def test_inpainting_keeps_the_known_pixels_exactly(steps):
    torch.manual_seed(0)
    unet = build_unet(8, 1, 16, (1, 2), 1, (), 0.0, norm_num_groups=8).eval()
    x0 = torch.rand(3, 1, 8, 8) * 2 - 1
    mask = make_masks("checkerboard_alt", 3, 1, 8, 4, torch.Generator().manual_seed(1))
    n = 20 if steps == 1000 else steps
    out = inpaint(unet, ddpm_scheduler(), x0, mask, n, torch.Generator().manual_seed(2))
    assert torch.equal(out * mask, x0 * mask)
    assert not torch.allclose(out * (1 - mask), x0 * (1 - mask))  # the rest was generated


def test_sampler_visits_the_strided_schedule():
    visited = []

    class Spy(torch.nn.Module):
        def forward(self, x, t):
            visited.append(int(t))
            return type("O", (), {"sample": torch.zeros_like(x)})()

    x0 = torch.zeros(1, 1, 8, 8)
    inpaint(Spy(), ddpm_scheduler(), x0, torch.ones_like(x0), 4, torch.Generator().manual_seed(0))
    assert visited == [750, 500, 250, 0]


class FixedDistance(Distance):
    def __init__(self, table):
        self.table = table

    def pairwise(self, orig, recs, reps):
        return self.table


def test_score_is_the_median_over_repetitions(monkeypatch):
    cfg = LMDConfig(image_size=8, channels=1, base_channels=16, channel_mult=(1, 2), layers_per_block=1,
                    attention_resolutions=(), norm_groups=8, reps=4, steps=2, mask_blocks=4,
                    distances=("mse",), score="mse")
    m = LMD(cfg, RunContext(device=torch.device("cpu")))
    m.unet = build_unet(8, 1, 16, (1, 2), 1, (), 0.0, norm_num_groups=8).eval()
    table = torch.tensor([[1.0, 9.0, 2.0, 3.0], [5.0, 5.0, 0.0, 100.0]])
    m._distances = {"mse": FixedDistance(table)}
    out = m.score_batch(torch.rand(2, 1, 8, 8), torch.Generator().manual_seed(0))
    np.testing.assert_allclose(out.scores["mse"].numpy(), np.median(table.numpy(), axis=1))  # 2.5, 5.0


def test_pixel_distances():
    x = torch.zeros(2, 1, 8, 8)
    y = torch.zeros(2, 1, 8, 8)
    y[1] = 0.5
    assert MSE()(x, y).tolist() == [0.0, 0.25]
    s = SSIM()(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    assert s.shape == (2,) and (s > 0).all()
    z = torch.rand(1, 3, 8, 8)
    assert SSIM()(z, z).abs().max() < 1e-6


def test_lpips_code_path_with_random_backbone_upsamples_small_images():
    d = LPIPS(torch.device("cpu"), random_backbone=True)  # numbers are not LPIPS here
    x = torch.rand(2, 1, 8, 8)
    out = d(x, x.flip(-1))
    assert out.shape == (2,) and torch.isfinite(out).all()
    assert d(x, x).abs().max() < 1e-6


def test_missing_lpips_weights_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"alexnet-owt-7be5be79\.pth in .*checkpoints"):
        check_lpips_weights()
    with pytest.raises(MissingWeightsError):
        LMD.preflight(LMDConfig())  # paper default distance is LPIPS


def test_tiny_lmd_fit_score_examples_and_cost(tmp_path):
    ctx = DataContext()
    cfg = LMDConfig(image_size=8, channels=1, base_channels=16, channel_mult=(1, 2), layers_per_block=1,
                    attention_resolutions=(), norm_groups=8, dropout=0.0, epochs=2, train_batch_size=32,
                    warmup_steps=5, hflip=False, reps=2, steps=3, mask_blocks=4,
                    distances=("mse", "ssim"), score="ssim")
    from ood_bench.api import fit_method

    m = LMD(cfg, RunContext(device=torch.device("cpu"), batch_size=16, work_dir=tmp_path / "work"))
    fit_method(m, load_dataset("digits", "train", ctx).take(64))
    assert type(m.artifacts["ddpm"]).kind == "ddpm-unet" and m.unet is m.artifacts["ddpm"].unet
    test = load_dataset("digits", "test", ctx).take(10)
    s = m.score(test)
    assert set(s.scores) == {"mse", "ssim"} and s.primary == "ssim" and len(s) == 10
    assert m.cost() == {"unet": 6.0}
    assert m.save_examples(test, tmp_path / "ex.png") and (tmp_path / "ex.png").stat().st_size > 0
    m.save(tmp_path / "state")
    m2 = LMD(cfg, RunContext(device=torch.device("cpu"), batch_size=16))
    m2.artifacts = reload_artifacts(m, tmp_path / "artifacts")
    m2.load(tmp_path / "state")
    np.testing.assert_allclose(m2.score(test).scores["mse"], s.scores["mse"], rtol=1e-5, atol=1e-7)

