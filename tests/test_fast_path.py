"""The GPU fast path's options on a CPU: cache keys, compiled training against eager training,
``speed --train``, and bad options as one-line errors (no timing assertions)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ood_bench import create_method
from ood_bench.cli import main
from ood_bench.methods.training import TrainSpec, train
from ood_bench.utils.device import numerics_key
from ood_bench.utils.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU


def test_cpu_defaults_add_nothing_to_cache_keys():
    # CPU runs keep the keys (and so the cached models and scores) they had before the fast path
    assert numerics_key("auto", "auto", CPU) == {}
    assert numerics_key("fp32", "off", CPU) == {}
    assert numerics_key("auto", "on", CPU) == {"compile": "on"}  # compiled kernels round differently


def test_cuda_keys_tell_the_fast_path_from_the_fp32_reference():
    fast, plain = numerics_key("auto", "auto", CUDA), numerics_key("fp32", "off", CUDA)
    assert fast == {"precision": "auto", "compile": "on"} and plain == {"precision": "fp32"}
    assert numerics_key("auto", "graphs", CUDA, stage="score")["compile"] == "graphs"
    assert numerics_key("bf16", "auto", CUDA) == fast  # bf16 is what auto means on CUDA


def test_cpu_fast_path_options_enter_the_keys():
    assert numerics_key("bf16", "off", CPU) == {"precision": "bf16"}
    assert numerics_key("auto", "off", CPU, fast_path_mode="on") == {"fast_path": "on"}
    assert numerics_key("bf16", "on", CPU, fast_path_mode="on", backend="aot_eager") == {
        "precision": "bf16", "fast_path": "on", "compile": "on", "compile_backend": "aot_eager"}
    assert numerics_key("auto", "auto", CUDA, fast_path_mode="off")["fast_path"] == "off"
    assert "fast_path" not in numerics_key("fp32", "off", CUDA, fast_path_mode="off")  # fp32 is plain already


def _train(compile: str | None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.SiLU(), nn.Linear(16, 1))
    x = torch.randn(40, 6)
    y = x[:, :1] * 2 - x[:, 1:2]

    def loss_fn(net, batch, g):
        xb, yb = batch
        return ((net(xb + 0.01 * torch.randn(xb.shape, generator=g)) - yb) ** 2).mean()

    spec = TrainSpec(epochs=3, batch_size=8, lr=1e-2, ema_decay=0.9)
    return train(model, (x, y), loss_fn, spec, CPU, seed=0, compile=compile)


def test_compiled_training_matches_eager_training():
    # aot_eager traces the same graph torch.compile's inductor would compile, without a C compiler
    eager, compiled = _train(None), _train("aot_eager")
    assert len(compiled.epoch_losses) == 3 and compiled.epoch_losses[-1] < compiled.epoch_losses[0]
    assert compiled.epoch_losses == pytest.approx(eager.epoch_losses, rel=1e-5)
    e, c = eager.model.state_dict(), compiled.model.state_dict()
    assert set(e) == set(c)  # the saved network is the plain module: keys without "_orig_mod."
    for k in e:
        torch.testing.assert_close(c[k], e[k], rtol=1e-4, atol=1e-6)


def test_speed_train_times_the_unets_of_lmd_and_diffood(capsys):
    assert main(["speed", "--method", "lmd", "diffood", "dlsr", "--train", "--train-steps", "2",
                 "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("UNet training speed, embedded settings")
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[3:]}
    assert set(rows) == {"lmd", "diffood"}  # DLSR trains no UNet: left out
    assert rows["lmd"][1] == "ddpm-unet" and rows["diffood"][1] == "cond-ddpm-unet"  # one row per shared network
    for row in rows.values():
        assert row[2] == "2" and float(row[-1]) > 0


def test_speed_train_without_a_unet_method_is_a_one_line_error(capsys):
    assert main(["speed", "--method", "dlsr", "--train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "trains a UNet" in err[0]


def test_bad_fast_path_options_are_refused():
    with pytest.raises(ConfigError, match="unknown --compile"):
        create_method("pixel-mahalanobis", compile="sometimes")
    assert create_method("pixel-mahalanobis", compile="off").ctx.compile == "off"


@pytest.mark.parametrize("flag", ["--compile", "--precision", "--fast-path", "--compile-backend"])
def test_bad_fast_path_flags_exit_2(capsys, flag):
    with pytest.raises(SystemExit) as e:
        main(["run", "--method", "dlsr", flag, "bf8"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def _unet_pair(num_class_embeds=None):
    from ood_bench.methods.lmd.config import LMDConfig
    from ood_bench.methods.unet import unet_from_config
    from ood_bench.utils.device import prepare_network

    c = LMDConfig(image_size=8, channels=1, base_channels=32, channel_mult=(1, 2), attention_resolutions=(),
                  mask_blocks=2)
    torch.manual_seed(0)
    plain = unet_from_config(c, num_class_embeds).eval()
    fast = unet_from_config(c, num_class_embeds).eval()
    fast.load_state_dict(plain.state_dict())
    prepare_network(fast, CPU, compile=True, backend="aot_eager")
    return plain, fast


def _graphs_of(fn):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    out = fn()
    return out, counters["stats"]["unique_graphs"]


def test_compiled_samplers_equal_the_plain_ones_with_one_graph_for_every_step():
    # The samplers hand the UNet its timestep as a tensor: an int would make torch.compile
    # specialise on it and trace again (on a GPU: compile again) during the chain.
    from diffusers import DDPMScheduler

    from ood_bench.methods.diffood.guidance import guided_denoise
    from ood_bench.methods.lmd.inpaint import inpaint

    sched = DDPMScheduler(num_train_timesteps=1000)
    x0 = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = (torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    plain, fast = _unet_pair()
    a = inpaint(plain, sched, x0, mask, 6, torch.Generator().manual_seed(0))
    b, graphs = _graphs_of(lambda: inpaint(fast, sched, x0, mask, 6, torch.Generator().manual_seed(0)))
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert graphs == 1

    plain, fast = _unet_pair(num_class_embeds=3)  # DiffOOD's: 2 classes + null
    labels = torch.tensor([0, 1, 1, 0])
    a = guided_denoise(plain, sched, x0, 100, 20, labels, 2, 3.0)
    b, graphs = _graphs_of(lambda: guided_denoise(fast, sched, x0, 100, 20, labels, 2, 3.0))
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert graphs == 1


def test_the_loader_splits_only_a_transform_the_method_does_not_override():
    from ood_bench.data.transforms import ImageTransform
    from ood_bench.methods.base import OODMethod, RunContext
    from ood_bench.methods.registry import METHODS

    cls = METHODS.get("pixel-mahalanobis")
    plain = cls(cls.config_cls(), RunContext(device=CPU))
    assert isinstance(plain.image_transform, ImageTransform)
    assert plain.loader_transform() is plain.image_transform  # decoded in workers, resized on the GPU

    class Inverted(cls):  # keeps image_transform but does more per image
        def transform(self, img):
            return 1 - self.image_transform(img)

    inv = Inverted(cls.config_cls(), RunContext(device=CPU))
    assert inv.loader_transform() == inv.transform  # its own transform, on CPU and GPU alike

    class Bare(OODMethod):
        fit = score_batch = save = load = cost = lambda *a: None

    with pytest.raises(NotImplementedError, match="sets no image_transform"):
        Bare(cls.config_cls(), RunContext(device=CPU)).transform(None)
