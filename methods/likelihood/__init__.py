"""Likelihood baselines on the ID DDPM: ``diffusion-nll`` (variational bound, bits/dim) and
``diffusion-ic`` (input complexity: NLL bits − lossless compressed bits)."""
from ood_bench.methods.likelihood.config import DiffusionICConfig, DiffusionNLLConfig
from ood_bench.methods.likelihood.method import DiffusionIC, DiffusionNLL

__all__ = ["DiffusionIC", "DiffusionICConfig", "DiffusionNLL", "DiffusionNLLConfig"]
