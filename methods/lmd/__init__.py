"""LMD (ICML 2023): Lift (mask), Map (diffusion inpainting), Detect (distance, median over repetitions)."""
from ood_bench.methods.lmd.config import LMDConfig
from ood_bench.methods.lmd.method import LMD

__all__ = ["LMD", "LMDConfig"]
