"""MSMA (Mahmood et al., ICLR 2021): multiscale ε-norms of a diffusion model + a post-hoc density."""
from ood_bench.methods.msma.method import MSMA

__all__ = ["MSMA"]
