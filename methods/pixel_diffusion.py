"""The base class of methods that denoise pixels with a diffusion UNet (LMD, DiffOOD): the image
transform, the noise schedule and the UNet attribute. The networks themselves are shared artifacts
(:mod:`ood_bench.methods.ddpm`) that the engine hands over before ``fit()``/``load()``."""
from __future__ import annotations

import torch
from diffusers import UNet2DModel

from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.base import OODMethod
from ood_bench.methods.examples import ExampleRows
from ood_bench.methods.unet import PixelDiffusionConfig, unet_from_config


class PixelDiffusionMethod(ExampleRows, OODMethod):
    """Base of the methods built on a pixel-space UNet: ``image_transform`` at the config's size and
    channels, ``scheduler`` (the config's, until an artifact brings its own) and ``unet``."""

    config: PixelDiffusionConfig
    default_batch_size = 32

    def __init__(self, config: PixelDiffusionConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.image_transform = ImageTransform(config.image_size, config.channels)
        self.scheduler = config.scheduler()
        self.unet: UNet2DModel | None = None

    def build_untrained(self, num_classes: int) -> None:
        self.unet = unet_from_config(self.config).to(self.device).eval()

    def inference_networks(self) -> list[torch.nn.Module]:
        return [self.unet]
