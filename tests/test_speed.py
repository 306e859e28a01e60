"""``ood-bench speed`` and the fast data/compile paths, on a CPU (no timing assertions)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from ood_bench.data import DataContext, load_dataset
from ood_bench.data.loading import DeviceBatches
from ood_bench.data.transforms import ImageTransform
from ood_bench.engine.config import RunConfig
from ood_bench.engine.runner import prepare_methods
from ood_bench.engine.speed import SpeedSetup, count_flops, extrapolate, linear_fit, measure_method
from ood_bench.methods.base import BatchOutput, MethodConfig, OODMethod, RunContext, score_option
from ood_bench.methods.registry import METHODS, register_method

from helpers import write_images

SIDE, HIDDEN = 4, 6  # images 1×4×4 → 16 inputs
CPU = torch.device("cpu")


@dataclass
class ChainConfig(MethodConfig):
    score: str = score_option("s", "")
    steps: int = score_option(5, "chain length")
    image_size: int = score_option(SIDE, "image side (speed's random images)")
    channels: int = score_option(1, "image channels")


class Chain(OODMethod):
    """A sampler of ``steps`` evaluations of a Linear(16, 16) plus one Linear(16, 6) head pass."""

    config_cls = ChainConfig
    default_batch_size = 4

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.image_transform = ImageTransform(SIDE, channels=1)

    @classmethod
    def with_budget(cls, config, steps, reps):
        return dataclasses.replace(config, steps=steps) if steps else config

    def budget(self):
        return {"steps": float(self.config.steps)}

    def build_untrained(self, num_classes):
        self.step = nn.Linear(SIDE * SIDE, SIDE * SIDE)
        self.head = nn.Linear(SIDE * SIDE, HIDDEN)

    def inference_networks(self):
        return [self.step, self.head]

    def score_batch(self, x, generator):
        h = x.flatten(1)
        for _ in range(self.config.steps):
            h = self.step(h)
        return BatchOutput({"s": self.head(h).square().sum(1)})

    def fit(self, train): ...
    def save(self, directory): ...
    def load(self, directory): ...

    def cost(self):
        return {"head": 1.0, "step": float(self.config.steps)}


@pytest.fixture(scope="module")
def chain():
    if "test-chain" not in METHODS:
        register_method("test-chain")(Chain)
    return "test-chain"


def _prep(method: str):
    return prepare_methods(RunConfig(methods=[method], device="cpu"))


def test_flops_of_a_tiny_net_match_a_hand_count():
    net = nn.Sequential(nn.Linear(8, 4, bias=False), nn.ReLU())
    x = torch.rand(3, 8)
    assert count_flops(lambda: net(x)) == 2 * 3 * 8 * 4  # multiply-adds of the matmul; ReLU is not counted
    conv, img = nn.Conv2d(2, 5, 3), torch.rand(1, 2, 6, 6)
    assert count_flops(lambda: conv(img)) == 2 * 5 * 4 * 4 * 2 * 3 * 3


def test_extrapolation_scales_only_the_sampler():
    # 1 s fixed + 0.5 s per sampler evaluation, measured at 4 and 1 evaluations
    assert linear_fit(3.0, 4, 1.5, 1) == (1.0, 0.5)
    assert extrapolate(3.0, 4, 1.5, 1, 100) == pytest.approx(51.0)  # not 3.0 * 100 / 4 = 75
    assert extrapolate(1.0, 4, 1.2, 1, 100) == pytest.approx(1.0)  # noise: a negative slope is clipped


def test_timing_steps_shorten_a_chain_and_extrapolate_evaluations_and_flops(chain):
    r = measure_method(_prep(chain), chain, SpeedSetup(images=4, timing_steps=2, min_time=0.001))
    assert r.cost_full == {"head": 1.0, "step": 5.0} and r.timed.cost == {"head": 1.0, "step": 2.0}
    assert r.extrapolated and r.sampler == ("step",)
    per_img = 2 * (SIDE * SIDE) ** 2  # one step evaluation
    head = 2 * SIDE * SIDE * HIDDEN
    assert r.timed.flops_per_img == head + 2 * per_img
    assert r.flops_full == pytest.approx(head + 5 * per_img)
    assert r.timed.timing.runs >= 1 and r.timed.timing.median_s > 0


def test_timing_steps_never_lengthen_a_chain(chain):
    r = measure_method(_prep(chain), chain, SpeedSetup(images=2, timing_steps=10, min_time=0.001))
    assert r.timed.cost == r.cost_full == {"head": 1.0, "step": 5.0} and not r.extrapolated
    assert r.s_per_img_full == r.timed.s_per_img


def test_end_to_end_mode_decodes_the_given_folder(chain, tmp_path, monkeypatch):
    write_images(tmp_path / "imgs", 5, size=9)
    data = load_dataset(str(tmp_path / "imgs"), "test", DataContext(root=tmp_path))
    decoded = []
    orig = ImageTransform.decode
    monkeypatch.setattr(ImageTransform, "decode", lambda self, img: decoded.append(img.size) or orig(self, img))
    r = measure_method(_prep(chain), chain, SpeedSetup(data=data, min_time=0.001, workers=0))
    assert r.timed.images == 5
    # every pass (first call, timed runs) decoded the five 9×9 files
    assert len(decoded) >= 2 * 5 and len(decoded) % 5 == 0 and set(decoded) == {(9, 9)}


def test_native_uint8_batches_finished_on_the_device_equal_the_per_image_transform(tmp_path):
    write_images(tmp_path / "a", 3, size=40)
    write_images(tmp_path / "a" / "small", 2, size=20, mode="L", seed=1)  # mixed sizes and modes
    data = load_dataset(str(tmp_path / "a"), "test", DataContext(root=tmp_path))
    t = ImageTransform(32, channels=3)
    for bs in (2, 5):
        plain = [b for b in DeviceBatches(data, t, bs, CPU, native=False)]
        fast = [b for b in DeviceBatches(data, t, bs, CPU, native=True)]
        assert len(plain) == len(fast) == len(DeviceBatches(data, t, bs, CPU, native=True)) == -(-len(data) // bs)
        for (x0, y0, i0), (x1, y1, i1) in zip(plain, fast):
            assert torch.equal(x0, x1) and torch.equal(y0, y1) and torch.equal(i0, i1)


def test_compiled_networks_score_like_the_plain_ones(chain):
    """The compiled path (aot_eager: traced and functionalised like inductor's input, no C
    compiler) against the plain one: a method through ``prepare_inference``, and DLSR's LFDN."""
    from ood_bench.methods.dlsr.lfdn import LFDN
    from ood_bench.utils.device import prepare_network

    x = torch.rand(3, 1, SIDE, SIDE)
    out = {}
    for mode in ("off", "on"):
        torch.manual_seed(0)
        m = Chain(ChainConfig(), RunContext(device=CPU, compile=mode, compile_backend="aot_eager"))
        m.build_untrained(10)
        assert m.prepare_inference() == (mode == "on") and not m.prepare_inference()  # once
        with torch.no_grad():
            out[mode] = m.score_batch(x, torch.Generator()).scores["s"]
    torch.testing.assert_close(out["on"], out["off"], rtol=1e-5, atol=1e-6)

    torch.manual_seed(0)
    plain = LFDN(24, 32, 2).eval()
    for p in plain.parameters():  # the zero-initialised output layers would hide differences
        torch.nn.init.normal_(p, std=0.1)
    fast = LFDN(24, 32, 2).eval()
    fast.load_state_dict(plain.state_dict())
    prepare_network(fast, CPU, compile=True, backend="aot_eager")
    assert set(fast.state_dict()) == set(plain.state_dict())  # saving/loading unaffected
    z, t = torch.randn(5, 24), torch.tensor([3, 2, 1, 0, 3])
    with torch.no_grad():
        torch.testing.assert_close(fast(z, t), plain(z, t), rtol=1e-5, atol=1e-6)


def test_unet_training_throughput_runs_two_short_trainings():
    from ood_bench.methods.unet import unet_training_throughput
    from ood_bench.methods.lmd.config import LMDConfig

    c = LMDConfig(image_size=8, base_channels=32, channel_mult=(1,), attention_resolutions=(), mask_blocks=2,
                  train_batch_size=2, warmup_steps=0)
    assert unet_training_throughput(c, CPU, steps=(1, 2)) > 0
