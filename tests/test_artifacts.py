"""Shared artifacts: one build per key, shared within a run, loaded across runs, healed; the
validation hold-out; the ID DDPM shared by two methods."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from ood_bench.data import DataContext, load_dataset
from ood_bench.data.base import holdout_split
from ood_bench.data.transforms import ImageTransform
from ood_bench.engine.cache import Cache
from ood_bench.engine.config import RunConfig
from ood_bench.engine.runner import Runner, prepare
from ood_bench.methods.artifacts import ARTIFACTS, Artifact, ArtifactRequest, register_artifact
from ood_bench.methods.base import BatchOutput, MethodConfig, OODMethod, fit_option, score_option
from ood_bench.methods.ddpm import ddpm_request
from ood_bench.methods.registry import METHODS, register_method
from ood_bench.methods.unet import PixelDiffusionConfig


# ------------------------------------------------------------------ a tiny artifact and two users
class MeanArtifact(Artifact):
    """The mean training image at ``size`` px (counts its builds and loads)."""

    builds = 0
    loads = 0

    def __init__(self, mean: torch.Tensor, n: int) -> None:
        self.mean, self.n = mean, n

    @classmethod
    def build(cls, recipe, train, ctx):
        cls.builds += 1
        t = ImageTransform(recipe["size"], channels=1)
        xs = torch.stack([t(train[i][0]) for i in range(len(train))])
        return cls(xs.mean(0) + recipe.get("offset", 0.0), len(train))

    def save(self, directory: Path) -> None:
        torch.save(self.mean, directory / "mean.pt")
        (directory / "n.json").write_text(json.dumps(self.n))

    @classmethod
    def load(cls, recipe, directory, ctx):
        cls.loads += 1
        return cls(torch.load(directory / "mean.pt", weights_only=True), json.loads((directory / "n.json").read_text()))

    def fit_report(self):
        return {"n": float(self.n)}


@dataclass
class UserConfig(MethodConfig):
    score: str = score_option("dist", "dist")
    size: int = fit_option(8, "artifact size")
    offset: float = fit_option(0.0, "artifact offset")
    data: str = fit_option("train", "train | fit")


class MeanUser(OODMethod):
    """Scores the distance to the shared mean image; fits nothing of its own."""

    config_cls = UserConfig
    fits = 0

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.image_transform = ImageTransform(config.size, channels=1)

    def requires(self):
        return {"mean": ArtifactRequest("test-mean-image", {"size": self.config.size, "offset": self.config.offset},
                                        data=self.config.data)}

    def fit(self, train):
        type(self).fits += 1
        self.mean = self.artifacts["mean"].mean.to(self.device)

    def score_batch(self, x, generator):
        return BatchOutput({"dist": ((x - self.mean) ** 2).flatten(1).mean(1)})

    def save(self, directory):
        pass

    def load(self, directory):
        self.mean = self.artifacts["mean"].mean.to(self.device)

    def cost(self):
        return {}


class OtherUser(MeanUser):
    pass


class Calibrated(MeanUser):
    """Needs the validation hold-out; records what it got."""

    needs_validation = True
    seen: dict = {}

    def fit(self, train):
        super().fit(train)
        type(self).seen = {"train": set(train.item_ids()), "validation": set(self.validation.item_ids())}


if "test-mean-image" not in ARTIFACTS:
    register_artifact("test-mean-image")(MeanArtifact)
    register_method("test-art-a")(MeanUser)
    register_method("test-art-b")(OtherUser)
    register_method("test-art-cal")(Calibrated)


def _cfg(**kw) -> RunConfig:
    base = dict(id="digits", ood=["noise"], methods=["test-art-a", "test-art-b"], device="cpu", limit=20,
                train_limit=100)
    base.update(kw)
    return RunConfig(**base)


def _run(cfg, root: Path, log=None):
    return Runner(prepare(cfg), Cache(root / "cache")).run()


# ------------------------------------------------------------------ sharing and keys
def test_two_methods_with_one_recipe_get_one_build_shared_then_loaded(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ood_bench")
    MeanArtifact.builds = 0
    a, b = _run(_cfg(), tmp_path)
    assert MeanArtifact.builds == 1
    (ua,), (ub,) = a.artifacts, b.artifacts
    assert (ua.status, ub.status) == ("trained", "shared") and ua.key == ub.key and ua.folder == ub.folder
    assert ub.owner == "test-art-a" and ua.report == {"n": 100.0}
    assert Path(ua.folder) == tmp_path / "cache" / "artifacts" / "test-mean-image" / ua.key
    assert (Path(ua.folder) / "artifact.json").is_file() and not Path(ua.folder + ".work").exists()
    np.testing.assert_array_equal(a.id.batch.canonical, b.id.batch.canonical)  # the same mean image
    err = caplog.text
    caplog.clear()
    assert f"artifact test-mean-image {ua.key} trained" in err and f"artifact test-mean-image {ua.key} shared" in err
    # a second run: loaded from the cache by the first user, shared with the second; no build,
    # and, every score being cached, nothing is even read
    MeanArtifact.loads = 0
    a2, b2 = _run(_cfg(), tmp_path)
    assert MeanArtifact.builds == 1 and MeanArtifact.loads == 0
    assert (a2.artifacts[0].status, b2.artifacts[0].status) == ("loaded", "shared")
    assert a2.artifacts[0].seconds == ua.seconds  # the build time travels with the cache
    # every score of that run was cached: the artifact was named, not read
    assert "its scores are cached, not loaded" in caplog.text and "loaded from" not in caplog.text
    # the artifact's build time counts once: in the fit time of the method that got it first
    assert a.fit_seconds >= ua.seconds
    np.testing.assert_array_equal(a2.id.batch.canonical, a.id.batch.canonical)
    # a new scoring need (another OOD set) reads it, once, and shares it
    caplog.clear()
    a3, b3 = _run(_cfg(ood=["textures"]), tmp_path)
    assert MeanArtifact.loads == 1 and (a3.artifacts[0].status, b3.artifacts[0].status) == ("loaded", "shared")
    assert "loaded from" in caplog.text


def test_a_changed_recipe_or_seed_makes_a_new_key(tmp_path):
    MeanArtifact.builds = 0
    (a,) = _run(_cfg(methods=["test-art-a"]), tmp_path)
    (b,) = _run(_cfg(methods=["test-art-a"], method_options={"test-art-a": {"offset": 1.0}}), tmp_path)
    (c,) = _run(_cfg(methods=["test-art-a"], seeds=[1]), tmp_path)
    (d,) = _run(_cfg(methods=["test-art-a"], train_limit=90), tmp_path)  # other training data
    keys = {r.artifacts[0].key for r in (a, b, c, d)}
    assert len(keys) == 4 and MeanArtifact.builds == 4
    # the method's own fit key includes its artifact's key
    assert len({r.fit_key for r in (a, b, c, d)}) == 4
    assert not np.array_equal(a.id.batch.canonical, b.id.batch.canonical)


def test_damaged_artifact_is_moved_aside_and_rebuilt(tmp_path):
    MeanArtifact.builds = 0
    (a,) = _run(_cfg(methods=["test-art-a"]), tmp_path)
    folder = Path(a.artifacts[0].folder)
    torch.save(torch.full((1, 8, 8), float("nan")), folder / "mean.pt")
    (b,) = _run(_cfg(methods=["test-art-a"]), tmp_path)
    assert MeanArtifact.builds == 2 and b.artifacts[0].status == "trained"
    assert list(folder.parent.glob(f"{folder.name}.bad-*"))
    np.testing.assert_array_equal(a.id.batch.canonical, b.id.batch.canonical)


def test_the_manifest_records_every_artifact_and_the_hold_out(tmp_path):
    import ood_bench

    res = ood_bench.run(config=None, id="digits", ood=["noise"], methods=["test-art-a", "test-art-b"],
                        device="cpu", limit=20, train_limit=100, bootstrap=0, progress=False,
                        cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run"))
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    (key,) = m["artifacts"]
    entry = m["artifacts"][key]
    assert entry["kind"] == "test-mean-image" and Path(entry["folder"]).is_dir()
    assert [u["status"] for u in entry["uses"]] == ["trained", "shared"]
    assert m["timings"]["test-art-b/seed0"]["artifacts"][0]["key"] == key
    assert m["validation"]["fraction"] == 0.05 and m["validation"]["seeds"]["0"]["n"] == 5
    assert m["validation"]["seeds"]["0"]["fit_n"] == 95
    assert res.results[1].artifacts[0].status == "shared"
    import pandas as pd

    (row,) = pd.read_csv(tmp_path / "run" / "artifacts.csv").to_dict("records")  # the cost table's companion
    assert (row["kind"], row["built_for"], row["shared_with"], row["key"]) == ("test-mean-image", "test-art-a",
                                                                                "test-art-b", key)
    assert "Shared artifacts" in (tmp_path / "run" / "report.html").read_text()


# ------------------------------------------------------------------ the validation hold-out
def test_hold_out_is_deterministic_disjoint_and_from_id_train_only():
    train = load_dataset("digits", "train", DataContext()).take(200)
    fit, val = holdout_split(train, 0.05, seed=3)
    fit2, val2 = holdout_split(train, 0.05, seed=3)
    assert val.item_ids() == val2.item_ids() and fit.fingerprint() == fit2.fingerprint()
    assert len(val) == 10 and len(fit) == 190
    ids_fit, ids_val = set(fit.item_ids()), set(val.item_ids())
    assert not ids_fit & ids_val and ids_fit | ids_val == set(train.item_ids())
    assert np.bincount(val.labels(), minlength=10).tolist() == [1] * 10  # class-stratified (digits 0-9)
    _, other = holdout_split(train, 0.05, seed=4)
    assert other.item_ids() != val.item_ids() and other.fingerprint() != val.fingerprint()
    assert holdout_split(train, 0.0, seed=3) == (train, None)
    with pytest.raises(ValueError):
        holdout_split(train, 1.0, seed=0)


def test_fit_data_excludes_the_hold_out_and_calibrating_methods_receive_it(tmp_path):
    MeanArtifact.builds = 0
    prep = prepare(_cfg(methods=["test-art-cal"], method_options={"test-art-cal": {"data": "fit"}}, validation=0.1))
    (r,) = Runner(prep, Cache(tmp_path / "cache")).run()
    fit, val = prep.splits[0]
    assert r.artifacts[0].report == {"n": 90.0}  # built on ID train minus the hold-out
    assert Calibrated.seen["validation"] == set(val.item_ids()) and Calibrated.seen["train"] == set(fit.item_ids())
    test_ids = set(prep.id_test.item_ids())
    assert prep.id_test.split == "test" and val.split == "train" and len(val) == 10
    assert prep.id_test.fingerprint() not in (val.fingerprint(), fit.fingerprint()) and test_ids  # never ID test


def test_a_calibrating_method_needs_a_fraction(tmp_path):
    from ood_bench.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="validation"):
        prepare(_cfg(methods=["test-art-cal"], validation=0.0))
    with pytest.raises(ConfigError, match="--validation"):
        prepare(_cfg(validation=1.5))


# ------------------------------------------------------------------ the ID DDPM
TINY_DDPM = dict(image_size=8, channels=1, base_channels=16, channel_mult=[1, 2], layers_per_block=1,
                 attention_resolutions=[], norm_groups=8, dropout=0.0, epochs=1, train_batch_size=32,
                 warmup_steps=2, hflip=False)


@dataclass
class DDPMUserConfig(PixelDiffusionConfig):
    score: str = score_option("err", "err")
    t: int = score_option(100, "noise level of the one-step error (not part of the UNet recipe)")


class DDPMUser(OODMethod):
    """A second user of the ID DDPM: one-step ε-prediction error at ``t``."""

    config_cls = DDPMUserConfig

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.image_transform = ImageTransform(config.image_size, config.channels)

    def requires(self):
        return {"ddpm": ddpm_request(self.config)}

    def fit(self, train):
        self.unet = self.artifacts["ddpm"].unet

    load = lambda self, d: self.fit(None)  # noqa: E731

    def save(self, directory):
        pass

    def score_batch(self, x, generator):
        t = torch.full((len(x),), self.config.t)
        eps = torch.randn(x.shape, generator=generator)
        a = self.artifacts["ddpm"].scheduler.alphas_cumprod[self.config.t]
        xt = a.sqrt() * (2 * x - 1) + (1 - a).sqrt() * eps
        return BatchOutput({"err": (self.unet(xt, t).sample - eps).pow(2).flatten(1).mean(1)})

    def cost(self):
        return {"unet": 1.0}


if "test-ddpm-user" not in METHODS:
    register_method("test-ddpm-user")(DDPMUser)


def test_lmd_and_another_method_share_one_id_ddpm_trained_on_the_fit_split(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ood_bench")
    lmd = {**TINY_DDPM, "reps": 2, "steps": 2, "mask_blocks": 4, "distances": ["mse"], "score": "mse"}
    cfg = _cfg(methods=["lmd", "test-ddpm-user"], train_limit=64, limit=8,
               method_options={"lmd": lmd, "test-ddpm-user": dict(TINY_DDPM)})
    prep = prepare(cfg)
    lmd_r, user_r = Runner(prep, Cache(tmp_path / "cache")).run()
    (ul,), (uu,) = lmd_r.artifacts, user_r.artifacts
    assert (ul.kind, ul.status, uu.status) == ("ddpm-unet", "trained", "shared") and ul.key == uu.key
    err = caplog.text
    caplog.clear()
    assert err.count("training a") == 1 and "on 61 images" in err  # 64 minus a hold-out of 3
    folder = Path(ul.folder)
    assert (folder / "unet" / "config.json").is_file() and (folder / "scheduler").is_dir()
    meta = json.loads((folder / "artifact.json").read_text())
    assert meta["data_fingerprint"] == prep.splits[0][0].fingerprint() and meta["data"] == "fit"
    # a new run loads it; a changed UNet recipe trains another one
    lmd2, _ = Runner(prepare(cfg), Cache(tmp_path / "cache")).run()
    assert lmd2.artifacts[0].status == "loaded" and lmd2.fit_cached
    np.testing.assert_array_equal(lmd2.id.batch.canonical, lmd_r.id.batch.canonical)
    other = ddpm_request(DDPMUserConfig(**{**TINY_DDPM, "epochs": 2}))
    assert other != ddpm_request(DDPMUserConfig(**TINY_DDPM)) and other.data == "fit"
    # options outside the UNet recipe (a method's own) do not split the artifact
    assert ddpm_request(DDPMUserConfig(**TINY_DDPM, t=5)) == ddpm_request(DDPMUserConfig(**TINY_DDPM))
