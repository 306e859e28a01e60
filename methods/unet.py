"""Pixel-space diffusion models from diffusers: the UNet factory and the noise schedule.

The paper-size configuration (Ho et al.'s DDPM CIFAR-10 UNet, used by LMD and DiffOOD) is
``base_channels=128, channel_mult=(1, 2, 2, 2), layers_per_block=2, attention_resolutions=(16,),
dropout=0.1`` at 32×32 — the same architecture as diffusers' ``google/ddpm-cifar10-32``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

from benchmark.errors import ConfigError, MissingWeightsError


def build_unet(image_size: int, channels: int, base_channels: int, channel_mult: tuple[int, ...],
               layers_per_block: int, attention_resolutions: tuple[int, ...], dropout: float,
               num_class_embeds: int | None = None, norm_num_groups: int = 32) -> UNet2DModel:
    """A ``UNet2DModel``: one down/up level per ``channel_mult`` entry, attention at the listed
    feature-map resolutions (e.g. 16 for the 16×16 level of a 32×32 model).

    ``num_class_embeds`` adds a class embedding to the time embedding (class-conditional model).
    """
    if image_size % (2 ** (len(channel_mult) - 1)):
        raise ConfigError(f"image_size {image_size} is not divisible by 2^{len(channel_mult) - 1} "
                          f"(one halving per channel_mult level after the first)")
    widths = tuple(base_channels * m for m in channel_mult)
    if any(w % norm_num_groups for w in widths):
        raise ConfigError(f"UNet widths {widths} must be multiples of norm_num_groups={norm_num_groups}")
    res = [image_size // 2 ** i for i in range(len(channel_mult))]
    down = tuple("AttnDownBlock2D" if r in attention_resolutions else "DownBlock2D" for r in res)
    up = tuple("AttnUpBlock2D" if r in attention_resolutions else "UpBlock2D" for r in reversed(res))
    return UNet2DModel(
        sample_size=image_size, in_channels=channels, out_channels=channels,
        block_out_channels=widths, layers_per_block=layers_per_block,
        down_block_types=down, up_block_types=up, dropout=dropout,
        norm_num_groups=norm_num_groups, attention_head_dim=None,
        num_class_embeds=num_class_embeds,
    )


def load_unet(path: str, image_size: int, channels: int) -> UNet2DModel:
    """A pretrained diffusers ``UNet2DModel`` from a local folder (``config.json`` + weights),
    or its ``unet/`` subfolder (a saved pipeline, e.g. a snapshot of google/ddpm-cifar10-32)."""
    folder = Path(path).expanduser()
    if (folder / "unet" / "config.json").is_file():
        folder = folder / "unet"
    if not (folder / "config.json").is_file():
        raise MissingWeightsError(f"no diffusers UNet in {folder} (expected config.json and the weights there); "
                                  f"save one with UNet2DModel.save_pretrained(folder)")
    unet = UNet2DModel.from_pretrained(folder)
    if unet.config.sample_size not in (image_size, None) or unet.config.in_channels != channels:
        raise ConfigError(f"UNet in {folder} is for {unet.config.in_channels}×{unet.config.sample_size}² images, "
                          f"but the method is configured for {channels}×{image_size}²; set image_size/channels to match")
    return unet


def ddpm_scheduler(timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> DDPMScheduler:
    """Linear-beta DDPM schedule with epsilon prediction, no sample clipping (LMD, DiffOOD)."""
    return DDPMScheduler(num_train_timesteps=timesteps, beta_schedule="linear", beta_start=beta_start,
                         beta_end=beta_end, prediction_type="epsilon", clip_sample=False)


def epsilon_loss(unet: UNet2DModel, x0: torch.Tensor, alphas_cumprod: torch.Tensor, g: torch.Generator,
                 class_labels: torch.Tensor | None = None) -> torch.Tensor:
    """Simple DDPM loss: ``‖ε − ε_θ(√ᾱ_t x0 + √(1−ᾱ_t) ε, t)‖²`` with ``t ~ U{0..T−1}`` (mean)."""
    t = torch.randint(0, len(alphas_cumprod), (len(x0),), device=x0.device, generator=g)
    eps = torch.randn(x0.shape, device=x0.device, generator=g)
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    pred = unet(xt, t, class_labels=class_labels).sample
    return torch.nn.functional.mse_loss(pred.float(), eps)


def random_hflip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Flip each image of ``(B, C, H, W)`` left-right with probability 1/2."""
    flip = torch.rand(len(x), device=x.device, generator=g) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
