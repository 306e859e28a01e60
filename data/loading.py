"""DataLoaders over :class:`~ood_bench.data.base.ImageDataset` with a method's transform.

Two paths feed the scoring loops (:class:`DeviceBatches`):

- CPU (and any transform that is not an :class:`ImageTransform`): the loader applies the whole
  transform per image and yields float batches — the reference path, unchanged.
- the fast path (CUDA by default; a CPU with ``--fast-path on``) with an :class:`ImageTransform`: workers only decode (``uint8`` at the native size), the
  batch travels as ``uint8`` in pinned memory (4× fewer bytes than float32, copied with
  ``non_blocking``), and conversion, resize and crop run on the GPU over the whole batch. A
  batch whose images differ in size travels as a list and is finished image by image.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ood_bench.data.base import ArrayDataset, ImageDataset, LimitedDataset, ShardDataset
from ood_bench.data.transforms import ImageTransform
from ood_bench.utils.device import fast_path


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
    collate_fn: Callable | None = None,
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
        collate_fn=collate_fn,
    )


def collate_native(items: list) -> tuple:
    """Collate ``(uint8 image, label, index)`` items: one ``(B, C, H, W)`` tensor when all images
    share a size, else the list of ``(C, H, W)`` tensors (finished one by one on the device)."""
    imgs, labels, idx = zip(*items)
    same = all(im.shape == imgs[0].shape for im in imgs)
    return (torch.stack(imgs) if same else list(imgs)), default_collate(labels), default_collate(idx)


class DeviceBatches:
    """``(images (B, C, S, S) float in [0, 1] on device, labels (B,), indices (B,))`` in order;
    ``len()`` is the number of batches (progress bars read it).

    ``native``: ship ``uint8`` images at their native size and finish them on the device;
    ``None`` = on the fast path (:func:`~ood_bench.utils.device.fast_path`: CUDA by default,
    any device with ``--fast-path on``) when ``transform`` is an :class:`ImageTransform`, else
    the per-image path. Pinned memory on CUDA only.
    Labels and indices stay on the CPU (no device round trip is needed for them)."""

    def __init__(self, ds: ImageDataset, transform: Callable, batch_size: int, device: torch.device,
                 workers: int = 0, native: bool | None = None) -> None:
        self.device = device
        self.split = transform if (fast_path(device) if native is None else native) \
            and isinstance(transform, ImageTransform) else None
        if self.split is None:
            self.loader = make_loader(ds, transform, batch_size, workers)
        else:
            self.loader = make_loader(ds, self.split.decode, batch_size, workers,
                                      pin_memory=device.type == "cuda", collate_fn=collate_native)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for x, y, idx in self.loader:
            if self.split is None:
                yield x.to(self.device), y, idx
            elif isinstance(x, list):
                yield torch.stack([self.split.finish(im.to(self.device, non_blocking=True)) for im in x]), y, idx
            else:
                yield self.split.finish(x.to(self.device, non_blocking=True)), y, idx


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
