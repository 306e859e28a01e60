"""The method contract: a typed detector with ``fit`` / ``score`` / ``save`` / ``load``.

Every method subclasses :class:`OODMethod`, declares a config dataclass whose defaults are its
paper's settings, and registers itself with ``@register_method("name")``. The runner only uses
this interface. Conventions:

- ``score(data)`` returns a :class:`ScoreBatch`: per-sample scores in dataset order, **higher =
  more OOD** for every sub-score; ``primary`` names the canonical one (the ``score`` option).
- Config fields are tagged by the stage they affect (:func:`fit_option` / :func:`score_option`),
  so changing a scoring option re-scores with the cached model instead of re-training it.
- ``cost()`` gives network evaluations per scored image, by network, for the cost tables.
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from ood_bench.utils.device import compile_backend, compile_enabled, prepare_network, synchronize
from ood_bench.utils.errors import UserError
from ood_bench.utils.progress import log, progress
from ood_bench.data.base import ImageDataset
from ood_bench.data.loading import DeviceBatches
from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.artifacts import Artifact, ArtifactRequest
from ood_bench.methods.pretrained import Weights


# ------------------------------------------------------------------------ config helpers
def fit_option(default: Any, help: str = "") -> Any:
    """A config field that changes the fitted model (part of the model's cache key)."""
    return field(default=default, metadata={"stage": "fit", "help": help})


def score_option(default: Any, help: str = "") -> Any:
    """A config field that only changes scoring (the cached model is reused)."""
    return field(default=default, metadata={"stage": "score", "help": help})


@dataclass
class MethodConfig:
    """Base of method configs. ``score`` names the canonical sub-score."""

    score: str = score_option("", "which sub-score is the method's canonical OOD score")

    def stage_dict(self, stage: str) -> dict[str, Any]:
        """The options of one stage (``"fit"`` or ``"score"``) as a plain dict."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata.get("stage", "fit") == stage}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def require_own_score(self) -> None:
        """For methods that compute a single score: ``score`` must keep the value its config
        class declares (the method cannot output another one). Call from ``__post_init__``."""
        own = type(self).__dataclass_fields__["score"].default
        if self.score != own:
            raise ValueError(f"score must be {own} (the method's only score)")


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


# ------------------------------------------------------------------------ results
@dataclass
class BatchOutput:
    """What a method computes for one batch: named score tensors ``(B,)`` and optional
    class predictions ``(B,)`` (for the classifier accuracy of supervised methods)."""

    scores: dict[str, torch.Tensor]
    predictions: torch.Tensor | None = None


@dataclass
class ScoreBatch:
    """Scores of a whole dataset, in dataset order.

    Attributes:
        scores: sub-score name → float64 array ``(N,)``; higher = more OOD for each.
        primary: the canonical sub-score's name.
        predictions: int64 class predictions ``(N,)`` or ``None``.
    """

    scores: dict[str, np.ndarray]
    primary: str
    predictions: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.primary not in self.scores:
            raise ValueError(f"primary score {self.primary!r} not among {sorted(self.scores)}")
        lens = {len(v) for v in self.scores.values()}
        if len(lens) != 1:
            raise ValueError(f"sub-scores differ in length: {lens}")

    @property
    def canonical(self) -> np.ndarray:
        return self.scores[self.primary]

    def __len__(self) -> int:
        return len(self.canonical)


@dataclass
class RunContext:
    """What the runner hands a method: device, seed, batch size, a folder for checkpoints, and
    ``compile`` (``auto``/``on``/``graphs``/``off``: ``torch.compile`` of the scoring networks,
    ``graphs`` with CUDA graphs; auto = on for CUDA) with the ``compile_backend`` to use (tests use ``aot_eager``, cheap on a CPU)."""

    device: torch.device
    seed: int = 0
    batch_size: int = 256
    workers: int = 2
    work_dir: Path | None = None
    log: Callable[[str], None] = log
    compile: str = "auto"
    compile_backend: str = "inductor"


class Artifacts(dict):
    """``name → Artifact`` of a method; a missing one says how a method gets its artifacts."""

    def __missing__(self, name: str):
        raise UserError(f"artifact {name!r} is missing: the engine hands a method its shared artifacts before "
                        f"fit() and load(); outside a run, fit with ood_bench.fit_method(method, train) or load "
                        f"a fitted one with ood_bench.load_method(folder)")


# ------------------------------------------------------------------------ the base class
class OODMethod(abc.ABC):
    """A detector. Subclasses set ``config_cls`` and implement the abstract methods.

    Class attributes:
        name: registry name (set by ``@register_method``).
        config_cls: the config dataclass.
        needs_labels: ``True`` when ``fit`` needs a labelled ID training set.
        version: bump when a change alters results, so cached models/scores are not reused.
        needs_validation: ``True``: the engine sets :attr:`validation` (the run's ID validation
            hold-out, ``validation`` run option) before ``fit()``.
        default_batch_size: scoring batch size when the run does not set one.
        cost_knobs: score options trading accuracy for network evaluations, each with a default
            ladder of values (for cost–accuracy sweeps).

    Instance attributes filled by the engine: :attr:`artifacts` (name → the shared
    :class:`~ood_bench.methods.artifacts.Artifact` each :meth:`requires` entry asked for, before
    ``fit()`` and ``load()``), :attr:`validation` (see ``needs_validation``).

    Instance attribute ``image_transform``: the :class:`ImageTransform` every image goes
    through, set in ``__init__`` by methods whose images need nothing else (all built-in ones);
    the default :meth:`transform` applies it, and on CUDA the loader splits it (decoding in the
    workers, resizing on the device). A method with another transform overrides :meth:`transform`.
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""  # name in tables and figures ("DLSR"); default: the registry name
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    needs_labels: ClassVar[bool] = False
    version: ClassVar[str] = "1"
    needs_validation: ClassVar[bool] = False
    default_batch_size: ClassVar[int] = 128
    cost_knobs: ClassVar[dict[str, tuple]] = {}  # score options trading accuracy for cost: option -> default ladder

    def __init__(self, config: MethodConfig, ctx: RunContext) -> None:
        self.config = config
        self.ctx = ctx
        self.device = ctx.device
        self.image_transform: ImageTransform | None = None
        self._prepared: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # networks prepare_inference has set up
        self.artifacts: dict[str, Artifact] = Artifacts()
        self.validation: ImageDataset | None = None

    # -- what the method needs ---------------------------------------------------------
    def requires(self) -> dict[str, ArtifactRequest]:
        """The shared artifacts this method needs, by the name it looks them up under in
        :attr:`artifacts` (default: none). Depends on ``self.config`` only."""
        return {}

    # -- to implement -------------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, train: ImageDataset) -> None:
        """Train on the ID training set (labels only if ``needs_labels``)."""

    def transform(self, img) -> torch.Tensor:
        """PIL image → the tensor ``score_batch`` takes: :attr:`image_transform` by default;
        a method whose images need something else overrides this."""
        if self.image_transform is None:
            raise NotImplementedError(f"{type(self).__name__} sets no image_transform and does not override transform()")
        return self.image_transform(img)

    @abc.abstractmethod
    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        """Scores for a batch ``x`` (on ``self.device``); draw randomness from ``generator``."""

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Write the trained state into ``directory`` (which exists and is empty)."""

    @abc.abstractmethod
    def load(self, directory: Path) -> None:
        """Restore the state written by :meth:`save`."""

    @abc.abstractmethod
    def cost(self) -> dict[str, float]:
        """Network evaluations per scored image, by network (e.g. ``{"unet": 96}``)."""

    # -- optional hooks -----------------------------------------------------------------
    @classmethod
    def with_budget(cls, config: MethodConfig, steps: int | None, reps: int | None) -> MethodConfig:
        """``config`` with an equal-compute budget applied (``--steps``, ``--reps``): sampling steps
        per chain and repetitions per image, mapped onto the method's own options. Methods
        without such a knob leave it unchanged (their :meth:`budget` shows what they use)."""
        return config

    def budget(self) -> dict[str, float]:
        """Effective ``{"steps": …, "reps": …}``: network-chain steps and repetitions per image."""
        return {}

    @classmethod
    def required_weights(cls, config: MethodConfig) -> list[Weights]:
        """The downloadable weights ``config`` needs (``ood-bench fetch``, ``--download``):
        known files by name, pretrained models by Hugging Face repo id. Default: none."""
        return []

    @classmethod
    def preflight(cls, config: MethodConfig) -> None:
        """Cheap checks run before any work (weights on disk, files exist); raise a
        :class:`~ood_bench.utils.errors.UserError` naming the problem and the fix."""

    def build_untrained(self, num_classes: int) -> None:
        """Create the networks at their configured sizes with untrained weights, so that
        ``score_batch`` runs (``ood-bench speed``: timings do not depend on the weights)."""
        raise NotImplementedError(f"{self.name} does not support untrained speed measurements")

    def fit_report(self) -> dict[str, float]:
        """Facts about the fitted model worth reporting (final loss, train accuracy, …)."""
        return {}

    def inference_networks(self) -> list[nn.Module]:
        """The networks ``score_batch`` runs, for the GPU fast path (channels_last, compile)."""
        return []

    def save_examples(self, data: ImageDataset, path: Path) -> bool:
        """Write a small picture of what the method does on ``data`` to ``path`` (PNG).
        Returns ``False`` when the method has nothing to show."""
        return False

    def embed(self, data: ImageDataset) -> torch.Tensor:
        """The representation the method's score is computed from, per image of ``data`` in
        order: ``(N, D)`` float32 on the CPU. Methods that have one override this."""
        raise NotImplementedError(f"{self.name} has no embedding")

    def logits(self, data: ImageDataset) -> torch.Tensor:
        """Class logits ``(N, K)`` (float32, CPU, dataset order) of a method built on a classifier."""
        raise NotImplementedError(f"{self.name} has no classifier logits")

    # -- provided -------------------------------------------------------------------------
    def map_batches(self, data: ImageDataset, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn`` over ``data`` in scoring batches (images as :meth:`score` sees them, on the
        device, no gradients), concatenated in dataset order: float32 on the CPU."""
        self.prepare_inference()
        out = []
        batches = DeviceBatches(data, self.loader_transform(), self.ctx.batch_size, self.device, self.ctx.workers)
        with torch.no_grad():
            for x, _, _ in batches:
                out.append(fn(x).float())
        return torch.cat(out).cpu()

    def score(self, data: ImageDataset, desc: str | None = None) -> ScoreBatch:
        """Score every image of ``data`` in order, in batches of ``ctx.batch_size``.

        Randomness comes from a generator seeded by (seed, dataset fingerprint, batch start),
        so a dataset's scores do not depend on what was scored before it, and shards that
        start at batch boundaries reproduce the same scores. Scores stay on the device until
        the last batch (no host synchronisation per batch); one generator is re-seeded per batch.
        """
        compiling = self.prepare_inference()
        fp, offset = data.batch_origin()  # a shard draws as the whole set does
        gen = torch.Generator(device=self.device)
        parts: dict[str, list[torch.Tensor]] = {}
        preds: list[torch.Tensor] = []
        batches = DeviceBatches(data, self.loader_transform(), self.ctx.batch_size, self.device, self.ctx.workers)
        bar = progress(batches, desc or f"{self.name} scoring {data.name}", unit="batch")
        for i, (x, _, idx) in enumerate(bar):
            gen.manual_seed(self.batch_seed(fp, offset + int(idx[0])))
            t0 = time.perf_counter()
            with torch.no_grad():
                out = self.score_batch(x, gen)
            if compiling and i == 0:  # the one-off compilation happens in the first call
                synchronize(self.device)
                self.log(f"first batch (torch.compile included) took {time.perf_counter() - t0:.1f}s")
            for k, v in out.scores.items():
                parts.setdefault(k, []).append(v.detach())
            if out.predictions is not None:
                preds.append(out.predictions.detach())
        scores = {k: torch.cat(v).float().cpu().numpy().astype(np.float64) for k, v in parts.items()}
        pred = torch.cat(preds).cpu().numpy().astype(np.int64) if preds else None
        return ScoreBatch(scores, self.config.score, pred)

    def loader_transform(self) -> Callable:
        """What the loader applies to each image: :attr:`image_transform` itself when it is what
        :meth:`transform` applies (not overridden), so that on CUDA decoding runs in the workers
        and resizing on the device; otherwise :meth:`transform`, per image."""
        if self.image_transform is not None and type(self).transform is OODMethod.transform:
            return self.image_transform
        return self.transform

    def compiles(self) -> bool:
        """Whether ``torch.compile`` applies to this method's networks, in scoring and training
        (``ctx.compile`` on its device: ``auto`` = on CUDA only)."""
        return compile_enabled(self.ctx.compile, self.device)

    def training_compile(self) -> str | None:
        """The ``torch.compile`` backend for this method's training steps; ``None`` = eager."""
        return compile_backend(self.ctx.compile, self.device, self.ctx.compile_backend)

    def prepare_inference(self) -> bool:
        """Apply the fast path to each of :meth:`inference_networks` once (channels_last,
        compile); ``True`` when this call compiled a network (its next call pays the
        compilation). Networks that appear later (a model built after the feature extractor)
        are set up by a later call, so a method may call this in ``fit`` to compute training
        features through the very path its scores take."""
        nets = [n for n in self.inference_networks() if n is not None and n not in self._prepared]
        on = self.compiles()
        for net in nets:
            prepare_network(net, self.device, on, self.ctx.compile_backend, graphs=self.ctx.compile == "graphs")
            self._prepared.add(net)
        return on and bool(nets)

    def batch_seed(self, fingerprint: str, start: int) -> int:
        """The seed of the batch starting at index ``start`` of the set with ``fingerprint``."""
        digest = hashlib.sha1(f"{self.ctx.seed}:{fingerprint}:{start}".encode()).hexdigest()
        return int(digest[:15], 16)

    def batch_generator(self, fingerprint: str, start: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.batch_seed(fingerprint, start))

    def log(self, msg: str) -> None:
        self.ctx.log(f"{self.name}: {msg}")
