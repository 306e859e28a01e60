"""DiffOOD: diffusion denoising for perceptron bias (Liu et al., 2022, arXiv 2211.11255).

A classifier is over-confident on some regions of input space. Noise an image a little and
denoise it with a class-conditional diffusion model guided toward the classifier's prediction:
ID images come back close in the classifier's eyes; OOD images move.

Fit (needs ID labels): two shared artifacts, each trained once per recipe and run — the
ResNet-18 32×32 classifier (artifact ``"classifier"``, :mod:`ood_bench.methods.classifier`, the
one MSP and energy score with when their options agree; SGD
lr 0.1, momentum 0.9 Nesterov, wd 5e-4, cosine, crop + flip; it sees every image resized to
``classifier_size`` = 32 px, its design resolution, whatever the diffusion model's size) and a
class-conditional ``UNet2DModel`` (artifact ``"cond-ddpm-unet"``, :mod:`ood_bench.methods.ddpm`) with ``num_class_embeds = K + 1`` (index K = null class; labels dropped to null
with probability 0.1), linear betas 1e-4..0.02 over 1000 steps, ε-prediction, AdamW, warmup,
clipping at 1, EMA — the released code's 5000 epochs and ε-loss summed over C×H×W by default
(``epochs``, ``loss_reduction``). Either can be loaded instead, by folder or Hugging Face repo id (``classifier_path``, ``unet``).

Score, per image ``x`` in ``[0, 1]`` (:mod:`ood_bench.methods.diffood.guidance`):

1. ``y = argmax`` of the classifier on ``x``;
2. ``r`` noises ``ε_k``; reference copies ``x_ref,k`` = ``x`` noised to t = 0 (ᾱ₀ = 0.9999), not denoised;
3. for each ``t`` (paper: 240): noise to ``t`` with the same ``ε_k``, guided DDIM (stride 20,
   scale 3) to level 0, clamp to ``[0, 1]``;
4. ``score = mean_k ‖v(x_ref,k) − v(x_den,k)‖₁`` with ``v`` the L2-normalised logits
   (``logit``), 512-d features (``feature``) or pixels (``pixel``). Higher = more OOD.

Sub-scores are named ``<space>@<t>``; the classifier's predictions on the ID test set give the
ID accuracy in the results. The reference code scores 1000 random images per set; we score all.
On CUDA the default arithmetic is the fast path (bf16 autocast, channels_last, ``torch.compile``:
:mod:`ood_bench.utils.device`); ``--precision fp32 --compile off`` is the released code's fp32.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ood_bench.utils.errors import ConfigError
from ood_bench.methods.backbones import resolve_weights_file
from ood_bench.methods.registry import register_method
from ood_bench.data.base import ImageDataset
from ood_bench.methods.artifacts import ArtifactRequest
from ood_bench.methods.base import BatchOutput
from ood_bench.methods.classifier import ClassifierArtifact, classifier_request
from ood_bench.methods.classifier.network import CHECKPOINT_PATTERNS, Classifier, classifier_file, new_classifier
from ood_bench.methods.ddpm import ConditionalDDPMArtifact, cond_ddpm_request
from ood_bench.methods.diffood.config import DiffOODConfig
from ood_bench.methods.diffood.guidance import ddim_scheduler, ddim_timesteps, guided_denoise
from ood_bench.methods.pixel_diffusion import PixelDiffusionMethod
from ood_bench.methods.pretrained import Weights, hub_weights
from ood_bench.methods.unet import load_unet, unet_from_config

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers import DDIMScheduler


@register_method("diffood")
class DiffOOD(PixelDiffusionMethod):
    """Guided DDIM denoising toward the predicted class; change of the classifier's view. Needs labels."""

    display_name = "DiffOOD"
    # strides that divide the paper's t = 240 (20 = the paper's, 12 guided steps); r = 4 is the paper's
    cost_knobs = {"stride": (20, 40, 80, 240), "repeats": (1, 2, 4)}
    example_rows = ("original", "noised", "denoised")

    config_cls = DiffOODConfig
    needs_labels = True
    version = "3"  # 3: released-code training defaults (5000 epochs, summed loss)
    config: DiffOODConfig

    def __init__(self, config: DiffOODConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.classifier: Classifier | None = None
        self.num_classes = 0
        self.report: dict[str, float] = {}

    @classmethod
    def with_budget(cls, config: DiffOODConfig, steps: int | None, reps: int | None) -> DiffOODConfig:
        # steps = guided DDIM steps from the first timestep: stride = t / steps
        changes: dict = {"repeats": reps} if reps else {}
        if steps:
            t = config.timesteps[0]
            if t % steps:
                raise ConfigError(f"--steps {steps} does not divide diffood's timestep {t}; use a divisor of {t}")
            changes["stride"] = t // steps
        return dataclasses.replace(config, **changes)

    def budget(self) -> dict[str, float]:
        c = self.config
        return {"steps": float(sum(len(ddim_timesteps(t, c.stride)) for t in c.timesteps)), "reps": float(c.repeats)}

    @classmethod
    def required_weights(cls, config: DiffOODConfig) -> list[Weights]:
        return [*hub_weights(config.unet), *hub_weights(config.classifier_path, CHECKPOINT_PATTERNS)]

    @classmethod
    def preflight(cls, config: DiffOODConfig) -> None:
        if config.classifier_path:
            classifier_file(config.classifier_path)
        elif config.classifier_backbone:
            resolve_weights_file(config.classifier_backbone, config.classifier_weights)
        if config.unet:
            load_unet(config.unet, config.image_size, config.channels)

    # ------------------------------------------------------------------ fit
    def requires(self) -> dict[str, ArtifactRequest]:
        c = self.config
        return {"classifier": classifier_request(c), "unet": cond_ddpm_request(c, c.label_dropout)}

    def fit(self, train_set: ImageDataset) -> None:
        self.use_artifacts()

    def use_artifacts(self) -> None:
        """Take the shared classifier and class-conditional UNet (the engine filled ``self.artifacts``)."""
        clf: ClassifierArtifact = self.artifacts["classifier"]
        unet: ConditionalDDPMArtifact = self.artifacts["unet"]
        if unet.num_classes != clf.num_classes:
            raise ConfigError(f"diffood: the classifier has {clf.num_classes} classes, the UNet {unet.num_classes}")
        self.classifier, self.num_classes = clf.classifier, clf.num_classes
        self.unet, self.scheduler = unet.unet, unet.scheduler
        self.report = {**clf.fit_report(), **unet.fit_report()}

    def build_untrained(self, num_classes: int) -> None:
        c = self.config
        self.num_classes = num_classes
        self.classifier = new_classifier(c, num_classes).to(self.device).eval()
        self.unet = unet_from_config(c, num_classes + 1).to(self.device).eval()

    def inference_networks(self) -> list[torch.nn.Module]:
        return [self.classifier, self.unet]

    # ------------------------------------------------------------------ score
    def logits(self, data: ImageDataset) -> torch.Tensor:
        """The classifier's logits ``(N, K)`` of ``data``."""
        return self.map_batches(data, lambda x: self.classifier(x)[0])

    def embed(self, data: ImageDataset) -> torch.Tensor:
        """The classifier's penultimate features ``(N, 8·width)`` of ``data``."""
        return self.map_batches(data, lambda x: self.classifier(x)[1])

    def _views(self, x01: torch.Tensor) -> dict[str, torch.Tensor]:
        """L2-normalised representations of images in [0, 1], by space."""
        logits, feats = self.classifier(x01)
        raw = {"logit": logits.float(), "feature": feats.float(), "pixel": x01.flatten(1)}
        return {s: F.normalize(raw[s], dim=1, eps=1e-10) for s in self.config.spaces}

    @functools.cached_property
    def ddim(self) -> DDIMScheduler:
        """The guided DDIM sampler at ``stride``, built on the first batch (after ``fit``/``load``,
        which may bring a pretrained UNet's schedule) and reused: its step is stateless."""
        return ddim_scheduler(self.scheduler, self.config.stride)

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        c = self.config
        b, r = len(x), c.repeats
        y = self.classifier(x)[0].argmax(1)
        x0 = (x * 2 - 1).repeat_interleave(r, 0)
        eps = torch.randn(x0.shape, device=x.device, generator=generator)
        labels = y.repeat_interleave(r, 0)

        def noised(t: int) -> torch.Tensor:
            return self.scheduler.add_noise(x0, eps, torch.full((len(x0),), t, device=x.device, dtype=torch.long))

        ref = self._views(((noised(0) + 1) / 2).clamp(0, 1))
        scores = {}
        for t in c.timesteps:
            xt = noised(t)
            den = guided_denoise(self.unet, self.scheduler, xt, t, c.stride, labels, self.num_classes, c.guidance,
                                 prepared=self.ddim)
            den01 = ((den + 1) / 2).clamp(0, 1)
            views = self._views(den01)
            for s in c.spaces:
                scores[f"{s}@{t}"] = (ref[s] - views[s]).abs().sum(1).view(b, r).mean(1)
            if t == c.timesteps[0]:  # original, noised to t, denoised (first repeat)
                self.keep_examples([x, ((xt[::r] + 1) / 2).clamp(0, 1), den01[::r]])
        return BatchOutput(scores, predictions=y)

    # ------------------------------------------------------------------ state, cost
    def save(self, directory: Path) -> None:
        """Nothing of its own: the classifier and the UNet are shared artifacts (their folders hold
        ``classifier.pt``, reusable as ``classifier_path``, and diffusers ``unet/``, as ``unet``)."""

    def load(self, directory: Path) -> None:
        self.use_artifacts()

    def cost(self) -> dict[str, float]:
        c = self.config
        steps = sum(len(ddim_timesteps(t, c.stride)) for t in c.timesteps)
        return {"unet": float(c.repeats * steps * 2),  # conditional + null pass per step
                "classifier": float(1 + c.repeats * (1 + len(c.timesteps)))}

    def fit_report(self) -> dict[str, float]:
        return dict(self.report)
