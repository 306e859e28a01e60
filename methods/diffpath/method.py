"""DiffPath — OOD detection from the DDIM-inversion path of one diffusion model (Heng et al.,
NeurIPS 2024, arXiv 2405.11881).

Per image: resize to ``native_size`` then bilinearly to the base model's ``image_size`` (ID and
OOD blur alike, the paper's §5.3), invert to noise with ``num_steps`` deterministic DDIM steps
(:mod:`ood_bench.methods.diffpath.path`) and sum the path's rate ε and curvature into S1..S6.
Densities fitted on the ID-train statistics: ``nll_6d`` (StandardScaler → GaussianMixture,
components × covariance chosen by 10-fold CV, seeded; canonical), ``nll_1d`` (Gaussian KDE,
bandwidth 5, on √S5), ``nll_rate`` (the same KDE on √S2). ``stat_s1..stat_s6``: the raw
statistics (diagnostics, *not* oriented: higher is not necessarily more OOD). NFE = N per image.

The base model need not be trained on the ID set (the paper's headline uses one CelebA model for
every ID set); ``base_model: id`` is its ablation "base = ID".
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.density import Density, GMMDensity, KDEDensity
from ood_bench.methods.diffpath.config import DiffPathConfig
from ood_bench.methods.diffpath.path import STATISTICS, ddim_grid, path_statistics, statistic_vectors
from ood_bench.methods.posthoc import PostHocDensityMethod
from ood_bench.methods.registry import register_method


@register_method("diffpath")
class DiffPath(PostHocDensityMethod):
    """Rate and curvature of the DDIM-inversion path, scored by densities on ID-train statistics."""

    display_name = "DiffPath"
    config_cls = DiffPathConfig
    needs_labels = False
    version = "1"
    cost_knobs = {"num_steps": (5, 10, 25, 50)}  # refits only the density (the base model is shared)
    config: DiffPathConfig

    def __init__(self, config: DiffPathConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.image_transform = ImageTransform(config.native_size, config.channels)
        self.grid: list[int] = []

    @classmethod
    def with_budget(cls, config: DiffPathConfig, steps: int | None, reps: int | None) -> DiffPathConfig:
        """``--steps`` = the DDIM inversion steps (one network evaluation each)."""
        return dataclasses.replace(config, num_steps=steps) if steps else config

    def budget(self) -> dict[str, float]:
        return {"steps": float(self.config.num_steps), "reps": 1.0}

    def setup_base(self) -> None:
        self.grid = ddim_grid(int(self.scheduler.config.num_train_timesteps), self.config.num_steps)
        self.base_info["diffpath_grid"] = [self.grid[0], self.grid[1] - self.grid[0], self.grid[-1]]

    def statistics(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = self.config.image_size
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        stats = path_statistics(self.eps(), x * 2 - 1, self.alphas_cumprod, self.grid, self.config.clip_x0)
        return {**statistic_vectors(stats), "raw": torch.stack([stats[k] for k in STATISTICS], dim=1)}

    def make_densities(self) -> dict[str, tuple[Density, str]]:
        c = self.config
        return {
            "6d": (GMMDensity(components=c.gmm_components, covariances=c.gmm_covariances, cv_folds=c.cv_folds,
                              shuffle=True, seed=self.ctx.seed, max_iter=c.gmm_max_iter, standardize=True), "6d"),
            "1d": (KDEDensity(bandwidth=c.kde_bandwidth, seed=self.ctx.seed), "1d"),
            "rate": (KDEDensity(bandwidth=c.kde_bandwidth, seed=self.ctx.seed), "rate"),
        }

    def sub_scores(self, feats: dict[str, torch.Tensor], dens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {f"nll_{name}": s for name, s in dens.items()}
        for i, k in enumerate(STATISTICS):
            out[f"stat_{k}"] = feats["raw"][:, i]
        return out

    def cost(self) -> dict[str, float]:
        return {"unet": float(self.config.num_steps)}
