"""Result types: what a run produced, method by method and dataset by dataset.

The run engine (:mod:`ood_bench.engine.runner`) fills them; reporting
(:mod:`ood_bench.reporting`) and the Python API (:mod:`ood_bench.api`) read them. They sit
between the two so that neither imports the other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ood_bench.data.base import ImageDataset
from ood_bench.methods.artifacts import ArtifactUse
from ood_bench.methods.base import ScoreBatch


@dataclass
class DatasetScores:
    """One dataset's scores under one method and seed."""

    name: str
    role: str          # "id" or "ood"
    group: str         # "id", or the OOD group ("near", "far", "ood", ...)
    dataset: ImageDataset
    batch: ScoreBatch
    seconds: float
    peak_mem_mib: float
    cached: bool
    example: Path | None = None


@dataclass
class MethodResult:
    """Everything one method produced for one seed.

    ``fit_seconds`` is the method's own fit plus the build time of the artifacts it trained or
    loaded; an artifact it got ``shared`` from an earlier method of the run counts there only.
    ``artifacts``: every shared artifact the method used (kind, key, folder, status).
    """

    method: str
    seed: int
    config: dict[str, Any]
    fit_key: str
    fit_seconds: float
    fit_peak_mib: float
    fit_cached: bool
    fit_report: dict[str, float]
    cost: dict[str, float]
    budget: dict[str, float]
    id: DatasetScores
    ood: list[DatasetScores] = field(default_factory=list)
    artifacts: list[ArtifactUse] = field(default_factory=list)

    @property
    def all_scored(self) -> list[DatasetScores]:
        return [self.id, *self.ood]

    @property
    def images_per_second(self) -> float:
        secs = sum(d.seconds for d in self.all_scored)
        n = sum(len(d.batch) for d in self.all_scored)
        return n / secs if secs > 0 else float("nan")

    @property
    def nfe(self) -> float:
        return float(sum(self.cost.values()))

    @property
    def peak_mem_mib(self) -> float:
        vals = [self.fit_peak_mib, *(d.peak_mem_mib for d in self.all_scored)]
        vals = [v for v in vals if v == v]
        return max(vals) if vals else float("nan")

    @property
    def id_accuracy(self) -> float:
        """Accuracy of the method's class predictions on the labelled ID test set (NaN if none)."""
        preds, labels = self.id.batch.predictions, self.id.dataset.labels()
        if preds is None or (labels < 0).any():
            return float("nan")
        return float((preds == labels).mean())
