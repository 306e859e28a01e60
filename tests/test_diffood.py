"""DiffOOD on CPU with tiny models: guidance arithmetic, the DDIM chain, classifier, refusal."""
import numpy as np
import pytest
import torch

from ood_bench.cli import main
from ood_bench.data import DataContext, load_dataset
from ood_bench.methods.backbones import load_by_order
from ood_bench.methods.base import RunContext
from ood_bench.api import fit_method
from ood_bench.methods.diffood import DiffOOD, DiffOODConfig
from helpers import reload_artifacts
from ood_bench.methods.classifier.network import Classifier, ResNet18x32, random_crop
from ood_bench.methods.diffood.guidance import ddim_timesteps, guided_denoise, guided_eps
from ood_bench.methods.unet import ddpm_scheduler


class LabelEcho(torch.nn.Module):
    """ε(x, t, y) = y everywhere (null class K gives K); records batch sizes and timesteps."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, class_labels=None):
        self.calls.append((len(x), int(t[0])))
        out = class_labels.float().view(-1, 1, 1, 1).expand_as(x).clone()
        return type("O", (), {"sample": out})()


def test_guidance_is_uncond_plus_scale_times_difference_in_one_batch():
    unet = LabelEcho()
    x = torch.zeros(3, 1, 4, 4)
    eps = guided_eps(unet, x, 240, torch.tensor([0, 1, 2]), null_label=5, scale=3.0)
    # ε_u = 5, ε_c = y → 5 + 3 (y − 5) = 3y − 10 (the code's (1+β)ε_c − βε_u with β = 2)
    assert torch.equal(eps[:, 0, 0, 0], torch.tensor([-10.0, -7.0, -4.0]))
    assert unet.calls == [(6, 240)]  # conditional and null passes batched together


def test_ddim_chain_for_t240_stride20():
    assert ddim_timesteps(240, 20) == [240, 220, 200, 180, 160, 140, 120, 100, 80, 60, 40, 20]
    with pytest.raises(ValueError):
        ddim_timesteps(250, 20)
    unet = LabelEcho()
    guided_denoise(unet, ddpm_scheduler(), torch.zeros(2, 1, 4, 4), 240, 20, torch.tensor([0, 1]), 3, 3.0)
    assert [t for _, t in unet.calls] == ddim_timesteps(240, 20)


class TrueEps(torch.nn.Module):
    """Predicts the exact ε of a known x0: DDIM must then land exactly on x0's level-0 point."""

    def __init__(self, x0, alphas):
        super().__init__()
        self.x0, self.alphas = x0, alphas

    def forward(self, x, t, class_labels=None):
        a = self.alphas[int(t[0])]
        x0 = torch.cat([self.x0, self.x0])
        return type("O", (), {"sample": (x - a.sqrt() * x0) / (1 - a).sqrt()})()


def test_ddim_lands_on_the_noise_level_of_timestep_0():
    sched = ddpm_scheduler()
    x0, eps = torch.rand(2, 1, 4, 4) * 2 - 1, torch.randn(2, 1, 4, 4)
    xt = sched.add_noise(x0, eps, torch.tensor([240, 240]))
    out = guided_denoise(TrueEps(x0, sched.alphas_cumprod), sched, xt, 240, 20, torch.tensor([0, 0]), 1, 3.0)
    a0 = sched.alphas_cumprod[0]
    torch.testing.assert_close(out, a0.sqrt() * x0 + (1 - a0).sqrt() * eps, atol=1e-4, rtol=1e-4)
    assert float(a0) == pytest.approx(0.9999)


def test_default_cost_matches_the_paper():
    m = DiffOOD(DiffOODConfig(), RunContext(device=torch.device("cpu")))
    assert m.cost() == {"unet": 96.0, "classifier": 9.0}  # 4 × 12 × 2; 1 + 4 + 4


def test_resnet18_32x32_size_and_openood_style_checkpoint():
    net = ResNet18x32(10)
    assert 11.1e6 < sum(p.numel() for p in net.parameters()) < 11.2e6
    renamed = {k.replace("downsample", "shortcut"): v for k, v in net.state_dict().items()}
    other = ResNet18x32(10)
    load_by_order(other, renamed)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(net.eval()(x)[0], other.eval()(x)[0])
    logits, feats = Classifier(10, 1, 8)(torch.rand(3, 1, 8, 8))
    assert logits.shape == (3, 10) and feats.shape == (3, 64)


def test_classifier_sees_inputs_at_its_design_size():
    torch.manual_seed(0)
    clf = Classifier(5, 1, 8).eval()  # input_size 32 by default
    seen = []
    clf.net.conv1.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[-2:]))
    x = torch.rand(2, 1, 8, 8)
    up = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(clf(x)[0], clf(up)[0])  # 8 px is resized; 32 px passes through
    assert seen == [(32, 32), (32, 32)]
    clf.input_size = 0  # keep the input's size
    clf(x)
    assert seen[-1] == (8, 8)
    with pytest.raises(ValueError, match="classifier_size"):
        DiffOODConfig(classifier_size=4)


