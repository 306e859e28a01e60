"""LMD (ICML 2023): Lift (mask), Map (diffusion inpainting), Detect (distance, median over repetitions)."""
from methods.lmd.config import LMDConfig
from methods.lmd.method import LMD

__all__ = ["LMD", "LMDConfig"]
