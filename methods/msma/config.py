"""MSMA options. Defaults are the paper's settings (Mahmood et al., ICLR 2021, arXiv 2010.13132)."""
from __future__ import annotations

from dataclasses import dataclass

from ood_bench.methods.base import fit_option, score_option
from ood_bench.methods.msma.levels import INPUT_SCALINGS, NORM_WEIGHTINGS, SPACINGS
from ood_bench.methods.posthoc import PostHocConfig

MSMA_DENSITIES = ("gmm", "knn")
DENSITY_SCORES = {"gmm": "gmm_nll", "knn": "knn_dist"}


@dataclass
class MSMAConfig(PostHocConfig):
    """The base model and its UNet recipe: :class:`ood_bench.methods.posthoc.PostHocConfig`."""

    score: str = score_option("gmm_nll", "canonical sub-score: gmm_nll | knn_dist | norm_t<step>")
    num_levels: int = fit_option(10, "noise levels L (network evaluations per image)")
    sigma_high: float = fit_option(1.0, "largest noise scale σ_1, in [0, 1] pixel units")
    sigma_low: float = fit_option(0.01, "smallest noise scale σ_L, in [0, 1] pixel units")
    spacing: str = fit_option("geometric", f"spacing of the σ: {' | '.join(SPACINGS)}")
    range_factor: float = fit_option(2.0, "σ on the model's [-1, 1] pixels = range_factor × σ on [0, 1]")
    timesteps: tuple[int, ...] = fit_option((), "explicit DDPM steps, overriding the σ-derived ones")
    input_scaling: str = fit_option("vp_mean", f"network input: vp_mean = √ᾱ_t·x (the VE level's VP point) | raw = x")
    norm_weighting: str = fit_option("eps", f"feature ‖ε̂‖ divided by 1 | s_t | √(1-ᾱ_t): {' | '.join(NORM_WEIGHTINGS)}")
    densities: tuple[str, ...] = fit_option(("gmm", "knn"), f"densities fitted on the norm vectors: {', '.join(MSMA_DENSITIES)}")
    gmm_components: tuple[int, ...] = fit_option((2, 4, 6, 8, 10, 12, 14, 16, 18, 20),
                                                 "GMM component counts searched by cross-validation (one value: fixed)")
    cv_folds: int = fit_option(10, "folds of the GMM grid search (contiguous, unshuffled)")
    knn_k: int = fit_option(5, "k of the kNN distance")
    knn_standardize: bool = fit_option(False, "standardise the norms before kNN (paper: raw)")

    def __post_init__(self) -> None:
        self.check_posthoc_options()
        if self.spacing not in SPACINGS or self.input_scaling not in INPUT_SCALINGS \
                or self.norm_weighting not in NORM_WEIGHTINGS:
            raise ValueError(f"spacing ∈ {SPACINGS}, input_scaling ∈ {INPUT_SCALINGS}, norm_weighting ∈ {NORM_WEIGHTINGS}")
        bad = [d for d in self.densities if d not in MSMA_DENSITIES]
        if bad or not self.densities:
            raise ValueError(f"densities must be among {MSMA_DENSITIES}, got {list(self.densities)}")
        if self.num_levels < 1 or not self.sigma_high > self.sigma_low > 0 or self.range_factor <= 0:
            raise ValueError("need num_levels ≥ 1, sigma_high > sigma_low > 0, range_factor > 0")
        if self.timesteps and any(not 0 <= t < self.diffusion_steps for t in self.timesteps):
            raise ValueError(f"timesteps must lie in [0, {self.diffusion_steps - 1}]")
        allowed = [DENSITY_SCORES[d] for d in self.densities]
        if self.score not in allowed and not self.score.startswith("norm_t"):
            raise ValueError(f"score must be one of {allowed} or norm_t<step>, got {self.score!r}")

    @property
    def levels(self) -> int:
        return len(self.timesteps) or self.num_levels
