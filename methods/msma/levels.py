"""MSMA's noise levels on a DDPM schedule and the ε-norm features (Mahmood et al., ICLR 2021).

The paper queries a noise-conditional score network (NCSN, variance exploding) at L geometric
noise scales σ_i from 1.0 down to 0.01 (images in [0, 1]). A variance-preserving DDPM has no σ
input, but its step k corresponds to the VE noise level ``s_k = √((1 − ᾱ_k)/ᾱ_k)`` (a VE point
``y = x + s z`` is the VP point ``√ᾱ·y``). So level i uses the step whose ``s_k`` is nearest to
``c·σ_i`` (``c = 2``: a [0, 1] noise level doubles on the model's [−1, 1] pixels), and the clean
image enters the network as ``√ᾱ_{t_i}·x`` with no noise added.

Feature ``r_i = ‖ε̂(√ᾱ_{t_i} x, t_i)‖₂`` over all C·H·W entries — exactly the paper's
``‖σ_i s_θ(x, σ_i)‖`` (the VE score is ``−ε̂/s``; the range factors cancel).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ood_bench.methods.posthoc import EpsFn
from ood_bench.utils.errors import ConfigError

SPACINGS = ("geometric", "linear")
INPUT_SCALINGS = ("vp_mean", "raw")
NORM_WEIGHTINGS = ("eps", "ve_score", "vp_score")



def paper_sigmas(num_levels: int, sigma_high: float, sigma_low: float, spacing: str = "geometric") -> np.ndarray:
    """The L noise scales, largest first, in [0, 1] pixel units: ``exp(linspace(ln σ_high, ln σ_low, L))``
    (geometric, the paper's) or ``linspace(σ_high, σ_low, L)``. Shape ``(L,)`` float64."""
    if num_levels < 1 or not sigma_high > sigma_low > 0:
        raise ConfigError(f"need num_levels ≥ 1 and sigma_high > sigma_low > 0, got {num_levels}, {sigma_high}, {sigma_low}")
    if spacing == "geometric":
        return np.exp(np.linspace(math.log(sigma_high), math.log(sigma_low), num_levels))
    if spacing == "linear":
        return np.linspace(sigma_high, sigma_low, num_levels)
    raise ConfigError(f"spacing must be one of {SPACINGS}, got {spacing!r}")


def ve_noise_levels(alphas_cumprod: torch.Tensor | np.ndarray) -> np.ndarray:
    """``s_k = √((1 − ᾱ_k)/ᾱ_k)`` for k = 0..T−1, float64 ``(T,)`` (increasing)."""
    a = np.asarray(torch.as_tensor(alphas_cumprod).double().cpu().numpy(), dtype=np.float64)
    return np.sqrt((1.0 - a) / a)


def msma_timesteps(alphas_cumprod: torch.Tensor | np.ndarray, sigmas: np.ndarray, range_factor: float = 2.0,
                   warn: Callable[[str], None] | None = None) -> list[int]:
    """The DDPM step of each level: ``t_i = argmin_k |s_k − c·σ_i|`` (first index on ties, float64).

    For the linear 1e-4..0.02 / 1000 schedule and the paper's σ (1.0 → 0.01, 10 levels, c = 2):
    ``[396, 293, 199, 125, 75, 43, 24, 13, 6, 2]``. ``warn`` is told when a level lies beyond the
    schedule's largest noise (it is clipped to T − 1) or when two levels share a step."""
    s = ve_noise_levels(alphas_cumprod)
    target = range_factor * np.asarray(sigmas, dtype=np.float64)
    ts = [int(np.argmin(np.abs(s - v))) for v in target]
    if warn is not None:
        if (target > s[-1]).any():
            warn(f"noise level {target.max():.3g} exceeds the schedule's largest ({s[-1]:.3g}); it uses step {len(s) - 1}")
        if len(set(ts)) < len(ts):
            warn(f"levels share DDPM steps {ts}: their features are identical")
    return ts


def level_weights(alphas_cumprod: torch.Tensor, timesteps: list[int], weighting: str) -> torch.Tensor:
    """Per-level divisor of ‖ε̂‖, float64 ``(L,)``: 1 (``eps``, the paper's σ-weighted score),
    ``s_t`` (``ve_score``: the raw VE score norm) or ``√(1 − ᾱ_t)`` (``vp_score``)."""
    a = torch.as_tensor(alphas_cumprod).double()[list(timesteps)]
    if weighting == "eps":
        return torch.ones_like(a)
    if weighting == "ve_score":
        return ((1 - a) / a).sqrt()
    if weighting == "vp_score":
        return (1 - a).sqrt()
    raise ConfigError(f"norm_weighting must be one of {NORM_WEIGHTINGS}, got {weighting!r}")


def eps_norms(eps: EpsFn, x: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: list[int],
              input_scaling: str = "vp_mean", weighting: str = "eps") -> torch.Tensor:
    """MSMA features of ``x (B, C, H, W)`` in [−1, 1]: ``(B, L)`` float64, level i =
    ``‖ε̂(x_in, t_i)‖₂ / w_i`` with ``x_in = √ᾱ_{t_i}·x`` (``vp_mean``) or ``x`` (``raw``), no
    noise. ``L`` network calls of batch ``B``; deterministic."""
    if input_scaling not in INPUT_SCALINGS:
        raise ConfigError(f"input_scaling must be one of {INPUT_SCALINGS}, got {input_scaling!r}")
    acp = torch.as_tensor(alphas_cumprod).to(x.device)
    w = level_weights(alphas_cumprod, timesteps, weighting)
    cols = []
    for i, t in enumerate(timesteps):
        x_in = acp[t].sqrt().to(x.dtype) * x if input_scaling == "vp_mean" else x
        e = eps(x_in, torch.full((len(x),), t, device=x.device, dtype=torch.long))
        cols.append(e.double().flatten(1).norm(dim=1) / float(w[i]))
    return torch.stack(cols, dim=1)
