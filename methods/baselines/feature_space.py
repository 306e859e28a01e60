"""Distances in DLSR's feature space: Mahalanobis (one Gaussian) and k-nearest neighbours.

Both use the multi-layer feature vector DLSR reconstructs (:mod:`ood_bench.methods.features`,
options :class:`~ood_bench.methods.features.FeatureOptions`: same backbone, layers, size and
per-layer standardisation), so beside DLSR they show what its diffusion model adds.

- ``mahalanobis``: ``(z − μ)ᵀ Σ⁻¹ (z − μ)`` with Σ the Ledoit–Wolf estimate, one Gaussian for
  the whole ID set (unsupervised, as DLSR; Lee et al. 2018 fit one per class).
- ``knn`` (Sun et al., ICML 2022): L2-normalise the vectors, score = Euclidean distance to the
  k-th nearest ID training vector (paper: k = 50 on CIFAR-10). The paper uses a classifier's
  penultimate features; here they are DLSR's, by design of the comparison.

Higher = more OOD for both.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ood_bench.data.base import ImageDataset
from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.base import BatchOutput, OODMethod, score_option
from ood_bench.methods.baselines.gaussian import Gaussian
from ood_bench.methods.features import FeatureOptions, MultiLayerFeatures, build_features, extract_features
from ood_bench.methods.registry import register_method
from ood_bench.utils.device import autocast
from ood_bench.utils.errors import ConfigError


class FeatureSpaceMethod(OODMethod):
    """Shared part: the frozen feature extractor and the ID training vectors."""

    config: FeatureOptions

    def __init__(self, config: FeatureOptions, ctx) -> None:
        super().__init__(config, ctx)
        self.image_transform = ImageTransform(config.image_size, channels=3)
        self.features: MultiLayerFeatures | None = None

    @classmethod
    def preflight(cls, config: FeatureOptions) -> None:
        config.check_weights()

    def inference_networks(self) -> list[torch.nn.Module]:
        return [self.features]

    def _ensure_features(self) -> MultiLayerFeatures:
        if self.features is None:
            self.features, _ = build_features(self.config, self.device)
        return self.features

    def train_vectors(self, train: ImageDataset) -> torch.Tensor:
        """ID training vectors ``(N, c)`` (float32, CPU) through the scoring path (the extractor
        prepared for inference first), so training and test vectors share their arithmetic."""
        feats = self._ensure_features()
        self.prepare_inference()
        return extract_features(feats, train, self.loader_transform(), self.ctx.batch_size,
                                self.ctx.workers, self.device, f"{self.name} features {train.name}")

    def vectors(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device):
            return self.features(x).float()

    def cost(self) -> dict[str, float]:
        return {"backbone": 1.0}


# ------------------------------------------------------------------------------ Mahalanobis
@dataclass
class FeatureMahalanobisConfig(FeatureOptions):
    score: str = score_option("mahalanobis", "the only score: squared Mahalanobis distance")

    def __post_init__(self) -> None:
        self.require_own_score()


@register_method("mahalanobis")
class FeatureMahalanobis(FeatureSpaceMethod):
    """Baseline: Mahalanobis distance of DLSR's multi-layer features to one Gaussian of the ID set."""

    display_name = "Mahalanobis"

    config_cls = FeatureMahalanobisConfig

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.gaussian = Gaussian()
        self.report: dict[str, float] = {}

    def fit(self, train: ImageDataset) -> None:
        self.report["shrinkage"] = self.gaussian.fit(self.train_vectors(train), self.device)

    def build_untrained(self, num_classes: int) -> None:
        self.gaussian.random(self._ensure_features().dim, self.device)

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        return BatchOutput({"mahalanobis": self.gaussian.distance(self.vectors(x))})

    def save(self, directory: Path) -> None:
        self.gaussian.save(directory)

    def load(self, directory: Path) -> None:
        self._ensure_features()
        self.gaussian.load(directory, self.device)

    def fit_report(self) -> dict[str, float]:
        return dict(self.report)


# ------------------------------------------------------------------------------ kNN
@dataclass
class KNNConfig(FeatureOptions):
    score: str = score_option("knn", "the only score: distance to the k-th nearest ID training vector")
    k: int = score_option(50, "which neighbour (Sun et al.: 50 on CIFAR-10)")

    def __post_init__(self) -> None:
        self.require_own_score()
        if self.k < 1:
            raise ValueError("k must be at least 1")


@register_method("knn")
class KNN(FeatureSpaceMethod):
    """Baseline: distance to the k-th nearest ID training vector of L2-normalised DLSR features (Sun et al., 2022)."""

    display_name = "kNN"

    config_cls = KNNConfig
    config: KNNConfig
    CHUNK = 4096  # training vectors compared at once: bounds the (B, chunk) distance matrix

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.bank: torch.Tensor | None = None

    def _check_k(self, n: int) -> None:
        if self.config.k > n:
            raise ConfigError(f"knn.k = {self.config.k} exceeds the {n} ID training images; "
                              f"use a smaller k, e.g. --set knn.k={max(1, n // 20)}")

    def fit(self, train: ImageDataset) -> None:
        self._check_k(len(train))
        self.bank = F.normalize(self.train_vectors(train), dim=1).to(self.device)

    def build_untrained(self, num_classes: int, bank_size: int = 50_000) -> None:
        dim = self._ensure_features().dim
        self.bank = F.normalize(torch.randn(bank_size, dim, device=self.device), dim=1)

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        k = self.config.k
        self._check_k(len(self.bank))
        q = F.normalize(self.vectors(x), dim=1)
        best = None  # the k smallest distances so far, (B, k) ascending
        for s in range(0, len(self.bank), self.CHUNK):
            d = torch.cdist(q, self.bank[s:s + self.CHUNK])
            best = d if best is None else torch.cat([best, d], dim=1)
            best = best.topk(min(k, best.shape[1]), dim=1, largest=False).values
        return BatchOutput({"knn": best[:, k - 1]})

    def save(self, directory: Path) -> None:
        torch.save(self.bank.cpu(), directory / "bank.pt")

    def load(self, directory: Path) -> None:
        self._ensure_features()
        self.bank = torch.load(directory / "bank.pt", map_location="cpu", weights_only=True).to(self.device)
