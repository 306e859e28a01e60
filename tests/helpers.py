"""Tiny CPU helpers: image folders on disk and a minimal registered detector."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ood_bench.methods.registry import METHODS, register_method
from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.base import BatchOutput, MethodConfig, OODMethod, fit_option, score_option


def write_images(folder: Path, n: int, size: int = 12, mode: str = "RGB", seed: int = 0,
                 ext: str = "png", value: float | None = None) -> list[Path]:
    """``n`` random (or constant ``value``) images in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        shape = (size, size, 3) if mode == "RGB" else (size, size)
        arr = np.full(shape, value * 255) if value is not None else rng.uniform(0, 255, shape)
        p = folder / f"img_{i:03d}.{ext}"
        Image.fromarray(arr.astype(np.uint8)).save(p)
        paths.append(p)
    return paths


@dataclass
class MeanConfig(MethodConfig):
    score: str = score_option("dist", "dist | neg")
    size: int = fit_option(8, "image side")
    shift: float = score_option(0.0, "added to every score")


class MeanImage(OODMethod):
    """Test detector: squared distance to the mean ID training image (fit counts its calls)."""

    config_cls = MeanConfig
    fits = 0

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self._t = ImageTransform(config.size, channels=1)
        self.mean = None

    def transform(self, img):
        return self._t(img)

    def fit(self, train):
        type(self).fits += 1
        xs = torch.stack([self.transform(train[i][0]) for i in range(len(train))])
        self.mean = xs.mean(0).to(self.device)

    def score_batch(self, x, generator):
        d = ((x - self.mean) ** 2).flatten(1).mean(1) + self.config.shift
        return BatchOutput({"dist": d, "neg": -d})

    def save(self, directory: Path):
        torch.save(self.mean, directory / "mean.pt")

    def load(self, directory: Path):
        self.mean = torch.load(directory / "mean.pt", weights_only=True)

    def cost(self):
        return {"mean": 1.0}


class LabelledMean(MeanImage):
    """The same detector declaring that it needs labels."""

    needs_labels = True


if "test-mean" not in METHODS:
    register_method("test-mean")(MeanImage)
    register_method("test-labelled")(LabelledMean)


def reload_artifacts(method: OODMethod, folder: Path) -> dict:
    """``method``'s artifacts saved under ``folder/<name>`` and loaded back (a cache round trip)."""
    out = {}
    for name, request in method.requires().items():
        art = method.artifacts[name]
        (folder / name).mkdir(parents=True)
        art.save(folder / name)
        out[name] = type(art).load(dict(request.recipe), folder / name, method.ctx)
    return out
# Every built-in method at tiny sizes on the embedded preset (digits04, 8x8 grey), for end-to-end
# runs through a whole path in seconds: `ood-bench run ... --set *TINY_SETS` with TINY_LIMITS.
TINY_METHODS = ["dlsr", "lmd", "diffood", "pixel-mahalanobis", "mahalanobis", "knn", "msp", "energy"]
TINY_SETS = [
    "dlsr.image_size=32", "dlsr.width=32", "dlsr.blocks=1", "dlsr.epochs=2", "dlsr.train_batch_size=32",
    "lmd.epochs=1", "lmd.reps=2", "lmd.steps=2", "lmd.distances=[features,mse]", "lmd.base_channels=16",
    "diffood.epochs=1", "diffood.classifier_epochs=1", "diffood.classifier_width=4", "diffood.repeats=1",
    "diffood.stride=120", "diffood.base_channels=16",
    "mahalanobis.image_size=32", "knn.image_size=32",
    "msp.classifier_epochs=1", "msp.classifier_width=4", "energy.classifier_epochs=1", "energy.classifier_width=4",
]
TINY_LIMITS = ["--limit", "16", "--train-limit", "40", "--batch-size", "8", "--bootstrap", "0"]
