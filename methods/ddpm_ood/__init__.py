"""DDPM-OOD (Graham et al., CVPR-W 2023): multi-level diffusion reconstruction, z-scored on ID validation images."""
from ood_bench.methods.ddpm_ood.config import DDPMOODConfig
from ood_bench.methods.ddpm_ood.method import DDPMOOD

__all__ = ["DDPMOOD", "DDPMOODConfig"]
