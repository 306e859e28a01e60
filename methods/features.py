"""Multi-layer semantic feature vectors of a frozen backbone (DLSR's features; LMD's deep-feature distance).

For an image batch ``x`` of shape ``(B, 3, H, W)`` in ``[0, 1]``:

1. normalise with the backbone's mean/std (timm's pretrained config) and run the frozen
   ``features_only`` backbone → one map per tapped stage;
2. resize every map bilinearly (``align_corners=True``, as the reference code) to the stride-16
   grid (14×14 at 224 px) and global-average-pool it → one vector per layer;
3. standardise each layer's vector per sample: ``(f − mean) / (std + 1e-5)`` with the unbiased
   std, then concatenate → ``(B, c)``, ``c = sum(channels)`` (720 for EfficientNet-B4,
   512 for Lite0, 1792 for ResNet-50 layers 1–3).

``slices`` gives each layer's ``[start, end)`` range in the vector (used by MFsim).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GRID_STRIDE = 16
EPS = 1e-5


class MultiLayerFeatures(nn.Module):
    """Frozen backbone + resize/pool/standardise → ``(B, c)`` feature vectors."""

    def __init__(self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...],
                 channels: list[int]) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.channels = list(channels)
        bounds = [0]
        for c in self.channels:
            bounds.append(bounds[-1] + c)
        self.slices = list(zip(bounds[:-1], bounds[1:]))

    @property
    def dim(self) -> int:
        return sum(self.channels)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = max(1, x.shape[-1] // GRID_STRIDE)
        maps = self.backbone((x - self.mean) / self.std)
        vecs = []
        for m in maps:
            m = m.float()
            if m.shape[-1] != grid or m.shape[-2] != grid:
                m = F.interpolate(m, size=(grid, grid), mode="bilinear", align_corners=True)
            vecs.append(standardize(m.mean(dim=(2, 3))))
        return torch.cat(vecs, dim=1)


def standardize(v: torch.Tensor) -> torch.Tensor:
    """Per-sample standardisation of ``(B, C)`` vectors: ``(v − mean) / (std + 1e-5)``, unbiased std."""
    return (v - v.mean(dim=1, keepdim=True)) / (v.std(dim=1, keepdim=True) + EPS)


def layerwise_cosine(a: torch.Tensor, b: torch.Tensor, slices: list[tuple[int, int]]) -> torch.Tensor:
    """Mean over layer slices of the cosine similarity of ``a`` and ``b`` ``(B, c)`` → ``(B,)``."""
    sims = [F.cosine_similarity(a[:, s:e], b[:, s:e], dim=1) for s, e in slices]
    return torch.stack(sims, dim=1).mean(dim=1)
