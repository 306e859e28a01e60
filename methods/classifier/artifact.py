"""The classifier as a shared artifact (kind ``"classifier"``): DiffOOD, MSP and energy ask for
it by the same recipe and get one network, trained once (or loaded from ``classifier_path``).

The recipe is :class:`~ood_bench.methods.classifier.options.ClassifierRecipe`: the classifier
options plus the image options its training reads. It trains on the whole ID training split
(``data="train"``, labels required), as DiffOOD always did.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from ood_bench.utils.device import compile_backend
from ood_bench.utils.errors import ConfigError
from ood_bench.utils.progress import log
from ood_bench.data.base import ImageDataset
from ood_bench.data.loading import materialize
from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.artifacts import Artifact, ArtifactRequest, register_artifact
from ood_bench.methods.base import MethodConfig, RunContext
from ood_bench.methods.classifier.network import Classifier, fit_classifier, new_classifier
from ood_bench.methods.classifier.options import ClassifierRecipe


def classifier_recipe(config: MethodConfig) -> dict[str, Any]:
    """The :class:`ClassifierRecipe` fields of ``config`` (a config holding every one of them)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(ClassifierRecipe)
            if f.metadata.get("stage", "fit") == "fit"}


def classifier_request(config: MethodConfig) -> ArtifactRequest:
    """The request for the classifier of ``config``: kind ``"classifier"``, on the ID train split."""
    return ArtifactRequest("classifier", classifier_recipe(config), data="train")


@register_artifact("classifier")
class ClassifierArtifact(Artifact):
    """A trained :class:`Classifier` (eval mode, on the device) for ``num_classes`` classes, with
    its training report (train accuracy, final loss; empty when loaded from ``classifier_path``)."""

    version = "1"

    def __init__(self, classifier: Classifier, num_classes: int, report: dict[str, float] | None = None) -> None:
        self.classifier = classifier
        self.num_classes = num_classes
        self.report = dict(report or {})

    @classmethod
    def build(cls, recipe: dict, train: ImageDataset, ctx: RunContext) -> "ClassifierArtifact":
        c = ClassifierRecipe(**recipe)
        x, y = materialize(train, ImageTransform(c.image_size, channels=c.channels), 1024, ctx.workers)
        if not train.has_labels or (y < 0).any():
            raise ConfigError(f"the classifier needs class labels, but {train.name} has unlabelled images")
        n = int(train.num_classes)
        clf, report = fit_classifier(c, x, y, n, ctx.device, ctx.seed, ctx.work_dir, log,
                                     compile=compile_backend(ctx.compile, ctx.device, ctx.compile_backend))
        return cls(clf, n, report)

    def save(self, directory: Path) -> None:
        torch.save(self.classifier.state_dict(), directory / "classifier.pt")  # reusable as classifier_path
        (directory / "classifier.json").write_text(json.dumps({"num_classes": self.num_classes, "report": self.report}))

    @classmethod
    def load(cls, recipe: dict, directory: Path, ctx: RunContext) -> "ClassifierArtifact":
        meta = json.loads((directory / "classifier.json").read_text())
        clf = new_classifier(ClassifierRecipe(**recipe), meta["num_classes"])
        clf.load_state_dict(torch.load(directory / "classifier.pt", map_location="cpu", weights_only=True))
        return cls(clf.to(ctx.device).eval(), meta["num_classes"], meta["report"])

    def fit_report(self) -> dict[str, float]:
        return dict(self.report)
