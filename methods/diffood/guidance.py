"""DiffOOD's guided denoising: noise to ``t`` and run deterministic DDIM back, guided by a class.

- Classifier-free guidance: ``ε̂ = ε_u + s·(ε_c − ε_u)`` (paper code: ``(1+β)ε_c − βε_u``, β = 2,
  i.e. s = 3); the conditional and null-class passes run as one batch.
- DDIM (diffusers ``DDIMScheduler``, η = 0, no x0 clipping) with stride ``k``: the UNet is
  evaluated at ``t, t−k, …, k`` and the last step lands on the noise level of timestep 0
  (ᾱ₀ = 0.9999), the level of the t = 0 reference copy. For t = 240, k = 20: 12 steps.

The reference code evaluates the UNet one index lower than the noise level it is at (time input
239 at ᾱ[240], …, 19 at ᾱ[20]); here the time input matches the level, as in training.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ood_bench.utils.device import autocast

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel


def guided_eps(unet: UNet2DModel, x: torch.Tensor, t: int, labels: torch.Tensor, null_label: int,
               scale: float) -> torch.Tensor:
    """``ε_u + scale · (ε_c − ε_u)`` with both passes in one batch of ``2N``."""
    n = len(x)
    y = torch.cat([labels, torch.full_like(labels, null_label)])
    tt = torch.full((2 * n,), t, device=x.device, dtype=torch.long)
    with autocast(x.device):
        eps = unet(torch.cat([x, x]), tt, class_labels=y).sample.float()
    eps_c, eps_u = eps[:n], eps[n:]
    return eps_u + scale * (eps_c - eps_u)


def ddim_timesteps(start: int, stride: int) -> list[int]:
    """The timesteps the UNet is evaluated at: ``start, start − stride, …, stride``."""
    if start <= 0 or stride <= 0 or start % stride:
        raise ValueError(f"start timestep {start} must be a positive multiple of the stride {stride}")
    return list(range(start, 0, -stride))


def ddim_scheduler(noise: DDPMScheduler, stride: int) -> DDIMScheduler:
    from diffusers import DDIMScheduler
    sched = DDIMScheduler.from_config(noise.config, clip_sample=False, set_alpha_to_one=False)
    sched.set_timesteps(noise.config.num_train_timesteps // stride)  # step ratio = stride
    return sched


@torch.no_grad()
def guided_denoise(unet: UNet2DModel, noise: DDPMScheduler, xt: torch.Tensor, start: int, stride: int,
                   labels: torch.Tensor, null_label: int, scale: float,
                   prepared: DDIMScheduler | None = None) -> torch.Tensor:
    """Deterministic guided DDIM from ``xt`` (at timestep ``start``) to the level of timestep 0.
    ``prepared``: ``ddim_scheduler(noise, stride)`` built beforehand (its step is stateless)."""
    sched = prepared or ddim_scheduler(noise, stride)
    x = xt
    for t in ddim_timesteps(start, stride):
        eps = guided_eps(unet, x, t, labels, null_label, scale)
        x = sched.step(eps, t, x, eta=0.0).prev_sample
    return x
