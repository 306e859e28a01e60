"""DiffOOD options. Defaults are the paper's settings (Liu et al., arXiv 2211.11255; code luping-liu/DiffOOD)."""
from __future__ import annotations

from dataclasses import dataclass

from methods.base import MethodConfig, fit_option, score_option

SPACES = ("logit", "feature", "pixel")


@dataclass
class DiffOODConfig(MethodConfig):
    score: str = score_option("logit@240", "canonical sub-score, named <space>@<t>")
    spaces: tuple[str, ...] = score_option(SPACES, "representations compared: logit (paper), feature, pixel")
    timesteps: tuple[int, ...] = score_option((240,), "noise levels t (each one a set of sub-scores), e.g. [120, 240, 360]")
    repeats: int = score_option(4, "noise draws r per image (shared across timesteps)")
    stride: int = score_option(20, "DDIM stride (t = 240, stride 20 → 12 guided steps)")
    guidance: float = score_option(3.0, "classifier-free guidance scale s: eps_u + s (eps_c - eps_u)")
    # images
    image_size: int = fit_option(32, "side the images are resized to")
    channels: int = fit_option(3, "image channels")
    # classifier: ResNet-18 32x32, OpenOOD recipe
    classifier_path: str = fit_option("", "a trained classifier checkpoint (ours or OpenOOD's ResNet18_32x32) instead of training")
    classifier_width: int = fit_option(64, "ResNet-18 stem/first-stage width")
    classifier_epochs: int = fit_option(100, "SGD epochs")
    classifier_lr: float = fit_option(0.1, "SGD learning rate (cosine schedule)")
    classifier_momentum: float = fit_option(0.9, "SGD momentum (Nesterov)")
    classifier_weight_decay: float = fit_option(5e-4, "SGD weight decay")
    classifier_batch_size: int = fit_option(128, "classifier batch size")
    classifier_crop_pad: int = fit_option(4, "random-crop padding (0 = no crop augmentation)")
    # class-conditional diffusion UNet (DDPM CIFAR-10 size; linear betas, T = 1000)
    unet_path: str = fit_option("", "a pretrained class-conditional diffusers UNet folder instead of training")
    base_channels: int = fit_option(128, "UNet width of the first level")
    channel_mult: tuple[int, ...] = fit_option((1, 2, 2, 2), "UNet width multipliers per level")
    layers_per_block: int = fit_option(2, "residual blocks per level")
    attention_resolutions: tuple[int, ...] = fit_option((16,), "feature-map sides with self-attention")
    dropout: float = fit_option(0.1, "UNet dropout")
    norm_groups: int = fit_option(32, "GroupNorm groups")
    diffusion_steps: int = fit_option(1000, "diffusion steps T")
    beta_start: float = fit_option(1e-4, "linear schedule start")
    beta_end: float = fit_option(0.02, "linear schedule end")
    epochs: int = fit_option(500, "UNet training epochs")
    lr: float = fit_option(2e-4, "AdamW learning rate")
    train_batch_size: int = fit_option(128, "UNet training batch size")
    warmup_steps: int = fit_option(5000, "linear lr warmup steps")
    grad_clip: float = fit_option(1.0, "gradient-norm clip")
    ema_decay: float = fit_option(0.9999, "EMA decay")
    label_dropout: float = fit_option(0.1, "probability of training with the null class")
    hflip: bool = fit_option(True, "random horizontal flips (UNet and classifier training)")
    checkpoint_every: int = fit_option(10, "epochs between resumable training checkpoints")

    def score_names(self) -> list[str]:
        return [f"{s}@{t}" for t in self.timesteps for s in self.spaces]

    def __post_init__(self) -> None:
        bad = [s for s in self.spaces if s not in SPACES]
        if bad or not self.spaces:
            raise ValueError(f"spaces must be among {SPACES}")
        for t in self.timesteps:
            if not 0 < t < self.diffusion_steps or t % self.stride:
                raise ValueError(f"timestep {t} must be in (0, {self.diffusion_steps}) and a multiple of stride {self.stride}")
        if self.score not in self.score_names():
            raise ValueError(f"score must be one of {self.score_names()}")
        if self.repeats < 1 or not 0 <= self.label_dropout < 1:
            raise ValueError("repeats must be ≥ 1 and label_dropout in [0, 1)")