def test_random_crop_takes_windows_of_the_padded_image():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(5, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_crop(x, 0, g), x)
    out = random_crop(x, 1, g)
    padded = torch.nn.functional.pad(x[:1], (1, 1, 1, 1))[0, 0]
    windows = {tuple(padded[i:i + 4, j:j + 4].flatten().tolist()) for i in range(3) for j in range(3)}
    assert all(tuple(o[0].flatten().tolist()) in windows for o in out)


def test_tiny_diffood_fit_score_and_accuracy(tmp_path):
    cfg = DiffOODConfig(image_size=8, channels=1, base_channels=16, channel_mult=(1, 2), layers_per_block=1,
                        attention_resolutions=(), dropout=0.0, norm_groups=8, epochs=2, train_batch_size=32,
                        warmup_steps=5, hflip=False, classifier_width=8, classifier_epochs=2, classifier_batch_size=32,
                        repeats=2, timesteps=(40, 80), stride=20, score="logit@80")
    m = DiffOOD(cfg, RunContext(device=torch.device("cpu"), batch_size=16, work_dir=tmp_path / "w"))
    train = load_dataset("digits", "train", DataContext()).take(96)
    fit_method(m, train)
    assert set(m.artifacts) == {"classifier", "unet"} and m.unet is m.artifacts["unet"].unet
    assert 0.0 <= m.fit_report()["classifier_train_acc"] <= 1.0 and m.num_classes == 10
    test = load_dataset("digits", "test", DataContext()).take(12)
    s = m.score(test)
    assert set(s.scores) == {f"{sp}@{t}" for sp in ("logit", "feature", "pixel") for t in (40, 80)}
    assert s.predictions.shape == (12,) and s.predictions.max() < 10
    assert (s.scores["logit@80"] >= 0).all() and (s.scores["logit@80"] <= 2).all()  # L1 of unit vectors ≤ 2
    (tmp_path / "state").mkdir()
    m.save(tmp_path / "state")
    m2 = DiffOOD(cfg, RunContext(device=torch.device("cpu"), batch_size=16))
    m2.artifacts = reload_artifacts(m, tmp_path / "artifacts")
    m2.load(tmp_path / "state")
    np.testing.assert_allclose(m2.score(test).scores["logit@80"], s.scores["logit@80"], rtol=1e-4, atol=1e-6)
    assert m.save_examples(test, tmp_path / "ex.png")


def test_unlabelled_id_is_refused_before_any_work(tmp_path, capsys):
    rc = main(["run", "--method", "dlsr", "diffood", "--id", "textures", "--ood", "noise",
               "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: diffood needs class labels")
    assert not (tmp_path / "o").exists() and not (tmp_path / "results" / "cache").exists()


def test_classifier_on_frozen_features_trains_only_its_head():
    from ood_bench.methods.baselines.classifier_scores import MSPConfig
    from ood_bench.methods.classifier.network import FrozenFeatureNet, fit_classifier, new_classifier
    from ood_bench.methods.training import seed_network

    assert DiffOODConfig().classifier_backbone == ""  # the paper's ResNet-18 trained from scratch
    cfg = MSPConfig(image_size=8, channels=1, hflip=False, classifier_backbone="tf_efficientnet_lite0",
                    classifier_weights="random", classifier_size=32, classifier_epochs=3, classifier_batch_size=8)
    assert cfg.stage_dict("fit")["classifier_backbone"] == "tf_efficientnet_lite0"  # part of the cache key
    seed_network(0, "classifier")  # as fit_classifier does before building it
    before = new_classifier(cfg, 2).state_dict()
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    clf, report = fit_classifier(cfg, x, torch.arange(16) % 2, 2, torch.device("cpu"), 0, None, lambda s: None)
    assert isinstance(clf.net, FrozenFeatureNet) and not clf.training
    after = clf.state_dict()
    frozen = [k for k in after if k.startswith("net.features.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # backbone (and its BN stats) untouched
    assert not torch.equal(before["net.fc.weight"], after["net.fc.weight"])  # the head trained
    assert torch.equal(after["mean"], torch.zeros(1, 1, 1, 1)) and torch.equal(after["std"], torch.ones(1, 1, 1, 1))
    logits, feats = clf(x[:4].float() / 255)
    assert logits.shape == (4, 2) and feats.shape == (4, clf.net.features.dim)
    assert 0.0 <= report["classifier_train_acc"] <= 1.0


def test_embedded_preset_shares_one_classifier_recipe():
    from ood_bench.api import build_config

    opts = build_config("embedded").method_options
    clf = {k: v for k, v in opts["msp"].items()}
    assert opts["energy"] == clf and {k: opts["diffood"][k] for k in clf} == clf  # the YAML anchor
    assert clf["classifier_backbone"] == "tf_efficientnet_lite0" and clf["classifier_size"] == 64
