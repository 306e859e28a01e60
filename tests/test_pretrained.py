"""Pretrained models by name: folders written by save_pretrained load through the methods' own
code (LMD/DiffOOD UNet + scheduler, DLSR's LFDN, DiffOOD's classifier); repo ids fail offline in one line."""
import pytest
import torch
from diffusers import DDPMScheduler

from ood_bench.methods.base import RunContext
from ood_bench.methods.classifier.network import Classifier, classifier_file, save_classifier
from ood_bench.methods.ddpm import DDPMArtifact
from ood_bench.methods.dlsr import DLSR, DLSRConfig
from ood_bench.methods.dlsr.lfdn import LFDN
from ood_bench.methods.lmd import LMD, LMDConfig
from ood_bench.methods.pretrained import pretrained_folder
from ood_bench.methods.unet import build_unet
from ood_bench.utils.errors import ConfigError, MissingWeightsError

CPU = RunContext(device=torch.device("cpu"))
TINY = dict(image_size=8, channels=1, base_channels=8, channel_mult=(1, 2), layers_per_block=1,
            attention_resolutions=(), dropout=0.0, norm_groups=4, distances=("mse",), score="mse",
            mask_blocks=4, reps=2, steps=2)


def test_lmd_loads_a_pipeline_folder_unet_and_its_scheduler_without_training(tmp_path):
    torch.manual_seed(0)
    unet = build_unet(8, 1, 8, (1, 2), 1, (), 0.0, norm_num_groups=4)
    unet.save_pretrained(tmp_path / "ddpm" / "unet")
    # a DDPM pipeline's scheduler: other betas, and clip_sample on (as google/ddpm-cifar10-32's)
    DDPMScheduler(num_train_timesteps=1000, beta_end=0.03, clip_sample=True).save_pretrained(tmp_path / "ddpm" / "scheduler")
    m = LMD(LMDConfig(unet=str(tmp_path / "ddpm"), **TINY), CPU)
    LMD.preflight(m.config)
    recipe = dict(m.requires()["ddpm"].recipe)
    assert set(recipe) == {"unet", "image_size", "channels", "diffusion_steps", "beta_start", "beta_end"}
    m.artifacts["ddpm"] = DDPMArtifact.build(recipe, None, CPU)  # no training set needed: nothing is trained
    m.fit(None)
    assert all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(), m.unet.state_dict().values()))
    assert m.scheduler.config.beta_end == 0.03 and m.scheduler.config.clip_sample is False
    (tmp_path / "cache").mkdir()
    m.artifacts["ddpm"].save(tmp_path / "cache")  # the cache round trip keeps the loaded schedule
    m2 = LMD(LMDConfig(**TINY), CPU)
    m2.artifacts["ddpm"] = DDPMArtifact.load(recipe, tmp_path / "cache", CPU)
    m2.load(tmp_path / "cache")
    assert m2.scheduler.config.beta_end == 0.03
    x = torch.rand(2, 1, 8, 8)
    out = m.score_batch(x, torch.Generator().manual_seed(0))
    assert out.scores["mse"].shape == (2,)

    bad = LMDConfig(unet=str(tmp_path / "ddpm"), **{**TINY, "diffusion_steps": 500, "steps": 2})
    with pytest.raises(ConfigError, match="set diffusion_steps=1000"):
        DDPMArtifact.build(dict(LMD(bad, CPU).requires()["ddpm"].recipe), None, CPU)


def test_dlsr_reuses_a_published_lfdn_folder(tmp_path):
    cfg = dict(backbone="tf_efficientnet_lite0", image_size=32, width=16, blocks=1)
    final, first = LFDN(512, 16, 1), LFDN(512, 16, 1)
    torch.nn.init.normal_(final.out[2].weight)  # not the zero init: the loaded weights must show
    final.save_pretrained(tmp_path / "pub" / "lfdn")
    m = DLSR(DLSRConfig(lfdn=str(tmp_path / "pub"), lr_score=False, **cfg), CPU)
    m.fit(None)
    assert torch.equal(m.model.out[2].weight, final.out[2].weight) and m.first_model is None
    assert m.score_batch(torch.rand(2, 3, 32, 32), torch.Generator()).scores["mfsim"].shape == (2,)
    with pytest.raises(ConfigError, match="no lfdn_first/"):
        DLSR.preflight(DLSRConfig(lfdn=str(tmp_path / "pub"), **cfg))
    first.save_pretrained(tmp_path / "pub" / "lfdn_first")
    DLSR.preflight(DLSRConfig(lfdn=str(tmp_path / "pub"), **cfg))
    LFDN(100, 16, 1).save_pretrained(tmp_path / "other" / "lfdn")
    with pytest.raises(ConfigError, match="is for 100-d features"):
        DLSR(DLSRConfig(lfdn=str(tmp_path / "other"), lr_score=False, **cfg), CPU).fit(None)


def test_classifier_by_folder(tmp_path):
    clf = Classifier(3, 1, 8)
    save_classifier(clf, tmp_path / "clf")
    assert classifier_file(str(tmp_path / "clf")) == tmp_path / "clf" / "classifier.pt"
    (tmp_path / "clf" / "other.pth").write_bytes(b"")
    (tmp_path / "clf" / "classifier.pt").unlink()
    assert classifier_file(str(tmp_path / "clf")).name == "other.pth"


def test_repo_ids_fail_offline_in_one_line(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as e:
        pretrained_folder("google/ddpm-cifar10-32", "UNet")
    msg = e.value.one_line()
    assert "https://huggingface.co/google/ddpm-cifar10-32" in msg and "--local-dir" in msg and "\n" not in str(e.value)
    with pytest.raises(MissingWeightsError, match="neither a folder nor a Hugging Face repo id"):
        pretrained_folder("no-such-folder", "UNet")
