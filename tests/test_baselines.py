"""Baselines: their scores against direct computations, shared fits, one-line errors."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.covariance import LedoitWolf

import ood_bench
from ood_bench.cli import main
from ood_bench.methods.baselines.classifier_scores import MSP, Energy
from ood_bench.methods.baselines.feature_space import KNN
from ood_bench.methods.baselines.gaussian import Gaussian
from ood_bench.utils.errors import ConfigError

CPU = torch.device("cpu")
TINY_CLF = ["--set", "msp.classifier_width=4", "msp.classifier_epochs=1", "msp.image_size=8", "msp.channels=1",
            "energy.classifier_width=4", "energy.classifier_epochs=1", "energy.image_size=8", "energy.channels=1"]


def test_gaussian_distance_is_sklearns_mahalanobis():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    test = rng.normal(size=(30, 6)) * 3
    g = Gaussian()
    shrink = g.fit(torch.from_numpy(train), CPU)
    lw = LedoitWolf().fit(train)
    assert shrink == pytest.approx(lw.shrinkage_)
    np.testing.assert_allclose(g.distance(torch.from_numpy(test)).numpy(), lw.mahalanobis(test), rtol=1e-8)


def test_knn_is_the_kth_neighbour_distance_in_chunks(monkeypatch):
    rng = np.random.default_rng(1)
    bank = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(37, 5))).float(), dim=1)
    q = torch.from_numpy(rng.normal(size=(9, 5))).float()
    m = ood_bench.create_method("knn", device="cpu", k=4, weights="random", backbone="tf_efficientnet_lite0")
    m.bank = bank
    monkeypatch.setattr(KNN, "CHUNK", 5)  # several chunks: the running top-k must merge them
    monkeypatch.setattr(KNN, "vectors", lambda self, x: x)
    got = m.score_batch(q, torch.Generator()).scores["knn"]
    d = torch.cdist(torch.nn.functional.normalize(q, dim=1), bank)
    np.testing.assert_allclose(got.numpy(), d.sort(dim=1).values[:, 3].numpy(), rtol=1e-6)


def test_msp_and_energy_formulas():
    logits = torch.tensor([[4.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    ctx = ood_bench.methods.RunContext(device=CPU)
    msp = MSP(MSP.config_cls(), ctx).logits_score(logits)
    np.testing.assert_allclose(msp.numpy(), [-np.exp(4) / (np.exp(4) + 2), -1 / 3], rtol=1e-6)
    assert torch.equal(msp, -logits.softmax(dim=1).max(dim=1).values)  # T = 1: the paper's MSP, bit for bit
    hot = MSP(MSP.config_cls(temperature=4.0), ctx).logits_score(logits)  # ODIN's temperature scaling
    np.testing.assert_allclose(hot.numpy(), [-np.e / (np.e + 2), -1 / 3], rtol=1e-6)
    e = Energy(Energy.config_cls(temperature=2.0), ctx).logits_score(logits)
    np.testing.assert_allclose(e.numpy(), -2 * np.log(np.exp(logits.numpy() / 2).sum(1)), rtol=1e-6)
    # confident (ID-like) logits score lower than flat ones for both
    assert msp[0] < msp[1] and e[0] < e[1]


def test_msp_and_energy_share_one_trained_classifier(tmp_path):
    rc = main(["run", "--method", "msp", "energy", "--id", "digits04", "--ood", "noise", "--limit", "40",
               "--train-limit", "100", "--bootstrap", "0", "--out", "run", "--quiet", *TINY_CLF])
    assert rc == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    timings = manifest["timings"]
    (clf,) = [a for m in ("msp", "energy") for a in timings[f"{m}/seed0"]["artifacts"] if a["status"] == "trained"]
    (shared,) = timings["energy/seed0"]["artifacts"]
    assert clf["kind"] == "classifier" and shared["status"] == "shared" and shared["key"] == clf["key"]
    assert len(list((tmp_path / "results" / "cache" / "artifacts" / "classifier").glob("*/artifact.json"))) == 1
    scores = pd.read_csv(tmp_path / "run" / "scores.csv")
    preds = scores.pivot_table(index=["dataset", "index"], columns="method", values="prediction")
    assert (preds["msp"] == preds["energy"]).all()  # the same network


def test_baseline_config_errors_are_one_line(capsys):
    with pytest.raises(ConfigError, match="score must be msp"):
        ood_bench.create_method("msp", score="energy")
    rc = main(["run", "--method", "knn", "--id", "digits04", "--ood", "noise", "--train-limit", "10",
               "--set", "knn.weights=random", "knn.k=50", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: knn.k = 50 exceeds the 10 ID training images")


@pytest.mark.parametrize("name", ["pixel-mahalanobis", "mahalanobis", "knn", "msp", "energy"])
def test_single_score_baselines_refuse_another_score_up_front(name, capsys):
    rc = main(["run", "--method", name, "--id", "digits04", "--ood", "noise", "--set", f"{name}.score=mse", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: {name}: score must be ")


def test_class_conditional_mahalanobis_is_lee_et_al_with_a_tied_covariance():
    rng = np.random.default_rng(0)
    means = np.array([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    y = rng.integers(0, 3, 600)
    x = means[y] + rng.normal(size=(600, 3)) @ np.diag([1.0, 0.5, 2.0])
    g = Gaussian()
    assert g.fit_classes(torch.from_numpy(x), torch.from_numpy(y), CPU) == 3
    mu = np.stack([x[y == c].mean(0) for c in range(3)])
    cov = sum(((x[y == c] - mu[c]).T @ (x[y == c] - mu[c])) for c in range(3)) / len(x)  # tied, ML
    prec = np.linalg.inv(cov)
    q = rng.normal(size=(7, 3)) * 4
    want = np.min([np.einsum("bi,ij,bj->b", q - m, prec, q - m) for m in mu], axis=0)
    np.testing.assert_allclose(g.distance(torch.from_numpy(q)).numpy(), want, rtol=1e-8)
    # at a class mean the distance is 0 (the closest class), far from all means it grows
    assert g.distance(torch.from_numpy(mu)).abs().max() < 1e-12
    with pytest.raises(ConfigError, match="gaussian must be one of"):
        ood_bench.create_method("mahalanobis", gaussian="per-class")
