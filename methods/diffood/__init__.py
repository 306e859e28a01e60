"""DiffOOD (Liu et al. 2022): guided DDIM denoising and the change of the classifier's view."""
from methods.diffood.config import DiffOODConfig
from methods.diffood.method import DiffOOD

__all__ = ["DiffOOD", "DiffOODConfig"]
