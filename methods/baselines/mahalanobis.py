"""Pixel-space Mahalanobis: one Gaussian on the raw pixels of the ID training images.

The simplest density baseline: ``score = (x − μ)ᵀ Σ⁻¹ (x − μ)`` on the flattened image in
``[0, 1]`` at the size and channels the pixel-diffusion methods see (``image_size``,
``channels``), Σ the Ledoit–Wolf estimate (:mod:`.gaussian`). Higher = more OOD. No labels,
no network.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ood_bench.data.base import ImageDataset
from ood_bench.data.loading import make_loader
from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.base import BatchOutput, MethodConfig, OODMethod, fit_option, score_option
from ood_bench.methods.baselines.gaussian import Gaussian
from ood_bench.methods.registry import register_method


@dataclass
class PixelMahalanobisConfig(MethodConfig):
    score: str = score_option("mahalanobis", "the only score: squared Mahalanobis distance")
    image_size: int = fit_option(32, "side the images are resized to (the pixel-diffusion methods' size)")
    channels: int = fit_option(3, "1 (luminance) or 3 (RGB)")

    def __post_init__(self) -> None:
        self.require_own_score()
        if self.image_size <= 0 or self.channels not in (1, 3):
            raise ValueError("image_size must be positive and channels 1 or 3")


@register_method("pixel-mahalanobis")
class PixelMahalanobis(OODMethod):
    """Baseline: Mahalanobis distance of the raw pixels to a Gaussian fitted on the ID training set."""

    display_name = "Pixel Mahalanobis"

    config_cls = PixelMahalanobisConfig
    config: PixelMahalanobisConfig
    default_batch_size = 512

    def __init__(self, config: PixelMahalanobisConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.image_transform = ImageTransform(config.image_size, channels=config.channels)
        self.gaussian = Gaussian()
        self.report: dict[str, float] = {}

    def fit(self, train: ImageDataset) -> None:
        # float pixels exactly as score_batch sees them (materialize would requantise to uint8)
        loader = make_loader(train, self.transform, 1024, self.ctx.workers)
        v = torch.cat([x.flatten(1) for x, _, _ in loader])
        self.report["shrinkage"] = self.gaussian.fit(v, self.device)

    def build_untrained(self, num_classes: int) -> None:
        c = self.config
        self.gaussian.random(c.channels * c.image_size ** 2, self.device)

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        return BatchOutput({"mahalanobis": self.gaussian.distance(x.flatten(1))})

    def save(self, directory: Path) -> None:
        self.gaussian.save(directory)

    def load(self, directory: Path) -> None:
        self.gaussian.load(directory, self.device)

    def cost(self) -> dict[str, float]:
        return {}

    def fit_report(self) -> dict[str, float]:
        return dict(self.report)
