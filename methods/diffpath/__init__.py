"""DiffPath (Heng et al., NeurIPS 2024): statistics of one model's DDIM-inversion path + a post-hoc density."""
from ood_bench.methods.diffpath.method import DiffPath

__all__ = ["DiffPath"]
