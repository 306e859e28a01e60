"""DiffOOD options. Defaults are the paper's settings (Liu et al., arXiv 2211.11255; code luping-liu/DiffOOD)."""
from __future__ import annotations

from dataclasses import dataclass

from ood_bench.methods.base import MethodConfig, fit_option, score_option
from ood_bench.methods.unet import PixelDiffusionConfig

SPACES = ("logit", "feature", "pixel")


@dataclass
class ClassifierOptions(MethodConfig):
    """DiffOOD's classifier and its training (the paper's ResNet-18 32x32, OpenOOD recipe).

    Shared with the MSP and energy baselines, so they score with the same network and recipe.
    """

    classifier_path: str = fit_option("", "a trained classifier instead of training (ours or OpenOOD's ResNet18_32x32): "
                                          "a checkpoint file, or a folder / Hugging Face repo id holding classifier.pt")
    classifier_width: int = fit_option(64, "ResNet-18 stem/first-stage width")
    classifier_size: int = fit_option(32, "side the classifier sees: images are resized (bilinear) to it, "
                                          "the ResNet-18 32x32's design resolution (0 = the image size)")
    classifier_epochs: int = fit_option(100, "SGD epochs")
    classifier_lr: float = fit_option(0.1, "SGD learning rate (cosine schedule)")
    classifier_momentum: float = fit_option(0.9, "SGD momentum (Nesterov)")
    classifier_weight_decay: float = fit_option(5e-4, "SGD weight decay")
    classifier_batch_size: int = fit_option(128, "classifier batch size")
    classifier_crop_pad: int = fit_option(4, "random-crop padding at 32 px (0 = no crop augmentation)")
    classifier_backbone: str = fit_option("", "'' = the ResNet-18 32x32 trained from scratch (paper); a timm backbone "
                                              "(tf_efficientnet_lite0, tf_efficientnet_b4, resnet50) = its frozen "
                                              "multi-layer features (DLSR's, at classifier_size px) under a trained "
                                              "linear head (width, crop and flips then do not apply)")
    classifier_weights: str = fit_option("auto", "weights of classifier_backbone: auto | <file.pth> | timm | random")


@dataclass
class DiffOODConfig(PixelDiffusionConfig, ClassifierOptions):
    """The UNet and its training: :class:`ood_bench.methods.unet.PixelDiffusionConfig` (paper
    defaults); the classifier: :class:`ClassifierOptions`."""

    score: str = score_option("logit@240", "canonical sub-score, named <space>@<t>")
    spaces: tuple[str, ...] = score_option(SPACES, "representations compared: logit (paper), feature, pixel")
    timesteps: tuple[int, ...] = score_option((240,), "noise levels t (each one a set of sub-scores), e.g. [120, 240, 360]")
    repeats: int = score_option(4, "noise draws r per image (shared across timesteps)")
    stride: int = score_option(20, "DDIM stride (t = 240, stride 20 → 12 guided steps)")
    guidance: float = score_option(3.0, "classifier-free guidance scale s: eps_u + s (eps_c - eps_u)")
    # class-conditional UNet: the rest of PixelDiffusionConfig (flips apply to the classifier too),
    # with the released code's training length and loss (luping-liu/DiffOOD, ddim_cifar10_cond.yml)
    epochs: int = fit_option(5000, "UNet training epochs (released code: 5000; the papers' DDPMs ~500)")
    loss_reduction: str = fit_option("sum", "ε-loss over C×H×W: sum (released code; with grad_clip 1 the clip is "
                                            "almost always active) | mean (Ho et al.)")
    label_dropout: float = fit_option(0.1, "probability of training with the null class")

    def score_names(self) -> list[str]:
        return [f"{s}@{t}" for t in self.timesteps for s in self.spaces]

    def __post_init__(self) -> None:
        self.check_pixel_options()
        bad = [s for s in self.spaces if s not in SPACES]
        if bad or not self.spaces:
            raise ValueError(f"spaces must be among {SPACES}")
        for t in self.timesteps:
            if not 0 < t < self.diffusion_steps or t % self.stride:
                raise ValueError(f"timestep {t} must be in (0, {self.diffusion_steps}) and a multiple of stride {self.stride}")
        if self.score not in self.score_names():
            raise ValueError(f"score must be one of {self.score_names()}")
        if self.classifier_size and self.classifier_size < 8:  # negatives included
            raise ValueError("classifier_size must be 0 (the image size) or at least 8 px")
        if self.repeats < 1 or not 0 <= self.label_dropout < 1:
            raise ValueError("repeats must be ≥ 1 and label_dropout in [0, 1)")
