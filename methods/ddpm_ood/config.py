"""DDPM-OOD options. Defaults are the paper's protocol (Graham et al., CVPR-W 2023, arXiv
2211.07740; the paper-era code, GitHub ``marksgraham/ddpm-ood`` at 4966238)."""
from __future__ import annotations

from dataclasses import dataclass

from ood_bench.methods.base import score_option
from ood_bench.methods.ddpm_ood.plms import SAMPLERS, start_times, time_grid
from ood_bench.methods.unet import PixelDiffusionConfig

METRICS = ("mse", "lpips", "features")
INTENSITIES = ("fixed", "minmax")


@dataclass
class DDPMOODConfig(PixelDiffusionConfig):
    """The ID DDPM and its training: :class:`ood_bench.methods.unet.PixelDiffusionConfig` (the
    recipe LMD uses; same options, same network). The rest are scoring options.

    Sub-scores (higher = more OOD): ``z`` (canonical: the paper's mean over starts of the sum over
    metrics of the z-scores), ``z_<metric>`` (mean over starts of one metric's z-scores) and the
    raw distances ``<metric>@<start>``.
    """

    score: str = score_option("z", "canonical sub-score: z | z_<metric> | <metric>@<start>")
    metrics: tuple[str, ...] = score_option(
        ("mse", "lpips"), "reconstruction distances: [mse, lpips] (paper), [mse] (the later code's), "
                          "features = the offline deep-feature distance in place of lpips (on request only)")
    sampler: str = score_option("plms", f"reconstruction sampler: {' | '.join(SAMPLERS)}")
    inference_steps: int = score_option(100, "grid size N: levels offset + k·(T/N)")
    start_skip: int = score_option(16, "a start at every start_skip-th positive grid time (7 starts at N=100)")
    grid_offset: int = score_option(1, "first grid time: 1 (paper-era code) | 0 (later code)")
    intensity: str = score_option("fixed", "fixed: pixels/255 (as the ID DDPM is trained) | minmax: each image "
                                           "stretched to its own min..max (the reference's scaling)")
    clamp: bool = score_option(True, "clamp reconstructions to [0, 1] before measuring")
    feature_size: int = score_option(224, "input side for the `features` distance's backbone")

    def __post_init__(self) -> None:
        self.check_pixel_options()
        bad = [m for m in self.metrics if m not in METRICS]
        if bad or not self.metrics or len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics must be distinct names among {METRICS}, got {list(self.metrics)}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.intensity not in INTENSITIES:
            raise ValueError(f"intensity must be one of {INTENSITIES}, got {self.intensity!r}")
        if not 1 <= self.inference_steps <= self.diffusion_steps:
            raise ValueError(f"inference_steps must be in [1, {self.diffusion_steps}]")
        if self.start_skip < 1 or self.grid_offset < 0:
            raise ValueError("start_skip must be ≥ 1 and grid_offset ≥ 0")
        if self.grid_offset + (self.inference_steps - 1) * (self.diffusion_steps // self.inference_steps) >= self.diffusion_steps:
            raise ValueError(f"grid_offset {self.grid_offset} puts the last of {self.inference_steps} levels past "
                             f"diffusion_steps {self.diffusion_steps}")
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if self.score not in self.sub_scores():
            raise ValueError(f"score {self.score!r} must be z, z_<metric> or <metric>@<start> "
                             f"for metrics {list(self.metrics)} and starts {self.starts()}")

    def grid(self) -> list[int]:
        """The ascending grid of levels (see :mod:`ood_bench.methods.ddpm_ood.plms`)."""
        return time_grid(self.diffusion_steps, self.inference_steps, self.grid_offset)

    def starts(self) -> list[int]:
        """The start levels, ascending (``[1, 161, …, 961]`` at the defaults)."""
        return start_times(self.grid(), self.start_skip)

    def sub_scores(self) -> list[str]:
        """Every sub-score the method outputs with these options."""
        return (["z"] + [f"z_{m}" for m in self.metrics]
                + [f"{m}@{s}" for m in self.metrics for s in self.starts()])
