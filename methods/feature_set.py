"""The ID training set's multi-layer feature vectors as a shared artifact (kind ``"features"``):
DLSR trains its LFDN on them; Mahalanobis fits its Gaussian and kNN keeps them as its bank. When
their :class:`~ood_bench.methods.features.FeatureOptions` agree (presets give them the same
ones), the run extracts them once and all three use the very same extractor and vectors.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ood_bench.data.base import ImageDataset
from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.artifacts import Artifact, ArtifactRequest, register_artifact
from ood_bench.methods.base import RunContext
from ood_bench.methods.features import FeatureOptions, MultiLayerFeatures, build_features, extract_features
from ood_bench.methods.training import seed_network
from ood_bench.utils.device import compile_enabled, prepare_network

# Extraction batch: vectors do not depend on the requesting method's scoring batch size (128 is
# what every feature method extracted with before features were shared, so their scores stay).
EXTRACT_BATCH = 128


def features_recipe(config: FeatureOptions) -> dict[str, Any]:
    """The :class:`FeatureOptions` of ``config`` (a subclass's own options left out), JSON-plain."""
    return {f.name: (list(v) if isinstance(v := getattr(config, f.name), tuple) else v)
            for f in dataclasses.fields(FeatureOptions) if f.metadata.get("stage", "fit") == "fit"}


def features_request(config: FeatureOptions) -> ArtifactRequest:
    """The request for the ID training features of ``config``: kind ``"features"``, ID train."""
    return ArtifactRequest("features", features_recipe(config), data="train")


def recipe_options(recipe: dict) -> FeatureOptions:
    return FeatureOptions(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in recipe.items()})


@register_artifact("features")
class FeaturesArtifact(Artifact):
    """The frozen extractor (:class:`MultiLayerFeatures` on the device), the ID training vectors
    ``(N, c)`` it gives (float32, CPU, dataset order) and their labels ``(N,)`` (int64, −1 where
    unlabelled)."""

    version = "1"

    def __init__(self, extractor: MultiLayerFeatures, vectors: torch.Tensor, labels: torch.Tensor) -> None:
        self.extractor = extractor
        self.vectors = vectors
        self.labels = labels

    @staticmethod
    def new_extractor(recipe: dict, ctx: RunContext) -> MultiLayerFeatures:
        """The extractor of ``recipe`` (``weights=random``: initial weights seeded by the run seed)."""
        seed_network(ctx.seed, "features backbone")
        return build_features(recipe_options(recipe), ctx.device)[0]

    @classmethod
    def build(cls, recipe: dict, train: ImageDataset, ctx: RunContext) -> "FeaturesArtifact":
        extractor = cls.new_extractor(recipe, ctx)
        # the path scoring takes (channels_last and compiled on the fast path, autocast inside
        # extract_features), so training and test vectors share their arithmetic
        prepare_network(extractor, ctx.device, compile_enabled(ctx.compile, ctx.device), ctx.compile_backend)
        transform = ImageTransform(recipe["image_size"], channels=3)
        vectors = extract_features(extractor, train, transform, EXTRACT_BATCH, ctx.workers, ctx.device,
                                   f"{recipe['backbone']} features {train.name}")
        return cls(extractor, vectors, torch.from_numpy(train.labels()))

    def save(self, directory: Path) -> None:
        torch.save({"vectors": self.vectors.contiguous(), "labels": self.labels}, directory / "vectors.pt")

    @classmethod
    def load(cls, recipe: dict, directory: Path, ctx: RunContext) -> "FeaturesArtifact":
        state = torch.load(directory / "vectors.pt", map_location="cpu", weights_only=True)
        return cls(cls.new_extractor(recipe, ctx), state["vectors"], state["labels"])

    def fit_report(self) -> dict[str, float]:
        return {"vectors": float(len(self.vectors)), "dim": float(self.vectors.shape[1])}
