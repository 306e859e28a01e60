"""LMD options. Defaults are the paper's settings (Liu et al., ICML 2023, arXiv 2302.10326)."""
from __future__ import annotations

from dataclasses import dataclass

from ood_bench.methods.base import score_option
from ood_bench.methods.lmd.distances import DISTANCES
from ood_bench.methods.lmd.masks import MASK_KINDS
from ood_bench.methods.unet import PixelDiffusionConfig


@dataclass
class LMDConfig(PixelDiffusionConfig):
    """The UNet and its training: :class:`ood_bench.methods.unet.PixelDiffusionConfig` (paper defaults)."""

    score: str = score_option("lpips", "canonical distance (one of `distances`)")
    distances: tuple[str, ...] = score_option(("lpips",), f"distances to compute: {', '.join(DISTANCES)}")
    # lift + map
    mask: str = score_option("checkerboard_alt", f"mask: {', '.join(MASK_KINDS)}")
    mask_blocks: int = score_option(8, "checkerboard blocks per image edge (8 → 4-px blocks at 32 px)")
    random_patch: int = score_option(4, "patch side of the random mask")
    reps: int = score_option(10, "inpaintings per image; the score is their median distance")
    steps: int = score_option(1000, "sampling steps; fewer than diffusion_steps strides the schedule (faster, not the paper's)")
    feature_size: int = score_option(224, "input side for the `features` distance's backbone")

    def __post_init__(self) -> None:
        self.check_pixel_options()
        bad = [d for d in self.distances if d not in DISTANCES]
        if bad or not self.distances:
            raise ValueError(f"distances must be among {DISTANCES}, got {list(self.distances)}")
        if self.score not in self.distances:
            raise ValueError(f"score {self.score!r} must be one of distances {list(self.distances)}")
        if self.mask not in MASK_KINDS:
            raise ValueError(f"mask must be one of {MASK_KINDS}")
        if self.mask.startswith("checkerboard") and self.image_size % self.mask_blocks:
            raise ValueError(f"image_size {self.image_size} must be divisible by mask_blocks {self.mask_blocks}")
        if not 1 <= self.steps <= self.diffusion_steps:
            raise ValueError(f"steps must be in [1, {self.diffusion_steps}]")
        if self.reps < 1 or self.channels not in (1, 3):
            raise ValueError("reps must be ≥ 1 and channels 1 or 3")
