"""DDPM-OOD — denoising diffusion models for OOD detection (Graham et al., CVPR-W 2023,
arXiv 2211.07740): reconstruct each image from several noise levels, standardise the
reconstruction distances with ID-validation statistics, average.

The ID DDPM is the project's shared one (artifact ``ddpm-unet``, the same network LMD uses when
the UNet recipes agree), trained on ID train minus the run's validation hold-out; or a pretrained
diffusers UNet (``unet``).

Per image ``x`` (in ``[0, 1]``, model range ``2x − 1``) and start ``s`` (:mod:`.plms`):
``x_s = √ᾱ_s x + √(1−ᾱ_s) ε`` with ε drawn from a generator keyed by (batch seed, start, position
in the batch), so neither the order of the starts nor the other images of the batch change an
image's scores; a deterministic PLMS (or DDIM) chain with a fresh history maps ``x_s`` to level 0;
the reconstruction (to ``[0, 1]``, clamped) is compared with ``x`` by each metric (MSE, LPIPS or
the offline deep-feature distance, from :mod:`ood_bench.methods.lmd.distances`). ``fit`` stores the
mean and ddof-1 standard deviation of every (metric, start) distance over the ID validation
images (:mod:`.zscores`); scores are z-scores against them. Higher = more OOD.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ood_bench.utils.device import autocast
from ood_bench.utils.errors import UserError
from ood_bench.data.base import ImageDataset
from ood_bench.data.loading import DeviceBatches
from ood_bench.methods.artifacts import ArtifactRequest
from ood_bench.methods.base import BatchOutput
from ood_bench.methods.ddpm import DDPMArtifact, ddpm_request
from ood_bench.methods.ddpm_ood.config import DDPMOODConfig
from ood_bench.methods.ddpm_ood.plms import chain_evaluations, reconstruct
from ood_bench.methods.ddpm_ood.zscores import ZStats, key
from ood_bench.methods.lmd.distances import DISTANCE_TYPES, Distance, build_distance, distance_weights, preflight_distances
from ood_bench.methods.registry import register_method
from ood_bench.methods.pixel_diffusion import PixelDiffusionMethod
from ood_bench.methods.pretrained import Weights

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers import UNet2DModel

STATS_FILE = "zstats.json"
# score options the z-statistics depend on (a change re-measures the validation images)
STATS_OPTIONS = ("metrics", "sampler", "inference_steps", "start_skip", "grid_offset", "intensity", "clamp",
                 "feature_size")


def noise_seed(batch_seed: int, start: int, position: int) -> int:
    """The seed of the noise of the image at ``position`` of a batch, for start level ``start``."""
    return int(hashlib.sha1(f"ddpm-ood:{batch_seed}:{start}:{position}".encode()).hexdigest()[:15], 16)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Each image of ``(B, C, H, W)`` stretched to its own min..max (constant images unchanged)."""
    lo = x.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = x.flatten(1).amax(1).view(-1, 1, 1, 1)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), x)


