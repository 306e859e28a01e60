"""Scores of DiffOOD's classifier alone: MSP and energy, for labelled ID sets.

The classifier is DiffOOD's (:func:`ood_bench.methods.diffood.classifier.fit_classifier`, options
:class:`~ood_bench.methods.diffood.config.ClassifierOptions`): the same ResNet-18 32×32 and
recipe. Beside DiffOOD they show what its diffusion denoising adds to the classifier.

- ``msp`` (Hendrycks & Gimpel, ICLR 2017): ``score = −max_k softmax(logits)_k``;
- ``energy`` (Liu et al., NeurIPS 2020): ``score = E(x) = −T · logsumexp(logits / T)``, T = 1.

Higher = more OOD for both. ``msp`` and ``energy`` share one fitted classifier: they declare the
same ``fit_family``, so the runner trains it once and caches it for both.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ood_bench.data.base import ImageDataset
from ood_bench.data.loading import materialize
from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.base import BatchOutput, OODMethod, fit_option, score_option
from ood_bench.methods.diffood.classifier import Classifier, classifier_file, fit_classifier, new_classifier
from ood_bench.methods.diffood.config import ClassifierOptions
from ood_bench.methods.backbones import resolve_weights_file
from ood_bench.methods.registry import register_method
from ood_bench.utils.errors import ConfigError


@dataclass
class ClassifierScoreConfig(ClassifierOptions):
    """:class:`ClassifierOptions` plus the image options DiffOOD's classifier training reads."""

    score: str = score_option("", "msp or energy (set by the method)")
    image_size: int = fit_option(32, "side the images are resized to")
    channels: int = fit_option(3, "image channels")
    hflip: bool = fit_option(True, "random horizontal flips in training")
    checkpoint_every: int = fit_option(10, "epochs between resumable training checkpoints")
    temperature: float = score_option(1.0, "energy temperature T")

    def __post_init__(self) -> None:
        self.require_own_score()
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")


class ClassifierScore(OODMethod):
    """Shared part: fit (or load) the classifier; subclasses turn logits into one score."""

    needs_labels = True
    fit_family = "classifier"
    default_batch_size = 512
    config: ClassifierScoreConfig

    def __init__(self, config: ClassifierScoreConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.image_transform = ImageTransform(config.image_size, channels=config.channels)
        self.classifier: Classifier | None = None
        self.num_classes = 0
        self.report: dict[str, float] = {}

    @classmethod
    def preflight(cls, config: ClassifierScoreConfig) -> None:
        if config.classifier_path:
            classifier_file(config.classifier_path)
        elif config.classifier_backbone:
            resolve_weights_file(config.classifier_backbone, config.classifier_weights)

    def inference_networks(self) -> list[torch.nn.Module]:
        return [self.classifier]

    def fit(self, train: ImageDataset) -> None:
        x, y = materialize(train, self.transform, 1024, self.ctx.workers)
        if (y < 0).any():
            raise ConfigError(f"{self.name} needs class labels, but {train.name} has unlabelled images")
        self.num_classes = int(train.num_classes)
        self.classifier, self.report = fit_classifier(self.config, x, y, self.num_classes, self.device,
                                                      self.ctx.seed, self.ctx.work_dir, self.log,
                                                      compile=self.training_compile())

    def build_untrained(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = new_classifier(self.config, num_classes).to(self.device).eval()

    def logits_score(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        logits = self.classifier(x)[0].float()
        return BatchOutput({self.config.score: self.logits_score(logits)}, predictions=logits.argmax(1))

    def save(self, directory: Path) -> None:
        torch.save(self.classifier.state_dict(), directory / "classifier.pt")
        (directory / "classifier.json").write_text(json.dumps({"num_classes": self.num_classes, "report": self.report}))

    def load(self, directory: Path) -> None:
        meta = json.loads((directory / "classifier.json").read_text())
        self.num_classes, self.report = meta["num_classes"], meta["report"]
        clf = new_classifier(self.config, self.num_classes)
        clf.load_state_dict(torch.load(directory / "classifier.pt", map_location="cpu", weights_only=True))
        self.classifier = clf.to(self.device).eval()

    def cost(self) -> dict[str, float]:
        return {"classifier": 1.0}

    def fit_report(self) -> dict[str, float]:
        return dict(self.report)


@dataclass
class MSPConfig(ClassifierScoreConfig):
    score: str = score_option("msp", "the only score: negative maximum softmax probability")


@dataclass
class EnergyConfig(ClassifierScoreConfig):
    score: str = score_option("energy", "the only score: the energy -T logsumexp(logits / T)")


@register_method("msp")
class MSP(ClassifierScore):
    """Baseline: maximum softmax probability of DiffOOD's classifier (negated). Needs labels."""

    display_name = "MSP"

    config_cls = MSPConfig

    def logits_score(self, logits: torch.Tensor) -> torch.Tensor:
        return -logits.softmax(dim=1).max(dim=1).values


@register_method("energy")
class Energy(ClassifierScore):
    """Baseline: energy score of DiffOOD's classifier (Liu et al., 2020). Needs labels."""

    display_name = "Energy"

    config_cls = EnergyConfig

    def logits_score(self, logits: torch.Tensor) -> torch.Tensor:
        t = self.config.temperature
        return -t * torch.logsumexp(logits / t, dim=1)
