"""DDPM-OOD's reconstruction sampler: the grid of levels, the starts, and deterministic
PLMS / DDIM chains from a start level down to level 0.

Notation (``T`` = ``len(alphas_cumprod)``, ᾱ_t = ``alphas_cumprod[t]``):

- **Grid** ``G = {offset + k·Δ : k = 0..N−1}``, ``Δ = T // N`` (``N`` = ``inference_steps``).
  Paper-era code: ``offset = 1`` → ``{1, 11, …, 991}``; the later code: ``offset = 0``.
- **Starts** ``S``: every ``skip``-th *positive* grid time, from the smallest
  (``{1, 161, …, 961}`` at the defaults; ``{10, 170, …, 970}`` with ``offset = 0``).
- **Levels** of a chain from ``s``: the grid times ≤ ``s`` in descending order, then 0 unless 0
  is already last; ᾱ at level 0 is ``alphas_cumprod[0]`` (the reference's "previous ᾱ" of the
  first grid time). A chain from ``s`` makes one update per consecutive pair of levels.
- **DDIM** ``(x, e, a→b) = √ᾱ_b (x − √(1−ᾱ_a) e) / √ᾱ_a + √(1−ᾱ_b) e``.
- **PLMS** (Liu et al. 2022, pseudo linear multi-step, as in the LDM ``PLMSSampler``): with
  ``e = ε_θ(x, a)`` and the history ``H`` of previous ``e`` (newest first), the update direction
  is (|H| = 0) ``(e + ε_θ(DDIM(x, e, a→b), b'))/2`` with ``b' = b`` if ``b ∈ G`` else ``a`` (one
  extra evaluation, the warm-up), (1) ``(3e − H₁)/2``, (2) ``(23e − 16H₁ + 5H₂)/12``,
  (≥ 3) ``(55e − 59H₁ + 37H₂ − 9H₃)/24``; then ``x ← DDIM(x, e*, a→b)`` and ``e`` is pushed.

The history lives in one call of :func:`reconstruct`: every chain (every start, every batch)
starts with an empty history. (The later reference code reuses one MONAI scheduler across
starts, so a chain's first steps mixed stale outputs of the previous start; not reproduced.)
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

SAMPLERS = ("plms", "ddim")

# ε-predictor: (x (B, C, H, W), integer level t) -> ε (B, C, H, W), same dtype as x
EpsFn = Callable[[torch.Tensor, int], torch.Tensor]


def time_grid(num_train_timesteps: int, inference_steps: int, offset: int) -> list[int]:
    """The ascending grid ``[offset + k·Δ for k < inference_steps]``, ``Δ = T // N``.

    Raises:
        ValueError: ``inference_steps`` outside ``[1, T]`` or a grid that leaves ``[0, T)``.
    """
    if not 1 <= inference_steps <= num_train_timesteps:
        raise ValueError(f"inference_steps must be in [1, {num_train_timesteps}], got {inference_steps}")
    delta = num_train_timesteps // inference_steps
    grid = [offset + k * delta for k in range(inference_steps)]
    if offset < 0 or grid[-1] >= num_train_timesteps:
        raise ValueError(f"grid_offset {offset} puts the grid {grid[0]}..{grid[-1]} outside [0, {num_train_timesteps})")
    return grid


def start_times(grid: Sequence[int], skip: int) -> list[int]:
    """Every ``skip``-th positive grid time, from the smallest (ascending)."""
    if skip < 1:
        raise ValueError(f"start_skip must be ≥ 1, got {skip}")
    return [t for t in grid if t > 0][::skip]


def chain_levels(grid: Sequence[int], start: int) -> list[int]:
    """The levels a chain from ``start`` visits: grid times ≤ ``start`` descending, then 0."""
    levels = sorted((t for t in grid if t <= start), reverse=True)
    if not levels or levels[0] != start:
        raise ValueError(f"start {start} is not a grid time")
    if levels[-1] != 0:
        levels.append(0)
    return levels


def chain_evaluations(grid: Sequence[int], start: int, sampler: str) -> int:
    """ε-model evaluations of one chain: one per update, plus PLMS's warm-up evaluation."""
    updates = len(chain_levels(grid, start)) - 1
    return updates + (1 if sampler == "plms" and updates > 0 else 0)


def ddim(x: torch.Tensor, e: torch.Tensor, a_from: float, a_to: float) -> torch.Tensor:
    """The deterministic DDIM map from ᾱ ``a_from`` to ᾱ ``a_to`` with predicted noise ``e``."""
    return (a_to ** 0.5) * (x - ((1.0 - a_from) ** 0.5) * e) / (a_from ** 0.5) + ((1.0 - a_to) ** 0.5) * e


def plms_direction(e: torch.Tensor, history: Sequence[torch.Tensor]) -> torch.Tensor:
    """The PLMS multistep combination of ``e`` with ``history`` (1–3 entries, newest first)."""
    if len(history) == 1:
        return (3 * e - history[0]) / 2
    if len(history) == 2:
        return (23 * e - 16 * history[0] + 5 * history[1]) / 12
    return (55 * e - 59 * history[0] + 37 * history[1] - 9 * history[2]) / 24


def reconstruct(eps: EpsFn, x: torch.Tensor, start: int, grid: Sequence[int], alphas_cumprod: Sequence[float],
                sampler: str = "plms") -> torch.Tensor:
    """Map ``x`` (images at level ``start``, ``(B, C, H, W)``) deterministically to level 0.

    ``alphas_cumprod``: ᾱ per training time (host floats or a 1-D tensor). The PLMS history is
    local to this call (empty at the start). Returns ``(B, C, H, W)`` in ``x``'s dtype.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    abar = [float(a) for a in alphas_cumprod]
    on_grid = set(grid)
    levels = chain_levels(grid, start)
    history: list[torch.Tensor] = []
    for a, b in zip(levels[:-1], levels[1:]):
        e = eps(x, a)
        if sampler == "ddim":
            direction = e
        elif not history:
            x_pred = ddim(x, e, abar[a], abar[b])
            direction = (e + eps(x_pred, b if b in on_grid else a)) / 2
        else:
            direction = plms_direction(e, history)
        x = ddim(x, direction, abar[a], abar[b])
        if sampler == "plms":
            history = [e, *history][:3]
    return x
