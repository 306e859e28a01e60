"""LMD — Lift, Map, Detect (Liu et al., ICML 2023): OOD detection by diffusion inpainting.

Fit: nothing of its own. LMD uses the run's shared ID DDPM (artifact ``"ddpm-unet"``,
:mod:`ood_bench.methods.ddpm`): a diffusers ``UNet2DModel`` + ``DDPMScheduler`` (linear betas
1e-4..0.02, T = 1000, ε-prediction, ``clip_sample=False``) trained on the ID training images in
``[-1, 1]`` — AdamW (wd 0, i.e. Adam), lr 2e-4, warmup, gradient clipping 1, EMA 0.9999,
horizontal flips — or a pretrained diffusers UNet by name (``unet``: a folder or a hub repo id
such as ``google/ddpm-cifar10-32``, Ho et al.'s 35.7 M CIFAR-10 DDPM, the paper-size model).
Like every user of the shared DDPM it trains on the ID train split minus the run's validation
hold-out (``--validation``, default 5 %): a recipe change from version 1, which used all of it.

Score, per image: ``reps`` masks (:mod:`ood_bench.methods.lmd.masks`, default alternating checkerboards),
all repetitions inpainted as one batch (:mod:`ood_bench.methods.lmd.inpaint`), a distance between the image
and each inpainting (:mod:`ood_bench.methods.lmd.distances`), **median** over repetitions. Higher = more OOD.
Every distance in ``distances`` is a sub-score (the inpaintings are shared); ``score`` picks the
canonical one.

Deviation from the paper: the original model is a score-SDE with the sub-VP SDE (β 0.1..20,
N = 1000, Euler–Maruyama); here the VP discretisation of diffusers' DDPM (an analogue, not a
replica). The original runs repetitions one after another; here they are batched. Its sampler
returns the unclamped mean of the last step (the inpainted region still slightly noisy); ours
returns the level-0 image clamped to [0, 1]. Its MNIST/KMNIST configs train with batch 4 for
1.3 M steps: ``configs/mnist.yaml`` and ``kmnist.yaml`` do the same (batch 4, 88 epochs).
On CUDA the default arithmetic is the fast path (bf16 autocast, channels_last, ``torch.compile``:
:mod:`ood_bench.utils.device`); ``--precision fp32 --compile off`` is the released code's fp32.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ood_bench.methods.registry import register_method
from ood_bench.data.base import ImageDataset
from ood_bench.methods.artifacts import ArtifactRequest
from ood_bench.methods.base import BatchOutput
from ood_bench.methods.ddpm import DDPMArtifact, ddpm_request
from ood_bench.methods.lmd.config import LMDConfig
from ood_bench.methods.lmd.distances import DISTANCE_TYPES, Distance, build_distance, distance_weights, preflight_distances
from ood_bench.methods.lmd.inpaint import inpaint, sampler
from ood_bench.methods.lmd.masks import make_masks
from ood_bench.methods.pixel_diffusion import PixelDiffusionMethod
from ood_bench.methods.pretrained import Weights

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers import DDPMScheduler


@register_method("lmd")
class LMD(PixelDiffusionMethod):
    """Diffusion inpainting of checkerboard-masked images; distance to the original. Unsupervised."""

    display_name = "LMD"
    # the paper's 1000 steps x 10 repetitions is the most expensive point of the default ladder
    cost_knobs = {"steps": (10, 20, 50, 100, 250, 1000), "reps": (2, 4, 10)}
    example_rows = ("original", "masked", "inpainted")

    config_cls = LMDConfig
    needs_labels = False
    version = "2"  # 2: the UNet is the shared ID DDPM, trained without the validation hold-out
    config: LMDConfig
    cost_knobs = {"steps": (10, 20, 50, 100, 250, 1000), "reps": (2, 4, 10)}

    def __init__(self, config: LMDConfig, ctx) -> None:
        super().__init__(config, ctx)
        self._distances: dict[str, Distance] | None = None

    def requires(self) -> dict[str, ArtifactRequest]:
        return {"ddpm": ddpm_request(self.config)}

    @classmethod
    def with_budget(cls, config: LMDConfig, steps: int | None, reps: int | None) -> LMDConfig:
        return dataclasses.replace(config, **({"steps": steps} if steps else {}), **({"reps": reps} if reps else {}))

    def budget(self) -> dict[str, float]:
        return {"steps": float(self.config.steps), "reps": float(self.config.reps)}

    @classmethod
    def required_weights(cls, config: LMDConfig) -> list[Weights]:
        return distance_weights(config.distances, config)

    @classmethod
    def preflight(cls, config: LMDConfig) -> None:
        preflight_distances(config.distances, config)

    # ------------------------------------------------------------------ fit
    def fit(self, train_set: ImageDataset) -> None:
        self.use_ddpm()

    def use_ddpm(self) -> None:
        """Take the shared ID DDPM's UNet and schedule (the engine filled ``self.artifacts``)."""
        ddpm: DDPMArtifact = self.artifacts["ddpm"]
        self.unet, self.scheduler = ddpm.unet, ddpm.scheduler

    # ------------------------------------------------------------------ score
    def distances(self) -> dict[str, Distance]:
        if self._distances is None:
            self._distances = {d: build_distance(d, self.device, self.config.feature_size)
                               for d in self.config.distances}
        return self._distances

    @functools.cached_property
    def inpaint_sampler(self) -> DDPMScheduler:
        """The DDPM sampler at ``steps``, built on the first batch (after ``fit``/``load``, which
        may bring a pretrained UNet's schedule) and reused: its step is stateless."""
        return sampler(self.scheduler, self.config.steps)

    def lift_and_map(self, x: torch.Tensor, reps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks and inpaintings of ``x`` ``(B, C, H, W)`` in [0, 1]: ``(B·reps, 1, H, W)`` masks,
        ``(B·reps, C, H, W)`` inpaintings in [0, 1], image-major."""
        c = self.config
        masks = make_masks(c.mask, len(x), reps, c.image_size, c.mask_blocks, generator, patch=c.random_patch)
        x0 = (x * 2 - 1).repeat_interleave(reps, 0)
        rec = inpaint(self.unet, self.scheduler, x0, masks, c.steps, generator, prepared=self.inpaint_sampler)
        return masks, ((rec + 1) / 2).clamp(0, 1)

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        reps = self.config.reps
        masks, rec = self.lift_and_map(x, reps, generator)
        m0 = masks[::reps].expand(-1, x.shape[1], -1, -1)  # first repetition of each image
        self.keep_examples([x, x * m0 + 0.5 * (1 - m0), rec[::reps]])  # original, masked (grey), inpainted
        scores = {name: torch.quantile(d.pairwise(x, rec, reps), 0.5, dim=1)  # median, as np.median
                  for name, d in self.distances().items()}
        return BatchOutput(scores)

    # ------------------------------------------------------------------ state, cost
    def save(self, directory: Path) -> None:
        """Nothing of its own: the UNet is the shared artifact (its folder, with diffusers
        ``unet/`` and ``scheduler/``, is reusable as ``lmd.unet=<folder>``)."""

    def load(self, directory: Path) -> None:
        self.use_ddpm()

    def cost(self) -> dict[str, float]:
        c = self.config
        out = {"unet": float(c.reps * c.steps)}
        for name in c.distances:
            n = DISTANCE_TYPES[name].evals_per_image(c.reps)
            if n:
                out[name] = n
        return out

    def fit_report(self) -> dict[str, float]:
        ddpm = self.artifacts.get("ddpm")
        return ddpm.fit_report() if ddpm is not None else {}
