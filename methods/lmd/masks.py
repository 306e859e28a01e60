"""LMD's masks ("lift"): which pixels are kept (1) and which are inpainted (0).

All masks have shape ``(N, 1, H, W)`` with values in {0, 1}; **1 = kept (known), 0 = inpainted**,
the reference code's convention. For ``n`` images × ``reps`` repetitions the rows are ordered
image-major: row ``i * reps + j`` is repetition ``j`` of image ``i``.

- ``checkerboard``: an ``blocks × blocks`` grid of square blocks; block (r, c) is kept when
  ``r + c`` is even (the top-left block is kept). Half the pixels are inpainted.
- ``checkerboard_alt``: repetition ``j`` uses ``checkerboard`` when ``j`` is even and its
  complement when ``j`` is odd (the paper's default, 5 + 5 of 10 repetitions).
- ``center``: the central square ``[H/4, 3H/4)²`` is inpainted (a quarter of the pixels).
- ``random``: the image is cut into ``patch × patch`` patches and exactly ``ceil(ratio · n)`` of
  them, chosen at random, are kept (SimMIM-style, ratio 0.5, patch 4 as in the reference code);
  drawn independently per image and repetition (the reference draws one per batch).
"""
from __future__ import annotations

import math

import torch

MASK_KINDS = ("checkerboard", "checkerboard_alt", "center", "random")


def checkerboard(size: int, blocks: int, inverted: bool = False) -> torch.Tensor:
    """``(1, 1, size, size)`` checkerboard of ``blocks`` blocks per edge, top-left kept unless inverted."""
    if size % blocks:
        raise ValueError(f"image size {size} is not divisible by mask_blocks={blocks}")
    r = torch.arange(blocks)
    grid = ((r.view(-1, 1) + r.view(1, -1)) % 2 == 0).float()
    if inverted:
        grid = 1 - grid
    cell = size // blocks
    return grid.repeat_interleave(cell, 0).repeat_interleave(cell, 1).view(1, 1, size, size)


def center(size: int) -> torch.Tensor:
    m = torch.ones(1, 1, size, size)
    lo, hi = size // 4, (3 * size) // 4
    m[..., lo:hi, lo:hi] = 0
    return m


def random_patches(n: int, size: int, patch: int, keep_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """``(n, 1, size, size)`` masks keeping exactly ``ceil(keep_ratio · patches)`` random patches each."""
    if size % patch:
        raise ValueError(f"image size {size} is not divisible by the random-mask patch {patch}")
    per = size // patch
    total = per * per
    keep = math.ceil(total * keep_ratio)
    order = torch.rand(n, total, generator=generator, device=generator.device).argsort(dim=1)
    grid = (order < keep).float().view(n, 1, per, per)
    return grid.repeat_interleave(patch, 2).repeat_interleave(patch, 3)


def make_masks(kind: str, n: int, reps: int, size: int, blocks: int, generator: torch.Generator,
               patch: int = 4, keep_ratio: float = 0.5) -> torch.Tensor:
    """Masks for ``n`` images × ``reps`` repetitions, ``(n * reps, 1, size, size)``, on the generator's device."""
    dev = generator.device
    if kind == "checkerboard":
        per_rep = [checkerboard(size, blocks)] * reps
    elif kind == "checkerboard_alt":
        per_rep = [checkerboard(size, blocks, inverted=j % 2 == 1) for j in range(reps)]
    elif kind == "center":
        per_rep = [center(size)] * reps
    elif kind == "random":
        return random_patches(n * reps, size, patch, keep_ratio, generator)
    else:
        raise ValueError(f"unknown mask {kind!r}; one of {MASK_KINDS}")
    one_image = torch.cat(per_rep, dim=0)  # (reps, 1, H, W)
    return one_image.repeat(n, 1, 1, 1).to(dev)
