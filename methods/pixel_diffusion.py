"""The base class of methods that denoise pixels with a diffusion UNet (LMD, DiffOOD): the image
transform, the noise schedule and the UNet attribute. The networks themselves are shared artifacts
(:mod:`ood_bench.methods.ddpm`) that the engine hands over before ``fit()``/``load()``."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.base import OODMethod
from ood_bench.methods.examples import ExampleRows
from ood_bench.methods.unet import PixelDiffusionConfig, unet_from_config

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers import DDPMScheduler, UNet2DModel


class PixelDiffusionMethod(ExampleRows, OODMethod):
    """Base of the methods built on a pixel-space UNet: ``image_transform`` at the config's size and
    channels, ``scheduler`` (the config's, until an artifact brings its own) and ``unet``."""

    config: PixelDiffusionConfig
    default_batch_size = 32

    def __init__(self, config: PixelDiffusionConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.image_transform = ImageTransform(config.image_size, config.channels)
        self.unet: UNet2DModel | None = None

    @functools.cached_property
    def scheduler(self) -> DDPMScheduler:
        """The config's noise schedule, built on first use (a cached result needs none); an artifact
        or a pretrained UNet replaces it with its own by assignment."""
        return self.config.scheduler()

    def build_untrained(self, num_classes: int) -> None:
        self.unet = unet_from_config(self.config).to(self.device).eval()

    def inference_networks(self) -> list[torch.nn.Module]:
        return [self.unet]
