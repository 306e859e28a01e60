"""Small picture grids of what a method does to images (users check by eye that it works)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from benchmark import atomic

N_EXAMPLES = 8
MIN_TILE = 32


def save_grid(rows: list[torch.Tensor], path: Path) -> Path:
    """One row per tensor ``(n, C, H, W)`` in ``[0, 1]`` (same n, C, H, W); tiny tiles are enlarged
    (nearest) to at least 32 px so the picture can be read."""
    tiles = torch.cat([r.detach().float().cpu().clamp(0, 1) for r in rows])
    if tiles.shape[-1] < MIN_TILE:
        tiles = F.interpolate(tiles, scale_factor=-(-MIN_TILE // tiles.shape[-1]), mode="nearest")
    grid = make_grid(tiles, nrow=len(rows[0]), padding=2, pad_value=1.0)
    return atomic.write_with(path, lambda p: save_image(grid, p, format="png"))
