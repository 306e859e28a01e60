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

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ood_bench.data.base import ImageDataset
from ood_bench.data.loading import DeviceBatches
from ood_bench.methods.backbones import create_backbone, resolve_weights_file
from ood_bench.methods.base import MethodConfig, fit_option
from ood_bench.methods.pretrained import Weights
from ood_bench.utils.device import autocast
from ood_bench.utils.progress import progress

GRID_STRIDE = 16
EPS = 1e-5


@dataclass
class FeatureOptions(MethodConfig):
    """Which multi-layer features: DLSR's (paper: EfficientNet-B4 at 224 px, all five stages).

    DLSR and the feature-space baselines (Mahalanobis, kNN) share these options, so a preset
    that sets them for both compares the methods on the very same features."""

    backbone: str = fit_option("tf_efficientnet_b4", "timm architecture: tf_efficientnet_b4 (paper), tf_efficientnet_lite0 (offline), resnet50")
    weights: str = fit_option("auto", "auto (known offline file / torch hub cache) | <file.pth> | timm | random")
    layers: tuple[int, ...] = fit_option((), "features_only stages to tap; empty = all of the backbone's DLSR layers")
    image_size: int = fit_option(224, "input resolution (square)")

    def required_weights(self) -> list[Weights]:
        """The backbone's weights file when it is fetched by name (``weights=auto``)."""
        return [Weights(name=self.backbone)] if self.weights == "auto" else []

    def check_weights(self) -> None:
        """Raise :class:`~ood_bench.utils.errors.MissingWeightsError` when the backbone's weights are not on disk."""
        resolve_weights_file(self.backbone, self.weights)


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


def build_features(c: FeatureOptions, device: torch.device) -> tuple[MultiLayerFeatures, dict]:
    """The frozen feature extractor of ``c`` on ``device``, and the backbone's config (mean, std, channels)."""
    backbone, cfg = create_backbone(c.backbone, c.weights, tuple(c.layers) or None)
    return MultiLayerFeatures(backbone, cfg["mean"], cfg["std"], cfg["channels"]).to(device), cfg


def standardize(v: torch.Tensor) -> torch.Tensor:
    """Per-sample standardisation of ``(B, C)`` vectors: ``(v − mean) / (std + 1e-5)``, unbiased std."""
    return (v - v.mean(dim=1, keepdim=True)) / (v.std(dim=1, keepdim=True) + EPS)


def layerwise_cosine(a: torch.Tensor, b: torch.Tensor, slices: list[tuple[int, int]]) -> torch.Tensor:
    """Mean over layer slices of the cosine similarity of ``a`` and ``b`` ``(B, c)`` → ``(B,)``."""
    sims = [F.cosine_similarity(a[:, s:e], b[:, s:e], dim=1) for s, e in slices]
    return torch.stack(sims, dim=1).mean(dim=1)


def extract_features(feats: MultiLayerFeatures, data: ImageDataset, transform: Callable,
                     batch_size: int, workers: int, device: torch.device, desc: str) -> torch.Tensor:
    """Feature vectors ``(N, c)`` of every image of ``data``, in dataset order (float32, CPU).

    ``transform``: pass the method's :meth:`~ood_bench.methods.base.OODMethod.loader_transform`
    so that on CUDA images are resized on the GPU; vectors stay there until the end."""
    out = []
    with torch.no_grad():
        batches = DeviceBatches(data, transform, batch_size, device, workers)
        for x, _, _ in progress(batches, desc, unit="batch"):
            with autocast(device):
                out.append(feats(x).float())
    return torch.cat(out).cpu()
