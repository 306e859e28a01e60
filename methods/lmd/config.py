"""LMD options. Defaults are the paper's settings (Liu et al., ICML 2023, arXiv 2302.10326)."""
from __future__ import annotations

from dataclasses import dataclass

from methods.base import MethodConfig, fit_option, score_option
from methods.lmd.distances import DISTANCES
from methods.lmd.masks import MASK_KINDS


@dataclass
class LMDConfig(MethodConfig):
    score: str = score_option("lpips", "canonical distance (one of `distances`)")
    distances: tuple[str, ...] = score_option(("lpips",), f"distances to compute: {', '.join(DISTANCES)}")
    # images
    image_size: int = fit_option(32, "side the images are resized to")
    channels: int = fit_option(3, "3 (grayscale repeated, as the paper) or 1")
    # diffusion model (Ho et al.'s DDPM UNet; schedule: linear betas, T = 1000, ε-prediction)
    unet_path: str = fit_option("", "a pretrained diffusers UNet2DModel folder to use instead of training")
    base_channels: int = fit_option(128, "UNet width of the first level")
    channel_mult: tuple[int, ...] = fit_option((1, 2, 2, 2), "UNet width multipliers per level")
    layers_per_block: int = fit_option(2, "residual blocks per level")
    attention_resolutions: tuple[int, ...] = fit_option((16,), "feature-map sides with self-attention")
    dropout: float = fit_option(0.1, "UNet dropout")
    norm_groups: int = fit_option(32, "GroupNorm groups")
    timesteps: int = fit_option(1000, "diffusion steps T")
    beta_start: float = fit_option(1e-4, "linear schedule start")
    beta_end: float = fit_option(0.02, "linear schedule end")
    # training (AdamW with wd 0 = the paper's Adam)
    epochs: int = fit_option(500, "training epochs (500 ≈ 195k steps on CIFAR-10 at batch 128)")
    lr: float = fit_option(2e-4, "learning rate")
    train_batch_size: int = fit_option(128, "training batch size")
    warmup_steps: int = fit_option(5000, "linear lr warmup steps")
    grad_clip: float = fit_option(1.0, "gradient-norm clip")
    ema_decay: float = fit_option(0.9999, "EMA decay (EMA weights inpaint)")
    hflip: bool = fit_option(True, "random horizontal flips in training (paper: CIFAR yes, MNIST/SVHN no)")
    checkpoint_every: int = fit_option(10, "epochs between resumable training checkpoints")
    # lift + map
    mask: str = score_option("checkerboard_alt", f"mask: {', '.join(MASK_KINDS)}")
    mask_blocks: int = score_option(8, "checkerboard blocks per image edge (8 → 4-px blocks at 32 px)")
    random_patch: int = score_option(4, "patch side of the random mask")
    reps: int = score_option(10, "inpaintings per image; the score is their median distance")
    steps: int = score_option(1000, "sampling steps; fewer than `timesteps` strides the schedule (faster, not the paper's)")
    feature_size: int = score_option(224, "input side for the `features` distance's backbone")

    def __post_init__(self) -> None:
        bad = [d for d in self.distances if d not in DISTANCES]
        if bad or not self.distances:
            raise ValueError(f"distances must be among {DISTANCES}, got {list(self.distances)}")
        if self.score not in self.distances:
            raise ValueError(f"score {self.score!r} must be one of distances {list(self.distances)}")
        if self.mask not in MASK_KINDS:
            raise ValueError(f"mask must be one of {MASK_KINDS}")
        if self.mask.startswith("checkerboard") and self.image_size % self.mask_blocks:
            raise ValueError(f"image_size {self.image_size} must be divisible by mask_blocks {self.mask_blocks}")
        if not 1 <= self.steps <= self.timesteps:
            raise ValueError(f"steps must be in [1, {self.timesteps}]")
        if self.reps < 1 or self.channels not in (1, 3):
            raise ValueError("reps must be ≥ 1 and channels 1 or 3")
