"""The shared training loop: checkpoints, resume, EMA, warmup."""
import pytest
import torch

from ood_bench.methods.training import TrainSpec, _lr_factor, train


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


DATA = (torch.randn(64, 4), torch.randn(64, 1))
SPEC = TrainSpec(epochs=6, batch_size=16, lr=1e-2, ema_decay=0.9, checkpoint_every=2, keep_first_epoch=True)


def _loss(model, batch, g):
    x, y = batch
    return ((model(x + 0.01 * torch.randn(x.shape, generator=g)) - y) ** 2).mean()


def test_interrupted_training_resumes_to_the_same_model(tmp_path):
    full = train(_model(), DATA, _loss, SPEC, torch.device("cpu"), seed=3, work_dir=tmp_path / "a")

    calls = {"n": 0}

    def crashing(model, batch, g):
        calls["n"] += 1
        if calls["n"] == 4 * 4 + 2:  # in epoch 5 (after the checkpoint at epoch 4)
            raise KeyboardInterrupt
        return _loss(model, batch, g)

    with pytest.raises(KeyboardInterrupt):
        train(_model(), DATA, crashing, SPEC, torch.device("cpu"), seed=3, work_dir=tmp_path / "b")
    assert (tmp_path / "b" / "train_state.pt").is_file()
    resumed = train(_model(), DATA, _loss, SPEC, torch.device("cpu"), seed=3, work_dir=tmp_path / "b")
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert resumed.epoch_losses == pytest.approx(full.epoch_losses)
    assert not (tmp_path / "b" / "train_state.pt").exists()  # removed once training finished
    assert full.first_epoch_state is not None and len(full.epoch_losses) == 6


def test_ema_weights_differ_from_raw_and_warmup_ramps():
    res = train(_model(), DATA, _loss, SPEC, torch.device("cpu"), seed=0)
    raw = _model()
    assert any(not torch.equal(a, b) for a, b in zip(res.model.state_dict().values(), raw.state_dict().values()))
    spec = TrainSpec(epochs=1, batch_size=1, lr=1.0, warmup_steps=4, schedule="cosine")
    assert _lr_factor(0, 100, spec) == pytest.approx(0.25)
    assert _lr_factor(3, 100, spec) == pytest.approx(1.0 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 0.03)).item()))
    assert _lr_factor(100, 100, spec) == pytest.approx(0.0, abs=1e-12)
