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
    assert fast == {"precision": "auto", "compile": "auto"} and plain == {"precision": "fp32"}
    assert numerics_key("auto", "graphs", CUDA)["compile"] == "graphs"


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
    for row in rows.values():
        assert row[1] == "UNet" and row[2] == "2" and float(row[-1]) > 0


def test_speed_train_without_a_unet_method_is_a_one_line_error(capsys):
    assert main(["speed", "--method", "dlsr", "--train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "trains a UNet" in err[0]


def test_bad_fast_path_options_are_refused():
    with pytest.raises(ConfigError, match="unknown --compile"):
        create_method("pixel-mahalanobis", compile="sometimes")
    assert create_method("pixel-mahalanobis", compile="off").ctx.compile == "off"


@pytest.mark.parametrize("flag", ["--compile", "--precision"])
def test_bad_fast_path_flags_exit_2(capsys, flag):
    with pytest.raises(SystemExit) as e:
        main(["run", "--method", "dlsr", flag, "bf8"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
