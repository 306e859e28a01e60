"""Exact resume, fixed training threads, finished sub-models saved at once, diverged training refused."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ood_bench.methods.training import TRAIN_THREADS, TrainSpec, resumed_seconds, seed_network, train
from ood_bench.utils.errors import TrainingDivergedError

CPU = torch.device("cpu")


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g)


def _net(seed: int = 0) -> nn.Module:
    seed_network(seed, "test net")
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 64, 3))


def _loss(model, batch, g):
    return F.cross_entropy(model(batch[0]), batch[1])


SPEC = TrainSpec(epochs=4, batch_size=16, lr=0.05, optimizer="sgd", checkpoint_every=1)


def test_seed_network_gives_the_same_weights_whatever_ran_before():
    a = _net().state_dict()
    torch.rand(1000)  # a resumed fit skips work that draws random numbers
    b = _net().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_interrupted_training_resumes_to_the_uninterrupted_weights(tmp_path):
    full = train(_net(), _data(), _loss, SPEC, CPU, seed=1, work_dir=tmp_path / "a").model.state_dict()
    calls = {"n": 0}

    def dying(model, batch, g):
        calls["n"] += 1
        if calls["n"] == 9:  # during epoch 3 (4 steps per epoch): checkpoint of epoch 2 exists
            raise KeyboardInterrupt
        return _loss(model, batch, g)

    work = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        train(_net(), _data(), dying, SPEC, CPU, seed=1, work_dir=work)
    assert (work / "train_state.pt").is_file()
    resumed = train(_net(), _data(), _loss, SPEC, CPU, seed=1, work_dir=work).model.state_dict()
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert resumed_seconds(work) > 0  # the first segment's training time is credited


def test_a_finished_network_is_saved_at_once_and_not_trained_again(tmp_path):
    first = train(_net(), _data(), _loss, SPEC, CPU, seed=2, work_dir=tmp_path).model.state_dict()
    assert (tmp_path / "train_state.done.pt").is_file() and not (tmp_path / "train_state.pt").exists()

    def never(model, batch, g):
        raise AssertionError("a finished network was trained again")

    again = train(_net(), _data(), never, SPEC, CPU, seed=2, work_dir=tmp_path).model.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_training_uses_fixed_threads_and_is_bitwise_equal_across_thread_counts():
    seen, before = [], torch.get_num_threads()

    def recording(model, batch, g):
        seen.append(torch.get_num_threads())
        return _loss(model, batch, g)

    states = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            states.append(train(_net(), _data(), recording, SPEC, CPU, seed=3).model.state_dict())
        finally:
            torch.set_num_threads(before)
    assert set(seen) == {TRAIN_THREADS}
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_non_finite_loss_stops_training_with_one_line(tmp_path):
    spec = TrainSpec(epochs=3, batch_size=16, lr=1e30, optimizer="sgd", checkpoint_every=1)
    with pytest.raises(TrainingDivergedError) as e:
        train(_net(), _data(), _loss, spec, CPU, seed=0, work_dir=tmp_path)
    assert "lower the learning rate" in e.value.one_line().lower() and "\n" not in e.value.one_line()
    assert not (tmp_path / "train_state.done.pt").exists()


def test_diffood_keeps_its_classifier_when_the_unet_training_is_interrupted(tmp_path, monkeypatch):
    import ood_bench.methods.classifier.artifact as clf_artifact
    import ood_bench.methods.ddpm as ddpm
    from ood_bench.api import create_method, fit_method, load_dataset

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    real = ddpm.train_unet
    monkeypatch.setattr(ddpm, "train_unet", interrupted)
    opts = dict(classifier_width=4, classifier_epochs=2, classifier_size=8, epochs=1)
    train = load_dataset("digits04", "train").take(40)
    with pytest.raises(KeyboardInterrupt):
        fit_method(create_method("diffood", preset="embedded", **opts), train, cache_dir=tmp_path)
    (saved,) = (tmp_path / "artifacts" / "classifier").glob("*/artifact.json")  # the classifier is an artifact of its own
    monkeypatch.setattr(ddpm, "train_unet", real)
    monkeypatch.setattr(clf_artifact, "fit_classifier", interrupted)  # loaded, never trained again
    m = fit_method(create_method("diffood", preset="embedded", **opts), train, cache_dir=tmp_path)
    assert m.num_classes == 5 and saved.is_file() and m.unet is m.artifacts["unet"].unet


def test_classifier_normalisation_does_not_depend_on_the_thread_count():
    from ood_bench.methods.classifier.network import fit_classifier
    from ood_bench.methods.diffood.config import DiffOODConfig

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (625, 1, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 5, (625,), generator=g)
    c = DiffOODConfig(image_size=32, channels=1, classifier_width=4, classifier_epochs=1, classifier_batch_size=625)
    before, means = torch.get_num_threads(), []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            clf, _ = fit_classifier(c, x, y, 5, CPU, 0, None, lambda s: None)
        finally:
            torch.set_num_threads(before)
        means.append(clf.mean.clone())
    assert torch.equal(means[0], means[1])
