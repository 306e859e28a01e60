"""LMD's "detect" step: distances between originals and inpaintings (higher = more different).

Every distance takes two batches ``(N, C, H, W)`` in ``[0, 1]`` and returns ``(N,)``:

- ``lpips``    LPIPS with AlexNet (the paper's default), inputs mapped to ``[-1, 1]`` at native
               resolution (images under 32 px are upsampled to 32, AlexNet's minimum). Needs
               torchvision's ``alexnet-owt-7be5be79.pth`` in the torch hub cache.
- ``mse``      mean over C×H×W of the squared difference.
- ``ssim``     1 − SSIM (scikit-image ``structural_similarity``, ``data_range=1``, 7×7 window).
- ``features`` 1 − cosine similarity of the multi-layer feature vectors
               (:class:`ood_bench.methods.features.MultiLayerFeatures`) of the offline ImageNet
               EfficientNet-Lite0 at ``feature_size`` px — the offline deep-feature distance
               (the reference code offers a SimCLR cosine distance in the same role).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ood_bench.utils.device import autocast
from ood_bench.utils.errors import MissingWeightsError
from ood_bench.methods.backbones import create_backbone, torch_hub_checkpoints
from ood_bench.methods.features import MultiLayerFeatures
from ood_bench.methods.pretrained import Weights, hub_weights
from ood_bench.methods.unet import PixelDiffusionConfig, load_unet

DISTANCES = ("lpips", "mse", "ssim", "features")
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
LPIPS_MIN_SIZE = 32


def check_lpips_weights() -> Path:
    """The AlexNet file LPIPS loads; a one-line error naming file and folder when absent."""
    path = torch_hub_checkpoints() / ALEXNET_FILE
    if not path.is_file():
        raise MissingWeightsError(
            f"LPIPS needs torchvision's AlexNet weights {ALEXNET_FILE} in {path.parent}: run `ood-bench fetch` "
            f"(or `run --download`), or download {ALEXNET_URL} there by hand, or use an offline distance: "
            f"--set lmd.distances=[mse,ssim,features] lmd.score=features"
        )
    return path


def distance_weights(distances: Iterable[str], config: PixelDiffusionConfig) -> list[Weights]:
    """The downloadable weights of a method measuring ``distances`` on the UNet of ``config``:
    AlexNet where LPIPS is among them, the hub UNet where ``config.unet`` names one."""
    return [*([Weights(name="alexnet")] if "lpips" in distances else []), *hub_weights(config.unet)]


def preflight_distances(distances: Iterable[str], config: PixelDiffusionConfig) -> None:
    """Fail before any work if LPIPS (when among ``distances``) or the hub UNet is missing."""
    if "lpips" in distances:
        check_lpips_weights()
    if config.unet:  # downloads a hub repo now, so a missing model fails before any work
        load_unet(config.unet, config.image_size, config.channels)


class Distance:
    """Base: ``__call__(x, y) -> (N,)``; ``pairwise`` compares each original with its repetitions."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pairwise(self, orig: torch.Tensor, recs: torch.Tensor, reps: int) -> torch.Tensor:
        """``orig (B, C, H, W)``, ``recs (B·reps, C, H, W)`` image-major → distances ``(B, reps)``."""
        return self(orig.repeat_interleave(reps, 0), recs).view(len(orig), reps)

    @staticmethod
    def evals_per_image(reps: int) -> float:
        """Network evaluations per scored image (0 for pixel distances)."""
        return 0.0


class MSE(Distance):
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((x - y) ** 2).flatten(1).mean(1)


class SSIM(Distance):
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from skimage.metrics import structural_similarity

        a = x.detach().float().cpu().permute(0, 2, 3, 1).numpy()
        b = y.detach().float().cpu().permute(0, 2, 3, 1).numpy()
        vals = [structural_similarity(p, q, data_range=1.0, channel_axis=2) for p, q in zip(a, b)]
        return 1.0 - torch.tensor(np.asarray(vals), dtype=torch.float32, device=x.device)


class LPIPS(Distance):
    """``lpips.LPIPS(net="alex")``; ``random_backbone=True`` exercises the code path without the
    ImageNet weights (tests only: the numbers are then not LPIPS)."""

    def __init__(self, device: torch.device, random_backbone: bool = False) -> None:
        import lpips

        if not random_backbone:
            check_lpips_weights()
        self.net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=random_backbone, verbose=False)
        self.net = self.net.to(device).eval().requires_grad_(False)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < LPIPS_MIN_SIZE:
            x = F.interpolate(x, size=LPIPS_MIN_SIZE, mode="bilinear", align_corners=False)
            y = F.interpolate(y, size=LPIPS_MIN_SIZE, mode="bilinear", align_corners=False)
        if x.shape[1] == 1:
            x, y = x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)
        return self.net(x * 2 - 1, y * 2 - 1).flatten()

    @staticmethod
    def evals_per_image(reps: int) -> float:
        return 2.0 * reps  # AlexNet runs on both images of every pair


class FeatureCosine(Distance):
    """1 − cosine similarity of Lite0 multi-layer features; an original's features are computed
    once and compared with all its repetitions."""

    def __init__(self, device: torch.device, size: int, arch: str = "tf_efficientnet_lite0", weights: str = "auto") -> None:
        backbone, cfg = create_backbone(arch, weights)
        self.features = MultiLayerFeatures(backbone, cfg["mean"], cfg["std"], cfg["channels"]).to(device)
        self.size = size
        self.device = device

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        with autocast(self.device):
            return self.features(x).float()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - F.cosine_similarity(self.embed(x), self.embed(y), dim=1)

    def pairwise(self, orig: torch.Tensor, recs: torch.Tensor, reps: int) -> torch.Tensor:
        e = self.embed(orig).repeat_interleave(reps, 0)
        return (1.0 - F.cosine_similarity(e, self.embed(recs), dim=1)).view(len(orig), reps)

    @staticmethod
    def evals_per_image(reps: int) -> float:
        return reps + 1.0


DISTANCE_TYPES: dict[str, type[Distance]] = {"lpips": LPIPS, "mse": MSE, "ssim": SSIM, "features": FeatureCosine}


def build_distance(name: str, device: torch.device, feature_size: int) -> Distance:
    if name == "lpips":
        return LPIPS(device)
    if name == "features":
        return FeatureCosine(device, feature_size)
    return DISTANCE_TYPES[name]()
