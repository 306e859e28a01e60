"""DiffPath's statistics of the deterministic DDIM-inversion path (Heng et al., NeurIPS 2024).

An image ``x_0`` in [−1, 1] is carried to noise by N deterministic DDIM steps on the grid
``t_k = k·s`` (:func:`ddim_grid`). At each step the model's noise prediction ``ε_k`` is the
path's *rate of change*; ``d_k = N·(ε_{k+1} − ε_k)`` (Δt = 1/N) its *curvature*. Summed over
steps and all C·H·W entries (float64):

    S1 = Σε   S2 = Σε²   S3 = Σε³   (N steps)        S4 = Σd   S5 = Σd²   S6 = Σd³   (N − 1)

The 6-D statistic is (S1..S6); the 1-D statistic is √S5; √S2 (the rate) is kept as well.
Step (with ``clip_x0``, the reference's default): ``e = ε_θ(x_k, t_k)``,
``x̂ = (x_k − √(1−ᾱ_k) e)/√ᾱ_k`` clamped to [−1, 1] and ``e`` recomputed from it,
``x_{k+1} = √ᾱ_{k+1} x̂ + √(1−ᾱ_{k+1}) e`` with ``ᾱ_N := 0``.
"""
from __future__ import annotations

import math

import torch

from ood_bench.methods.posthoc import EpsFn
from ood_bench.utils.errors import ConfigError

STATISTICS = ("s1", "s2", "s3", "s4", "s5", "s6")


def ddim_grid(num_train_timesteps: int, num_steps: int) -> list[int]:
    """``[0, s, 2s, …]`` with the smallest stride ``s`` giving exactly ``num_steps`` points
    (improved-diffusion's ``ddimN`` spacing): T = 1000, N = 10 → 0..900 by 100; T = 4000 → 0..3600 by 400."""
    if not 1 <= num_steps <= num_train_timesteps:
        raise ConfigError(f"num_steps must be in [1, {num_train_timesteps}], got {num_steps}")
    stride = math.ceil(num_train_timesteps / num_steps)  # the smallest s with ⌈T/s⌉ ≤ N
    if math.ceil(num_train_timesteps / stride) != num_steps:
        raise ConfigError(f"no integer stride gives exactly {num_steps} DDIM steps over {num_train_timesteps} "
                          f"timesteps (stride {stride} gives {math.ceil(num_train_timesteps / stride)}); choose another num_steps")
    return list(range(0, num_train_timesteps, stride))


def path_statistics(eps: EpsFn, x: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: list[int],
                    clip_x0: bool = True) -> dict[str, torch.Tensor]:
    """S1..S6 of the inversion path of ``x (B, C, H, W)`` in [−1, 1]: name → ``(B,)`` float64.

    ``len(timesteps)`` network calls of batch ``B``; deterministic (no noise is drawn)."""
    n = len(timesteps)
    if n < 2:
        raise ConfigError("DiffPath needs at least 2 inversion steps (the curvature is a difference of steps)")
    acp = torch.as_tensor(alphas_cumprod).to(x.device, torch.float64)
    a = [acp[t] for t in timesteps] + [torch.zeros((), dtype=torch.float64, device=x.device)]
    sums = {k: torch.zeros(len(x), dtype=torch.float64, device=x.device) for k in STATISTICS}
    xk, prev = x, None
    for k, t in enumerate(timesteps):
        e = eps(xk, torch.full((len(x),), t, device=x.device, dtype=torch.long))
        ak = a[k].to(xk.dtype)
        x0 = (xk - (1 - ak).sqrt() * e) / ak.sqrt()
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            e = (xk - ak.sqrt() * x0) / (1 - ak).sqrt()
        e64 = e.double().flatten(1)
        sums["s1"] += e64.sum(1)
        sums["s2"] += e64.pow(2).sum(1)
        sums["s3"] += e64.pow(3).sum(1)
        if prev is not None:
            d = n * (e64 - prev)
            sums["s4"] += d.sum(1)
            sums["s5"] += d.pow(2).sum(1)
            sums["s6"] += d.pow(3).sum(1)
        prev = e64
        an = a[k + 1].to(xk.dtype)
        xk = an.sqrt() * x0 + (1 - an).sqrt() * e
    return sums


def statistic_vectors(stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The density inputs: ``6d`` = (S1..S6) ``(B, 6)``, ``1d`` = √S5 ``(B, 1)``, ``rate`` = √S2 ``(B, 1)``."""
    return {"6d": torch.stack([stats[k] for k in STATISTICS], dim=1),
            "1d": stats["s5"].sqrt().unsqueeze(1),
            "rate": stats["s2"].sqrt().unsqueeze(1)}
