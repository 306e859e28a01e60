"""Scores of DiffOOD's classifier alone: MSP and energy, for labelled ID sets.

The classifier is DiffOOD's (:mod:`ood_bench.methods.classifier`, options
:class:`~ood_bench.methods.classifier.options.ClassifierOptions`): the same ResNet-18 32×32 and
recipe. Beside DiffOOD they show what its diffusion denoising adds to the classifier.

- ``msp`` (Hendrycks & Gimpel, ICLR 2017): ``score = −max_k softmax(logits)_k``;
- ``energy`` (Liu et al., NeurIPS 2020): ``score = E(x) = −T · logsumexp(logits / T)``, T = 1.

Higher = more OOD for both. ``msp``, ``energy`` and ``diffood`` ask for the shared
``"classifier"`` artifact: when their classifier options agree (presets give them the same ones),
the run trains it once and all three score with that very network.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ood_bench.data.base import ImageDataset
from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.artifacts import ArtifactRequest
from ood_bench.methods.base import BatchOutput, OODMethod, score_option
from ood_bench.methods.classifier import ClassifierArtifact, ClassifierRecipe, classifier_request
from ood_bench.methods.classifier.network import CHECKPOINT_PATTERNS, Classifier, classifier_file, new_classifier
from ood_bench.methods.pretrained import Weights, hub_weights
from ood_bench.methods.backbones import resolve_weights_file
from ood_bench.methods.registry import register_method
from ood_bench.utils.device import autocast


@dataclass
class ClassifierScoreConfig(ClassifierRecipe):
    """The classifier's recipe (:class:`ClassifierRecipe`: options + the image options its
    training reads) and the score options."""

    score: str = score_option("", "msp or energy (set by the method)")
    temperature: float = score_option(1.0, "logit temperature T (1: the papers')")

    def __post_init__(self) -> None:
        self.require_own_score()
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")


class ClassifierScore(OODMethod):
    """Shared part: the classifier artifact; subclasses turn logits into one score."""

    needs_labels = True
    default_batch_size = 512
    config: ClassifierScoreConfig

    def __init__(self, config: ClassifierScoreConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.image_transform = ImageTransform(config.image_size, channels=config.channels)
        self.classifier: Classifier | None = None
        self.num_classes = 0
        self.report: dict[str, float] = {}

    @classmethod
    def required_weights(cls, config: ClassifierScoreConfig) -> list[Weights]:
        return hub_weights(config.classifier_path, CHECKPOINT_PATTERNS)

    @classmethod
    def preflight(cls, config: ClassifierScoreConfig) -> None:
        if config.classifier_path:
            classifier_file(config.classifier_path)
        elif config.classifier_backbone:
            resolve_weights_file(config.classifier_backbone, config.classifier_weights)

    def inference_networks(self) -> list[torch.nn.Module]:
        return [self.classifier]

    def requires(self) -> dict[str, ArtifactRequest]:
        return {"classifier": classifier_request(self.config)}

    def fit(self, train: ImageDataset) -> None:
        self.use_classifier()

    def use_classifier(self) -> None:
        """Take the shared classifier (the engine filled ``self.artifacts``)."""
        art: ClassifierArtifact = self.artifacts["classifier"]
        self.classifier, self.num_classes, self.report = art.classifier, art.num_classes, art.fit_report()

    def build_untrained(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = new_classifier(self.config, num_classes).to(self.device).eval()

    def classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The classifier on a batch, as float32 ``(logits (B, K), features (B, D))``; under bf16
        autocast where the run's precision says so (the fast path), like every other network."""
        with autocast(self.device):
            logits, feats = self.classifier(x)
        return logits.float(), feats.float()

    def logits(self, data: ImageDataset) -> torch.Tensor:
        """The classifier's logits ``(N, K)`` of ``data``."""
        return self.map_batches(data, lambda x: self.classify(x)[0])

    def embed(self, data: ImageDataset) -> torch.Tensor:
        """The classifier's penultimate features ``(N, 8·width)`` of ``data``."""
        return self.map_batches(data, lambda x: self.classify(x)[1])

    def logits_score(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        logits = self.classify(x)[0]
        return BatchOutput({self.config.score: self.logits_score(logits)}, predictions=logits.argmax(1))

    def save(self, directory: Path) -> None:
        """Nothing of its own: the classifier is the shared artifact (its folder's
        ``classifier.pt`` is reusable as ``classifier_path``)."""

    def load(self, directory: Path) -> None:
        self.use_classifier()

    def cost(self) -> dict[str, float]:
        return {"classifier": 1.0}

    def fit_report(self) -> dict[str, float]:
        return dict(self.report)


@dataclass
class MSPConfig(ClassifierScoreConfig):
    score: str = score_option("msp", "the only score: -max softmax(logits / T)")


@dataclass
class EnergyConfig(ClassifierScoreConfig):
    score: str = score_option("energy", "the only score: the energy -T logsumexp(logits / T)")


@register_method("msp")
class MSP(ClassifierScore):
    """Baseline: maximum softmax probability of DiffOOD's classifier (negated). Needs labels."""

    display_name = "MSP"

    config_cls = MSPConfig

    def logits_score(self, logits: torch.Tensor) -> torch.Tensor:
        # T = 1 divides exactly: the scores of the paper's MSP, bit for bit
        return -(logits / self.config.temperature).softmax(dim=1).max(dim=1).values


@register_method("energy")
class Energy(ClassifierScore):
    """Baseline: energy score of DiffOOD's classifier (Liu et al., 2020). Needs labels."""

    display_name = "Energy"

    config_cls = EnergyConfig

    def logits_score(self, logits: torch.Tensor) -> torch.Tensor:
        t = self.config.temperature
        return -t * torch.logsumexp(logits / t, dim=1)
