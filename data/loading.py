"""DataLoaders over :class:`~ood_bench.data.base.ImageDataset` with a method's transform."""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from ood_bench.data.base import ArrayDataset, ImageDataset, LimitedDataset, ShardDataset


class TransformedDataset(Dataset):
    """Item ``i`` → ``(transform(image_i), label_i, i)``."""

    def __init__(self, base: ImageDataset, transform: Callable) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, label = self.base[i]
        return self.transform(img), label, i


def _in_memory(ds: ImageDataset) -> bool:
    while isinstance(ds, (LimitedDataset, ShardDataset)):
        ds = ds.base
    return isinstance(ds, ArrayDataset)


def make_loader(
    ds: ImageDataset,
    transform: Callable,
    batch_size: int,
    workers: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A loader yielding ``(images (B,C,H,W) float, labels (B,), indices (B,))``.

    In-memory sets are read in the main process (workers would only add start-up cost);
    sets read from disk use ``workers`` processes.
    """
    n_workers = 0 if _in_memory(ds) else workers
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        TransformedDataset(ds, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=gen,
        num_workers=n_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def materialize(ds: ImageDataset, transform: Callable, batch_size: int = 256,
                workers: int = 0, progress: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole transformed set in memory: ``(uint8 images (N,C,H,W), int64 labels (N,))``.

    Training loops draw many epochs from this instead of decoding images every epoch. uint8
    keeps CIFAR-size sets at ~150 MB; values are requantised after resizing (≤ 1/510 error).
    """
    loader = make_loader(ds, transform, batch_size, workers)
    xs, ys = [], []
    it = progress(loader) if progress else loader
    for x, y, _ in it:
        xs.append((x * 255).round_().to(torch.uint8))
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)
