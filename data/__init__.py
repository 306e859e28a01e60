"""Datasets: embedded offline sets, torchvision sets under a data root, and any image folder.

Importing this package registers every dataset; look one up with :func:`load_dataset`.
"""
from ood_bench.data.base import ArrayDataset, ImageDataset
from ood_bench.data.registry import DATASETS, DataContext, DatasetSpec, load_dataset, register_dataset

from ood_bench.data import embedded as _embedded  # noqa: F401  (registers)
from ood_bench.data import torchvision_sets as _torchvision_sets  # noqa: F401  (registers)

__all__ = ["ArrayDataset", "ImageDataset", "DATASETS", "DataContext", "DatasetSpec",
           "load_dataset", "register_dataset"]
