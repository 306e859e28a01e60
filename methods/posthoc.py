"""Detectors that describe an image by a few statistics of a diffusion model's noise prediction
and score it under a density fitted on the ID training images (MSMA, DiffPath).

The diffusion model is the *base model*, which need not be trained on the ID set:

- ``base_model: id`` — the suite's shared ID DDPM (the UNet options of
  :class:`~ood_bench.methods.unet.PixelDiffusionConfig`; LMD's model when the recipes match);
- ``base_model: <folder or hub id>`` — any diffusers ``UNet2DModel`` (``save_pretrained`` folder,
  a saved pipeline, or e.g. ``google/ddpm-cifar10-32``), with the noise schedule saved beside it
  (else the config's). Learned-variance models: the first C output channels are ε.

``fit`` trains no network of its own (the engine builds, caches and shares the ID DDPM artifact): it computes the statistics of (a seeded subset of) the ID
training images and fits the densities (:mod:`ood_bench.methods.density`). Only ``alphas_cumprod``
of the schedule is used.
"""
from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from ood_bench.data.base import ImageDataset
from ood_bench.data.loading import DeviceBatches
from ood_bench.methods.artifacts import ArtifactRequest
from ood_bench.methods.base import BatchOutput, fit_option
from ood_bench.methods.density import Density, load_densities, save_densities
from ood_bench.methods.pretrained import load_pretrained_scheduler
from ood_bench.methods.ddpm import DDPMArtifact, ddpm_request
from ood_bench.methods.pixel_diffusion import PixelDiffusionMethod
from ood_bench.methods.unet import PixelDiffusionConfig, load_unet
from ood_bench.utils.device import autocast
from ood_bench.utils.errors import ConfigError

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers import DDPMScheduler, UNet2DModel

ID_BASE = "id"

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``eps(x_in (B, C, H, W), t (B,) int64) → ε̂ (B, C, H, W)``: a model's noise prediction."""


@dataclass
class PostHocConfig(PixelDiffusionConfig):
    """The UNet recipe (:class:`PixelDiffusionConfig`, used when ``base_model`` is ``id``), the
    base model, and how many ID training images the density sees."""

    base_model: str = fit_option(ID_BASE, "the diffusion model: `id` = the shared ID DDPM (the UNet options above), or "
                                          "a pretrained diffusers UNet folder / hub id (e.g. google/ddpm-cifar10-32)")
    max_fit_images: int = fit_option(0, "ID training images whose statistics fit the density: 0 = all, else a seeded subset")

    def check_posthoc_options(self) -> None:
        self.check_pixel_options()
        if not self.base_model:
            raise ValueError("base_model must be `id` or a diffusers UNet folder / hub id")
        if self.base_model != ID_BASE and self.unet:
            raise ValueError(f"set either base_model ({self.base_model!r}) or unet ({self.unet!r}), not both: "
                             f"unet names a pretrained ID DDPM (base_model: id)")
        if self.max_fit_images < 0:
            raise ValueError("max_fit_images must be ≥ 0 (0 = all)")


