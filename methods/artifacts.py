"""Shared artifacts: a trained network or an extracted feature set that several methods use.

A method names what it needs in :meth:`~ood_bench.methods.base.OODMethod.requires` as
``{name: ArtifactRequest(kind, recipe, data)}``; the engine (:mod:`ood_bench.engine.artifacts`)
keys every request by (kind, version, recipe, training-data fingerprint, seed, numerics), builds
it once (file lock, healing, atomic save under the cache's ``artifacts/<kind>/<key>/``), loads it
when cached, and hands the *same* object to every method of the run that requests the same key,
through ``method.artifacts[name]`` — before ``fit()`` and before ``load()``.

An artifact kind is an :class:`Artifact` subclass registered with ``@register_artifact("kind")``:
``build`` trains/extracts it from a dataset, ``save``/``load`` keep it in a folder (safetensors,
JSON, diffusers folders: never pickle). ``version`` is bumped when a change alters what
``build`` produces, so cached artifacts of the old code are not reused.
"""
from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from ood_bench.utils.registry import Registry
from ood_bench.data.base import ImageDataset

if TYPE_CHECKING:  # RunContext lives in methods/base.py, which imports this module
    from ood_bench.methods.base import RunContext

# What an artifact is trained on: the run's whole ID training split, or that split minus the
# run's validation hold-out (``validation`` run option; see ood_bench.data.base.holdout_split).
ARTIFACT_DATA = ("train", "fit")
# How a method got an artifact: built here, loaded from the cache, or handed over from an
# earlier method of the same run (the very same object; or the same cached artifact, where that
# method's scores were all cached and it loaded nothing): its build time counts there.
ARTIFACT_STATUS = ("trained", "loaded", "shared")


def _plain_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-plain copy of ``recipe`` (tuples → lists); raises ``TypeError`` for other values."""
    out = json.loads(json.dumps(dict(recipe), sort_keys=True))
    return out


@dataclass(frozen=True, eq=False)
class ArtifactRequest:
    """What a method needs: an artifact of ``kind`` built by ``recipe`` on ``data``.

    Attributes:
        kind: a registered artifact kind (``"ddpm-unet"``, ``"classifier"``, ``"features"``, ...).
        recipe: JSON-plain options that determine it (architecture + training recipe). Two
            requests with equal kind, recipe and data get one artifact.
        data: ``"train"`` (the run's ID training split) or ``"fit"`` (ID train minus the run's
            validation hold-out).
    """

    kind: str
    recipe: Mapping[str, Any]
    data: str = "train"

    def __post_init__(self) -> None:
        if self.data not in ARTIFACT_DATA:
            raise ValueError(f"artifact data must be one of {ARTIFACT_DATA}, got {self.data!r}")
        try:
            plain = _plain_recipe(self.recipe)
        except (TypeError, ValueError) as e:
            raise ValueError(f"the recipe of a {self.kind!r} artifact must be JSON-plain ({e})") from None
        object.__setattr__(self, "recipe", plain)

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "recipe": self.recipe, "data": self.data}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArtifactRequest) and self.identity() == other.identity()

    def __hash__(self) -> int:
        return hash(json.dumps(self.identity(), sort_keys=True))


class Artifact(abc.ABC):
    """A built artifact (a network, a feature set). Subclasses are registered with
    ``@register_artifact("kind")`` and implement ``build``/``save``/``load``."""

    kind: ClassVar[str] = ""
    version: ClassVar[str] = "1"  # bump when its results change

    @classmethod
    @abc.abstractmethod
    def build(cls, recipe: dict, train: ImageDataset, ctx: "RunContext") -> "Artifact":
        """Train / extract the artifact from ``train`` (``ctx``: device, seed, work folder for
        resumable checkpoints). Called at the training thread count, with seeded global RNGs."""

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Write the artifact into ``directory`` (which exists and is empty)."""

    @classmethod
    @abc.abstractmethod
    def load(cls, recipe: dict, directory: Path, ctx: "RunContext") -> "Artifact":
        """The artifact :meth:`save` wrote into ``directory``, on ``ctx.device``."""

    def fit_report(self) -> dict[str, float]:
        """Facts about the built artifact worth reporting (final loss, accuracy, ...)."""
        return {}

    @classmethod
    def training_throughput(cls, recipe: dict, device: Any, steps: tuple[int, int], compile: str | None,
                            num_classes: int, batch_size: int | None = None) -> float | None:
        """Training images per second of a network of ``recipe`` on random data (``ood-bench
        speed --train``): two trainings of ``steps`` steps, at ``batch_size`` (default: the
        recipe's). ``None``: this kind trains nothing worth timing (or is pretrained)."""
        return None


ARTIFACTS: Registry[type[Artifact]] = Registry("artifact kind")


def register_artifact(kind: str) -> Callable[[type[Artifact]], type[Artifact]]:
    """Class decorator: register an :class:`Artifact` subclass as ``kind``."""

    def deco(cls: type[Artifact]) -> type[Artifact]:
        cls.kind = kind
        return ARTIFACTS.register(kind)(cls)

    return deco


@dataclass
class ArtifactUse:
    """One artifact a method used in a run (recorded in ``MethodResult`` and the manifest).

    Attributes:
        name: the method's name for it (a key of ``requires()``).
        kind, key: its kind and cache key; ``folder``: where it is saved (``None`` without a cache).
        status: ``trained`` (built in this run), ``loaded`` (from the cache), ``shared`` (what an earlier
            method of this run got: the same object, or the same cached artifact). A method whose
            scores are all cached loads no network: its artifacts are ``loaded`` in name only.
        seconds: the time its build took (when it was built, in this run or an earlier one).
        report: its :meth:`Artifact.fit_report`.
        owner: the method of this run that got it first (trained or loaded it).
    """

    name: str
    kind: str
    key: str
    folder: str | None
    status: str
    seconds: float
    peak_mem_mib: float = float("nan")
    report: dict[str, float] = field(default_factory=dict)
    owner: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "key": self.key, "folder": self.folder,
                "status": self.status, "seconds": self.seconds, "owner": self.owner, "report": self.report}
