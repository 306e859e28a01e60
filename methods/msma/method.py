"""MSMA — Multiscale Score Matching Analysis (Mahmood, Lopez & Lee, ICLR 2021).

Per image ``x`` in [−1, 1]: the norms ``r_i = ‖ε̂(√ᾱ_{t_i}·x, t_i)‖₂`` of the base model's noise
prediction on the *clean* image at L noise levels (:mod:`ood_bench.methods.msma.levels`: the
paper's geometric σ from 1.0 to 0.01 mapped to the nearest DDPM steps, no noise drawn). A density
fitted on the ID-train vectors ``r`` scores test images: ``gmm_nll`` (the paper's GMM, components
by 10-fold CV, seeded; canonical) and ``knn_dist`` (5th-neighbour distance on the raw norms).
Sub-scores ``norm_t<step>`` = each level's norm. Higher = more OOD. NFE = L per image.

Deviation from the paper: its model is an NCSN (VE) trained at exactly these σ; here a VP DDPM
(the suite's ID DDPM or a pretrained diffusers UNet) queried at the nearest steps.
"""
from __future__ import annotations

import dataclasses

import torch

from ood_bench.methods.density import Density, GMMDensity, KNNDensity
from ood_bench.methods.msma.config import DENSITY_SCORES, MSMAConfig
from ood_bench.methods.msma.levels import eps_norms, msma_timesteps, paper_sigmas
from ood_bench.methods.posthoc import PostHocDensityMethod
from ood_bench.methods.registry import register_method
from ood_bench.utils.errors import ConfigError


@register_method("msma")
class MSMA(PostHocDensityMethod):
    """ε-norms at L noise levels of one diffusion model, scored by a density on ID-train norms."""

    display_name = "MSMA"
    config_cls = MSMAConfig
    needs_labels = False
    version = "1"
    cost_knobs = {"num_levels": (2, 5, 10, 20, 50)}  # refits only the density (the base model is shared)
    config: MSMAConfig

    def __init__(self, config: MSMAConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.timesteps: list[int] = []

    @classmethod
    def with_budget(cls, config: MSMAConfig, steps: int | None, reps: int | None) -> MSMAConfig:
        """``--steps`` = the number of noise levels (one network evaluation each)."""
        return dataclasses.replace(config, num_levels=steps, timesteps=()) if steps else config

    def budget(self) -> dict[str, float]:
        return {"steps": float(self.config.levels), "reps": 1.0}

    def setup_base(self) -> None:
        c = self.config
        if c.timesteps:
            self.timesteps = [int(t) for t in c.timesteps]
        else:
            sig = paper_sigmas(c.num_levels, c.sigma_high, c.sigma_low, c.spacing)
            self.timesteps = msma_timesteps(self.alphas_cumprod, sig, c.range_factor, warn=self.log)
        self.base_info["msma_timesteps"] = list(self.timesteps)
        if not self.config.score.startswith("norm_t"):
            return
        if self.config.score not in {f"norm_t{t}" for t in self.timesteps}:
            raise ConfigError(f"msma score {self.config.score!r} names no level; the levels are "
                              f"{', '.join(f'norm_t{t}' for t in self.timesteps)}")

    def statistics(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        return {"norms": eps_norms(self.eps(), x * 2 - 1, self.alphas_cumprod, self.timesteps,
                                   c.input_scaling, c.norm_weighting)}

    def make_densities(self) -> dict[str, tuple[Density, str]]:
        c = self.config
        out: dict[str, tuple[Density, str]] = {}
        if "gmm" in c.densities:
            out["gmm"] = (GMMDensity(components=c.gmm_components, covariances=("full",), cv_folds=c.cv_folds,
                                     shuffle=False, seed=self.ctx.seed, max_iter=100, tol=1e-3, reg_covar=1e-6), "norms")
        if "knn" in c.densities:
            out["knn"] = (KNNDensity(k=c.knn_k, standardize=c.knn_standardize), "norms")
        return out

    def sub_scores(self, feats: dict[str, torch.Tensor], dens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {DENSITY_SCORES[name]: s for name, s in dens.items()}
        for i, t in enumerate(self.timesteps):
            out[f"norm_t{t}"] = feats["norms"][:, i]
        return out

    def cost(self) -> dict[str, float]:
        return {"unet": float(self.config.levels)}