class PostHocDensityMethod(PixelDiffusionMethod):
    """Statistics of the base model's ε on each image + densities fitted on ID-train statistics.

    Subclasses implement :meth:`statistics` (named feature groups of a batch), :meth:`make_densities`
    (density name → (density, feature group)) and :meth:`sub_scores` (all named ``(B,)`` scores
    from the features and density scores)."""

    config: PostHocConfig
    default_batch_size = 256  # one image = one chain of ≤ 50 small UNet calls (no repetitions)
    DENSITY_STEM = "density"

    def __init__(self, config: PostHocConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.densities: dict[str, Density] = {}
        self.density_inputs: dict[str, str] = {}
        self.fit_images = 0
        self.base_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ to implement
    @abc.abstractmethod
    def statistics(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature groups of ``x (B, C, S, S)`` in [0, 1] as loaded: name → ``(B, D)`` float64."""

    @abc.abstractmethod
    def make_densities(self) -> dict[str, tuple[Density, str]]:
        """Unfitted densities by name, each with the feature group it is fitted on."""

    @abc.abstractmethod
    def sub_scores(self, feats: dict[str, torch.Tensor], dens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """All sub-scores ``(B,)`` from the features and each density's score (higher = more OOD)."""

    def setup_base(self) -> None:
        """Called once the base model and schedule are in place (e.g. derive timesteps)."""

    # ------------------------------------------------------------------ the base model
    def eps(self) -> EpsFn:
        """The base model as ``ε(x (B, C, H, W), t (B,)) → (B, C, H, W)`` float32."""
        c = self.config.channels

        def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with autocast(x.device):
                return self.unet(x.float(), t).sample[:, :c].float().to(x.dtype)
        return f

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod.double()

    def _use_base(self, unet: UNet2DModel, scheduler: DDPMScheduler, info: dict[str, Any]) -> None:
        self.unet = unet.to(self.device).eval()
        self.scheduler = scheduler
        self.base_info = {**info, "timesteps": int(scheduler.config.num_train_timesteps),
                          "sample_size": int(unet.config.sample_size or self.config.image_size)}
        self.setup_base()

    def _pretrained_base(self) -> None:
        c = self.config
        unet = load_unet(c.base_model, c.image_size, c.channels)
        sched = load_pretrained_scheduler(c.base_model) or c.scheduler()
        self.log(f"base model: the pretrained UNet {c.base_model}")
        self._use_base(unet, sched, {"base_model": c.base_model})

    @classmethod
    def preflight(cls, config: PostHocConfig) -> None:
        if config.base_model != ID_BASE:  # fetches a hub repo now, so a missing model fails before any work
            load_unet(config.base_model, config.image_size, config.channels)
        elif config.unet:
            load_unet(config.unet, config.image_size, config.channels)

    def build_untrained(self, num_classes: int) -> None:
        super().build_untrained(num_classes)
        self.base_info = {"base_model": "untrained"}
        self.setup_base()

    def save_examples(self, data: ImageDataset, path: Path) -> bool:
        return False  # statistics, no pictures

    # ------------------------------------------------------------------ fit
    def requires(self) -> dict[str, ArtifactRequest]:
        """The shared ID DDPM when ``base_model`` is ``id``; nothing for a pretrained folder."""
        return {"ddpm": ddpm_request(self.config)} if self.config.base_model == ID_BASE else {}

    def attach_base(self) -> None:
        """Put the base model in place: the shared ID DDPM (the engine filled ``self.artifacts``)
        or the pretrained folder / hub id ``base_model``."""
        c = self.config
        if c.base_model != ID_BASE:
            self._pretrained_base()
            return
        ddpm: DDPMArtifact = self.artifacts["ddpm"]
        self._use_base(ddpm.unet, ddpm.scheduler, {"base_model": f"id: {c.unet}" if c.unet else "id",
                                                   **{f"ddpm_{k}": v for k, v in ddpm.fit_report().items()}})

    def fit(self, train_set: ImageDataset) -> None:
        """Statistics of the ID training images (all, or a seeded ``max_fit_images`` subset)
        under the base model; fit every density on them."""
        c = self.config
        self.attach_base()
        fit_set = train_set.take(c.max_fit_images or None, seed=self.ctx.seed)
        self.fit_images = len(fit_set)
        feats = self.dataset_statistics(fit_set)
        made = self.make_densities()
        self.densities = {name: d for name, (d, _) in made.items()}
        self.density_inputs = {name: group for name, (_, group) in made.items()}
        for name, d in self.densities.items():
            self.log(f"fitting the {d.kind} density `{name}` on {self.fit_images} × {feats[self.density_inputs[name]].shape[1]} statistics")
            d.fit(feats[self.density_inputs[name]])

    def dataset_statistics(self, data: ImageDataset) -> dict[str, np.ndarray]:
        """:meth:`statistics` of every image of ``data``: name → ``(N, D)`` float64."""
        parts: dict[str, list[np.ndarray]] = {}
        self.prepare_inference()
        batches = DeviceBatches(data, self.loader_transform(), self.ctx.batch_size, self.device, self.ctx.workers)
        with torch.no_grad():
            for x, _, _ in batches:
                for k, v in self.statistics(x).items():
                    parts.setdefault(k, []).append(v.cpu().numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}

    # ------------------------------------------------------------------ score
    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        feats = self.statistics(x)
        dens = {name: torch.from_numpy(d.score(feats[self.density_inputs[name]].cpu().numpy())).to(x.device)
                for name, d in self.densities.items()}
        return BatchOutput(self.sub_scores(feats, dens))

    # ------------------------------------------------------------------ state
    def save(self, directory: Path) -> None:
        """The densities (arrays + JSON) and which statistics each takes; the base model is the
        shared artifact or the named folder, not copied."""
        save_densities(self.densities, directory, self.DENSITY_STEM)
        meta = {"density_inputs": self.density_inputs, "fit_images": self.fit_images, "base": self.base_info}
        (directory / "posthoc.json").write_text(json.dumps(meta, indent=1))

    def load(self, directory: Path) -> None:
        meta = json.loads((directory / "posthoc.json").read_text())
        self.attach_base()
        self.densities = load_densities(directory, self.DENSITY_STEM)
        self.density_inputs = meta["density_inputs"]
        self.fit_images = int(meta["fit_images"])
        if set(self.densities) != set(self.density_inputs):
            raise ConfigError(f"{directory}: the saved densities {sorted(self.densities)} do not match "
                              f"{sorted(self.density_inputs)}; delete the cached model to refit")

    def fit_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.base_info, "fit_images": self.fit_images}
        for name, d in self.densities.items():
            for k, v in d.report().items():
                if k != "cv":
                    out[f"{name}_{k}"] = v
        return out
