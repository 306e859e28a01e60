"""LMD's "map" step: replacement inpainting with a DDPM (RePaint without resampling).

Given clean images ``x0`` in ``[-1, 1]`` and masks (1 = kept), start from the kept region
forward-noised to the first timestep and pure noise elsewhere. At every reverse step the UNet
(ε-prediction) and the diffusers ``DDPMScheduler`` take ``x_t → x_{t'}``; then the kept region is
overwritten with ``x0`` forward-noised to ``t'`` with fresh noise — and with ``x0`` itself after
the last step, so the kept pixels of the output equal the input exactly.

``steps`` equal to the schedule length (1000) is the paper's sampler (1000 evaluations per
repetition); fewer steps stride the schedule (DDPM ancestral steps between the visited
timesteps, ``DDPMScheduler.set_timesteps``) — an explicit speed option, never the default.

The reference code (score-SDE, sub-VP, Euler–Maruyama) re-pastes the known region before each
update at the current time; after the update here. Both agree except at the ends, where ours
starts from noised (not clean) known pixels and ends with the exact original.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ood_bench.utils.device import autocast
from ood_bench.utils.progress import progress

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers import DDPMScheduler, UNet2DModel


def sampler(scheduler: DDPMScheduler, steps: int) -> DDPMScheduler:
    """A copy of ``scheduler`` set to ``steps`` sampling steps (its ``step`` is stateless, so a
    caller may build it once and reuse it for every batch)."""
    from diffusers import DDPMScheduler
    sched = DDPMScheduler.from_config(scheduler.config)
    sched.set_timesteps(steps)
    return sched


@torch.no_grad()
def inpaint(unet: UNet2DModel, scheduler: DDPMScheduler, x0: torch.Tensor, mask: torch.Tensor,
            steps: int, generator: torch.Generator, show_progress: bool = False,
            prepared: DDPMScheduler | None = None) -> torch.Tensor:
    """Inpaint the ``mask == 0`` pixels of ``x0`` ``(N, C, H, W)``; returns ``(N, C, H, W)`` float32.
    ``prepared``: ``sampler(scheduler, steps)`` built beforehand (else built here)."""
    sched = prepared or sampler(scheduler, steps)
    ts = sched.timesteps.tolist()  # host ints: a device tensor here made every step sync (`if t > 0`)

    def level(t: int) -> torch.Tensor:
        return torch.full((len(x0),), t, device=x0.device, dtype=torch.long)

    noise = torch.randn(x0.shape, device=x0.device, generator=generator)
    start = sched.add_noise(x0, noise, level(ts[0]))
    x = mask * start + (1 - mask) * torch.randn(x0.shape, device=x0.device, generator=generator)
    it = progress(range(len(ts)), "inpainting", unit="step") if show_progress else range(len(ts))
    for k in it:
        t = ts[k]
        with autocast(x0.device):
            eps = unet(x, level(t)).sample.float()  # a tensor: torch.compile would specialise on an int t
        x = sched.step(eps, t, x, generator=generator).prev_sample
        if k + 1 < len(ts):
            fresh = torch.randn(x0.shape, device=x0.device, generator=generator)
            known = sched.add_noise(x0, fresh, level(ts[k + 1]))
        else:
            known = x0
        x = mask * known + (1 - mask) * x
    return x
