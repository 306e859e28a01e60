"""DLSR options. Defaults are the paper's settings (NeurIPS 2024, arXiv 2411.10701)."""
from __future__ import annotations

from dataclasses import dataclass

from ood_bench.methods.base import fit_option, score_option
from ood_bench.methods.features import FeatureOptions

SCORES = ("mfsim", "mse", "lr")


@dataclass
class DLSRConfig(FeatureOptions):
    score: str = score_option("mfsim", "canonical score: mfsim (paper headline) | mse | lr")
    # the feature extractor: FeatureOptions (backbone, weights, layers, image_size)
    # LFDN and its diffusion schedule
    lfdn: str = fit_option("", "a trained LFDN instead of training: a folder or Hugging Face repo id with lfdn/ "
                               "(final EMA model) and lfdn_first/ (first-epoch model, for the LR score), "
                               "as DLSR's cache writes them (save_pretrained)")
    width: int = fit_option(1440, "LFDN hidden width")
    blocks: int = fit_option(16, "LFDN residual blocks")
    timesteps: int = fit_option(100, "diffusion steps T")
    beta_start: float = fit_option(0.0015, "scaled-linear schedule start (beta)")
    beta_end: float = fit_option(0.0195, "scaled-linear schedule end (beta)")
    # training
    epochs: int = fit_option(150, "training epochs over the ID training features")
    lr: float = fit_option(1e-4, "AdamW learning rate (constant)")
    weight_decay: float = fit_option(1e-4, "AdamW weight decay")
    train_batch_size: int = fit_option(128, "training batch size")
    ema_decay: float = fit_option(0.9999, "EMA decay (EMA weights are used at test time)")
    # scoring
    t: int = score_option(3, "distortion timestep: features are noised to t, then DDIM-reconstructed t → 0")
    lr_score: bool = score_option(True, "also compute the LR score (doubles LFDN evaluations)")
    lr_base: str = score_option("mse", "per-model error the LR score compares: mse | mfsim")

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.score == "lr" and not self.lr_score:
            raise ValueError("score=lr needs lr_score=true")
        if self.lr_base not in ("mse", "mfsim"):
            raise ValueError("lr_base must be mse or mfsim")
        if not 0 <= self.t < self.timesteps:
            raise ValueError(f"t must be in [0, {self.timesteps - 1}], got {self.t}")
        for name in ("image_size", "width", "blocks", "epochs", "train_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
