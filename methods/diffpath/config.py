"""DiffPath options. Defaults are the paper's settings (Heng et al., NeurIPS 2024, arXiv 2405.11881)."""
from __future__ import annotations

from dataclasses import dataclass

from ood_bench.methods.base import fit_option, score_option
from ood_bench.methods.density import COVARIANCE_TYPES
from ood_bench.methods.diffpath.path import STATISTICS, ddim_grid
from ood_bench.methods.posthoc import ID_BASE, PostHocConfig
from ood_bench.utils.errors import ConfigError

DIFFPATH_SCORES = ("nll_6d", "nll_1d", "nll_rate") + tuple(f"stat_{s}" for s in STATISTICS)


@dataclass
class DiffPathConfig(PostHocConfig):
    """The base model and its UNet recipe: :class:`ood_bench.methods.posthoc.PostHocConfig`."""

    score: str = score_option("nll_6d", f"canonical sub-score (the variant): {' | '.join(DIFFPATH_SCORES)}")
    num_steps: int = fit_option(10, "DDIM inversion steps N (network evaluations per image)")
    clip_x0: bool = fit_option(True, "clamp each step's x0 estimate to [-1, 1] and recompute ε (reference code)")
    native_size: int = fit_option(32, "every image is first resized to this side, then bilinearly to image_size (paper §5.3)")
    kde_bandwidth: float = fit_option(5.0, "Gaussian KDE bandwidth of the 1-D statistics (raw units; 0 = cross-validated)")
    gmm_components: tuple[int, ...] = fit_option((50, 100), "GMM component counts searched for the 6-D statistic")
    gmm_covariances: tuple[str, ...] = fit_option(COVARIANCE_TYPES, "GMM covariance types searched")
    gmm_max_iter: int = fit_option(200, "GaussianMixture max_iter")
    cv_folds: int = fit_option(10, "folds of the GMM grid search (shuffled, seeded)")

    def __post_init__(self) -> None:
        self.check_posthoc_options()
        if self.score not in DIFFPATH_SCORES:
            raise ValueError(f"score must be one of {DIFFPATH_SCORES}, got {self.score!r}")
        if self.num_steps < 2:
            raise ValueError("num_steps must be ≥ 2 (the curvature differences consecutive steps)")
        if self.base_model == ID_BASE and not self.unet:  # the schedule is this config's: check the grid
            try:  # now, not after the ID DDPM has trained
                ddim_grid(self.diffusion_steps, self.num_steps)
            except ConfigError as e:
                raise ValueError(str(e)) from None
        if self.native_size < 1 or self.kde_bandwidth < 0:
            raise ValueError("native_size must be ≥ 1 and kde_bandwidth ≥ 0")
        bad = [c for c in self.gmm_covariances if c not in COVARIANCE_TYPES]
        if bad or not self.gmm_covariances or not self.gmm_components or min(self.gmm_components) < 1:
            raise ValueError(f"gmm_covariances must be among {COVARIANCE_TYPES} and gmm_components ≥ 1")
