"""DiffOOD (Liu et al. 2022): guided DDIM denoising and the change of the classifier's view."""
from ood_bench.methods.diffood.config import DiffOODConfig
from ood_bench.methods.diffood.method import DiffOOD

__all__ = ["DiffOOD", "DiffOODConfig"]
