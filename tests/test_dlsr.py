"""DLSR pieces on CPU with tiny sizes: weights mapping, features, LFDN, DDIM chain, scores."""
import numpy as np
import pytest
import timm
import torch

from ood_bench.api import fit_method
from ood_bench.utils.errors import MissingWeightsError
from helpers import reload_artifacts
from ood_bench.data import DataContext, load_dataset
from ood_bench.methods.backbones import create_backbone, load_by_order
from ood_bench.methods.base import RunContext
from ood_bench.methods.dlsr import DLSR, DLSRConfig
from ood_bench.methods.features import layerwise_cosine, standardize
from ood_bench.methods.dlsr.lfdn import LFDN


def test_load_by_order_maps_renamed_checkpoints_and_checks_shapes():
    src = timm.create_model("resnet18", pretrained=False)
    renamed = {f"other.{i}": v for i, v in enumerate(src.state_dict().values())}
    dst = timm.create_model("resnet18", pretrained=False)
    load_by_order(dst, renamed)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    wrong = timm.create_model("resnet34", pretrained=False).state_dict()
    with pytest.raises(MissingWeightsError, match="not a checkpoint of this architecture"):
        load_by_order(dst, wrong)


def test_offline_lite0_weights_are_real_imagenet_weights():
    """Mapped by order into timm, the packaged Lite0 puts skimage's cat in class 285 (Egyptian cat)."""
    import skimage.data
    import torch.nn.functional as F

    feat, cfg = create_backbone("tf_efficientnet_lite0")
    assert cfg["channels"] == [16, 24, 40, 112, 320]
    full = timm.create_model("tf_efficientnet_lite0")
    load_by_order(full, torch.load(cfg["weights"], map_location="cpu", weights_only=True))
    img = torch.tensor(skimage.data.chelsea()).permute(2, 0, 1)[None].float() / 255
    x = (F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True) - 0.5) / 0.5
    with torch.no_grad():
        assert int(full.eval()(x).argmax()) == 285


def test_missing_paper_weights_offline_name_file_and_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"efficientnet-b4-6ed6700e\.pth not found in .*checkpoints: run `ood-bench fetch`"):
        create_backbone("tf_efficientnet_b4")


def test_standardize_and_layerwise_cosine():
    v = torch.randn(4, 10) * 3 + 7
    s = standardize(v)
    assert torch.allclose(s.mean(1), torch.zeros(4), atol=1e-5)
    assert torch.allclose(s.std(1), torch.ones(4), atol=1e-4)  # unbiased std, as the paper's code
    a = torch.randn(3, 6)
    assert torch.allclose(layerwise_cosine(a, a, [(0, 2), (2, 6)]), torch.ones(3))
    b = a.clone()
    b[:, :2] *= -1  # first layer opposite, second identical → mean of (-1, 1) = 0
    assert torch.allclose(layerwise_cosine(a, b, [(0, 2), (2, 6)]), torch.zeros(3), atol=1e-6)


def test_lfdn_starts_as_zero_predictor_and_has_paper_size():
    m = LFDN(720, width=1440, num_blocks=16)
    assert 85e6 < sum(p.numel() for p in m.parameters()) < 89e6  # paper: ≈ 87 M
    small = LFDN(12, width=16, num_blocks=2)
    out = small(torch.randn(5, 12), torch.tensor([0, 1, 2, 3, 4]))
    assert out.shape == (5, 12) and torch.count_nonzero(out) == 0  # zero-initialised output layer


def _tiny_dlsr(**kw) -> DLSR:
    cfg = DLSRConfig(backbone="tf_efficientnet_lite0", image_size=32, width=32, blocks=1, epochs=3,
                     train_batch_size=32, **kw)
    return DLSR(cfg, RunContext(device=torch.device("cpu"), batch_size=64))


class Oracle(torch.nn.Module):
    """Predicts the x0 it was built with: the DDIM chain must return it exactly."""

    def __init__(self, z0):
        super().__init__()
        self.z0, self.calls = z0, []

    def forward(self, x, t):
        self.calls.append(int(t[0]))
        return self.z0


def test_ddim_chain_visits_t_to_0_and_returns_the_x0_prediction():
    m = _tiny_dlsr(t=3)
    z0 = torch.randn(4, 10)
    oracle = Oracle(z0)
    rec = m.reconstruct(oracle, z0, torch.randn(4, 10))
    assert oracle.calls == [3, 2, 1, 0]
    assert torch.allclose(rec, z0, atol=1e-5)
    assert m.cost() == {"backbone": 1.0, "lfdn": 8.0}  # (t + 1) × 2 models (final, first epoch)


def test_fit_score_save_load_roundtrip(tmp_path):
    ctx = DataContext()
    train = load_dataset("digits", "train", ctx).take(96)
    m = _tiny_dlsr()
    fit_method(m, train)
    assert m.artifacts["features"].vectors.shape == (96, m.features.dim) and m.features is m.artifacts["features"].extractor
    assert len(m.losses) == 3 and m.losses[-1] < m.losses[0]
    test = load_dataset("digits", "test", ctx).take(20)
    s1 = m.score(test)
    assert set(s1.scores) == {"mse", "mfsim", "lr"} and s1.primary == "mfsim"
    assert np.all(s1.scores["mfsim"] >= -1) and np.all(s1.scores["mfsim"] <= 1)
    m.save(tmp_path)
    m2 = _tiny_dlsr()
    m2.artifacts = reload_artifacts(m, tmp_path / "artifacts")
    m2.load(tmp_path)
    s2 = m2.score(test)
    for k in s1.scores:  # same weights, same seeded noise → same scores
        np.testing.assert_allclose(s1.scores[k], s2.scores[k], rtol=1e-5, atol=1e-6)
