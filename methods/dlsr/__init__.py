"""DLSR (NeurIPS 2024): multi-layer backbone features reconstructed by an MLP diffusion model."""
from ood_bench.methods.dlsr.config import DLSRConfig
from ood_bench.methods.dlsr.method import DLSR

__all__ = ["DLSR", "DLSRConfig"]