@register_method("ddpm-ood")
class DDPMOOD(PixelDiffusionMethod):
    """Multi-level diffusion reconstruction with validation z-scores. Unsupervised."""

    display_name = "DDPM-OOD"
    example_rows = ("original", "noised (mid start)", "reconstructed")
    config_cls = DDPMOODConfig
    needs_labels = False
    needs_validation = True
    default_batch_size = 128  # 7 chains per batch: larger batches keep the device busy
    version = "1"
    cost_knobs = {"inference_steps": (25, 50, 100, 200), "start_skip": (48, 32, 16, 8)}
    config: DDPMOODConfig

    def __init__(self, config: DDPMOODConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.stats: ZStats | None = None
        self.stats_options: dict | None = None

    # ------------------------------------------------------------------ options
    @classmethod
    def with_budget(cls, config: DDPMOODConfig, steps: int | None, reps: int | None) -> DDPMOODConfig:
        """``steps`` → ``inference_steps``; ``reps`` → the number of starts (``start_skip`` =
        ⌈positive grid times / starts⌉, so at most ``reps`` starts; ``steps`` alone keeps the
        number of starts, i.e. roughly the same start levels)."""
        if not steps and not reps:
            return config
        n = steps or config.inference_steps
        wanted = reps or len(config.starts())
        probe = dataclasses.replace(config, inference_steps=n, start_skip=1, score="z")
        positive = len(probe.starts())
        skip = max(1, math.ceil(positive / wanted))
        return dataclasses.replace(config, inference_steps=n, start_skip=skip)

    def budget(self) -> dict[str, float]:
        return {"steps": float(self.config.inference_steps), "reps": float(len(self.config.starts()))}

    @classmethod
    def required_weights(cls, config: DDPMOODConfig) -> list[Weights]:
        return distance_weights(config.metrics, config)

    @classmethod
    def preflight(cls, config: DDPMOODConfig) -> None:
        preflight_distances(config.metrics, config)

    def requires(self) -> dict[str, ArtifactRequest]:
        return {"ddpm": ddpm_request(self.config)}  # the shared ID DDPM, trained on ID train minus the hold-out

    # ------------------------------------------------------------------ fit
    def fit(self, train_set: ImageDataset) -> None:
        """Take the shared ID DDPM, then the z-statistics on :attr:`validation` only."""
        self.take_ddpm()
        self.stats = self.validation_stats()
        self.stats_options = self.current_stats_options()

    def take_ddpm(self) -> None:
        ddpm: DDPMArtifact = self.artifacts["ddpm"]
        self.unet, self.scheduler = ddpm.unet, ddpm.scheduler

    def current_stats_options(self) -> dict:
        return {k: v for k, v in self.config.to_dict().items() if k in STATS_OPTIONS}

    def validation_stats(self) -> ZStats:
        """Mean and ddof-1 std of every (metric, start) distance over the ID validation images,
        drawn as scoring draws (per-batch seeds of the validation set)."""
        val = self.validation
        if val is None or len(val) < 2:
            raise UserError("ddpm-ood needs an ID validation hold-out of ≥ 2 images for its z-scores; "
                            "set the run option validation (a fraction of ID train, e.g. 0.05)")
        self.log(f"z-statistics from {len(val)} ID validation images ({len(self.config.starts())} starts, "
                 f"metrics {', '.join(self.config.metrics)})")
        if "features" in self.config.metrics:
            self.log("metric `features` is the offline deep-feature distance (Lite0 multi-layer cosine) standing in "
                     "for the paper's LPIPS; its scores are named features@<start>, z_features")
        self.prepare_inference()
        kept = self._first_batch  # the example pictures show the scored set, not the hold-out
        fp, offset = val.batch_origin()
        gen = torch.Generator(device=self.device)
        parts: dict[str, list[torch.Tensor]] = {}
        for x, _, idx in DeviceBatches(val, self.loader_transform(), self.ctx.batch_size, self.device, self.ctx.workers):
            gen.manual_seed(self.batch_seed(fp, offset + int(idx[0])))
            with torch.no_grad():
                for k, v in self.distances(x, gen).items():
                    parts.setdefault(k, []).append(v.detach())
        self._first_batch = kept
        return ZStats.fit({k: torch.cat(v).double().cpu().numpy() for k, v in parts.items()})

    # ------------------------------------------------------------------ score
    @functools.cached_property
    def metric_fns(self) -> dict[str, Distance]:
        return {m: build_distance(m, self.device, self.config.feature_size) for m in self.config.metrics}

    def epsilon(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """ε_θ(x, t) for a batch at one integer level, in ``x``'s dtype."""
        level = torch.full((len(x),), t, device=x.device, dtype=torch.long)  # a tensor: no recompiles per t
        with autocast(x.device):
            return self.unet(x, level).sample.to(x.dtype)

    def noise(self, shape: torch.Size, batch_seed: int, start: int) -> torch.Tensor:
        """``(B, C, H, W)`` standard normal noise, image ``i`` from seed ``(batch_seed, start, i)``."""
        g = torch.Generator(device=self.device)
        rows = []
        for i in range(shape[0]):
            g.manual_seed(noise_seed(batch_seed, start, i))
            rows.append(torch.randn(shape[1:], generator=g, device=self.device))
        return torch.stack(rows)

    def reconstructions(self, x: torch.Tensor, generator: torch.Generator,
                        starts: list[int] | None = None) -> dict[int, torch.Tensor]:
        """Start level → reconstruction ``(B, C, H, W)`` in ``[0, 1]`` (clamped if ``clamp``) of
        images ``x`` (already intensity-scaled, in ``[0, 1]``), for ``starts`` (default: the
        configured ones) in the order given; each start's result is independent of the others."""
        c = self.config
        grid, abar = c.grid(), self.scheduler.alphas_cumprod.tolist()
        x0 = x * 2 - 1
        batch_seed = generator.initial_seed()
        out = {}
        for s in (c.starts() if starts is None else starts):
            xs = abar[s] ** 0.5 * x0 + (1 - abar[s]) ** 0.5 * self.noise(x.shape, batch_seed, s)
            rec = (reconstruct(self.epsilon, xs, s, grid, abar, c.sampler) + 1) / 2
            out[s] = rec.clamp(0, 1) if c.clamp else rec
            if s == c.starts()[len(c.starts()) // 2]:
                self.keep_examples([x, ((xs + 1) / 2).clamp(0, 1), out[s].clamp(0, 1)])
        return out

    def distances(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``"<metric>@<start>"`` → ``(B,)`` distances between ``x`` and its reconstructions."""
        if self.config.intensity == "minmax":
            x = minmax(x)
        recs = self.reconstructions(x, generator)
        starts = list(recs)
        stacked = torch.stack([recs[s] for s in starts], 1).flatten(0, 1)  # (B·S, C, H, W), image-major
        out = {}
        for m, fn in self.metric_fns.items():
            d = fn.pairwise(x, stacked, len(starts))  # (B, S)
            out.update({key(m, s): d[:, j].float() for j, s in enumerate(starts)})
        return out

    def zstats(self) -> ZStats:
        """The statistics for the current score options: the fitted ones, or re-measured on the
        validation images when score options they depend on changed since ``fit``."""
        if self.stats is None or self.stats_options != self.current_stats_options():
            if self.validation is None:
                raise UserError("ddpm-ood: the cached z-statistics were measured with other score options "
                                f"({self.stats_options}); the ID validation hold-out is needed to re-measure them")
            self.log("score options changed since fit: re-measuring the z-statistics on the validation images")
            self.stats, self.stats_options = self.validation_stats(), self.current_stats_options()
        return self.stats

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        c = self.config
        stats = self.zstats()
        d = self.distances(x, generator)
        scores = stats.combined(d, list(c.metrics), c.starts())
        scores.update(d)
        return BatchOutput(scores)

    # ------------------------------------------------------------------ state, cost
    def save(self, directory: Path) -> None:
        """The z-statistics (JSON) and the options they were measured with; the UNet is the
        shared artifact's."""
        import json

        self.stats.save(directory / STATS_FILE)
        (directory / "zstats_options.json").write_text(json.dumps(self.stats_options, indent=1))

    def load(self, directory: Path) -> None:
        import json

        self.take_ddpm()
        self.stats = ZStats.load(directory / STATS_FILE)
        self.stats_options = json.loads((directory / "zstats_options.json").read_text())

    def cost(self) -> dict[str, float]:
        c = self.config
        grid, starts = c.grid(), c.starts()
        out = {"unet": float(sum(chain_evaluations(grid, s, c.sampler) for s in starts))}
        for m in c.metrics:
            n = DISTANCE_TYPES[m].evals_per_image(len(starts))
            if n:
                out[m] = n
        return out

    def build_untrained(self, num_classes: int) -> None:
        """An untrained UNet and unit z-statistics (``ood-bench speed``: timings only)."""
        super().build_untrained(num_classes)
        names = [key(m, s) for m in self.config.metrics for s in self.config.starts()]
        self.stats = ZStats(dict.fromkeys(names, 0.0), dict.fromkeys(names, 1.0), 0)
        self.stats_options = self.current_stats_options()

    def fit_report(self) -> dict[str, float]:
        ddpm = self.artifacts.get("ddpm")
        out = ddpm.fit_report() if ddpm is not None else {}
        return {**out, "validation_images": float(self.stats.count)} if self.stats else out
