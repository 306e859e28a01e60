"""The dataset abstraction every method consumes.

An :class:`ImageDataset` is a finite, *ordered* list of images. Item ``i`` is
``(PIL.Image, label)``; ``label`` is ``-1`` when the set is unlabelled. Order is stable, so
per-image scores can be written with stable ids and shards of a set merge back cleanly.
Images come in their native size and mode (``"L"`` or ``"RGB"``); each method's transform
converts them to the channels/size it needs (:mod:`ood_bench.data.transforms`).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch
from PIL import Image

LIMIT_SEED = 0  # --limit subsets are the same for every run seed: seeds vary models, not data

class ImageDataset(torch.utils.data.Dataset):
    """Base class: subclasses implement ``__len__``, ``load_image`` and ``identity``.

    Attributes:
        name: registry name or path the user gave.
        split: ``"train"`` or ``"test"`` (sets with a single split report ``"test"``).
        num_classes: number of classes when labelled, else ``None``.
    """

    def __init__(self, name: str, split: str, num_classes: int | None = None) -> None:
        self.name = name
        self.split = split
        self.num_classes = num_classes

    # -- to implement -------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def load_image(self, i: int) -> Image.Image:
        """Image ``i`` in its native size, mode ``"L"`` or ``"RGB"``."""
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """JSON-able facts that identify the content (for cache keys)."""
        raise NotImplementedError

    # -- optional -------------------------------------------------------------------------
    def label(self, i: int) -> int:
        return -1

    def item_id(self, i: int) -> str:
        """Stable id of item ``i``: its index, or its path for folder sets."""
        return str(i)

    # -- provided -------------------------------------------------------------------------
    @property
    def has_labels(self) -> bool:
        return self.num_classes is not None

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.load_image(i), self.label(i)

    def labels(self) -> np.ndarray:
        """All labels, shape ``(N,)``, ``-1`` where unknown."""
        return np.asarray([self.label(i) for i in range(len(self))], dtype=np.int64)

    def item_ids(self) -> list[str]:
        return [self.item_id(i) for i in range(len(self))]

    def fingerprint(self) -> str:
        """Short hash of :meth:`identity` plus the length: the dataset part of cache keys.
        Computed once (datasets do not change; hashing a large set or stat-ing a big folder
        is not free, and the runner asks several times)."""
        if getattr(self, "_fingerprint", None) is None:
            blob = json.dumps({"len": len(self), **self.identity()}, sort_keys=True, default=str)
            self._fingerprint = hashlib.sha1(blob.encode()).hexdigest()[:16]
        return self._fingerprint

    def batch_origin(self) -> tuple[str, int]:
        """``(fingerprint, offset)`` that scoring derives per-batch random draws from: item ``i``
        here is item ``offset + i`` of the set with that fingerprint (a shard seeds as its set)."""
        return self.fingerprint(), 0

    def describe(self) -> str:
        lab = f"{self.num_classes} classes" if self.has_labels else "unlabelled"
        return f"{self.name} [{self.split}] {len(self)} images, {lab}"

    @property
    def subset(self) -> dict[str, Any] | None:
        """How this set was cut from a larger one (``--limit``), for the manifest; None if whole."""
        return None

    def take(self, n: int | None, seed: int = LIMIT_SEED) -> ImageDataset:
        """``n`` items (all when ``n`` is None or ≥ len), a seeded subset: class-stratified when
        labelled, uniformly random otherwise, in dataset order (see :class:`LimitedDataset`)."""
        if n is None or n >= len(self):
            return self
        return LimitedDataset(self, n, seed)


class ArrayDataset(ImageDataset):
    """Images held in memory as a uint8 array ``(N, H, W)`` (gray) or ``(N, H, W, 3)`` (RGB)."""

    def __init__(
        self,
        name: str,
        split: str,
        images: np.ndarray,
        labels: np.ndarray | None = None,
        num_classes: int | None = None,
        source: str = "",
    ) -> None:
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError("images must be uint8 (N,H,W) or (N,H,W,3)")
        if labels is not None and len(labels) != len(images):
            raise ValueError("labels and images differ in length")
        super().__init__(name, split, num_classes if labels is not None else None)
        self.images = images
        self._labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.source = source

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i])  # (H,W) uint8 → "L", (H,W,3) → "RGB"

    def label(self, i: int) -> int:
        return -1 if self._labels is None else int(self._labels[i])

    def labels(self) -> np.ndarray:
        if self._labels is None:
            return np.full(len(self), -1, dtype=np.int64)
        return self._labels.copy()

    def identity(self) -> dict[str, Any]:
        h = hashlib.sha1(self.images.tobytes())
        if self._labels is not None:
            h.update(self._labels.tobytes())
        return {"kind": "array", "name": self.name, "split": self.split,
                "source": self.source, "sha1": h.hexdigest()}


def subset_indices(labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, str]:
    """``n`` sorted indices into a set with ``labels`` (``-1`` = unlabelled), and the strategy.

    Labelled: class-stratified: each class gets ``n × its share`` items (largest remainders
    get the rounding), drawn at random within the class, so a small ``--limit`` still covers
    every class (the first N files of a class-foldered set cover a few classes only).
    Unlabelled: a uniform random subset. Sorted, so the subset keeps the dataset's order.
    """
    rng = np.random.default_rng(seed)
    if len(labels) and (labels >= 0).all():
        classes, counts = np.unique(labels, return_counts=True)
        quota = n * counts / counts.sum()
        take = np.floor(quota).astype(int)
        extra = np.argsort(-(quota - take), kind="stable")[: n - take.sum()]
        take[extra] += 1
        chosen = [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in zip(classes, take)]
        return np.sort(np.concatenate(chosen)), "class-stratified"
    return np.sort(rng.choice(len(labels), n, replace=False)), "random"


class SubsetDataset(ImageDataset):
    """The items ``indices`` of another dataset ``base``, in that order; ids and labels are the
    parent's. Subclasses say how the indices were chosen (``subset``, ``identity``)."""

    def __init__(self, base: ImageDataset, indices: np.ndarray, split: str | None = None) -> None:
        super().__init__(base.name, split or base.split, base.num_classes)
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def load_image(self, i: int) -> Image.Image:
        return self.base.load_image(int(self.indices[i]))

    def label(self, i: int) -> int:
        return self.base.label(int(self.indices[i]))

    def labels(self) -> np.ndarray:
        return self.base.labels()[self.indices]

    def item_id(self, i: int) -> str:
        return self.base.item_id(int(self.indices[i]))


class LimitedDataset(SubsetDataset):
    """A seeded subset of ``n`` items of another dataset (``--limit``, :func:`subset_indices`)."""

    def __init__(self, base: ImageDataset, n: int, seed: int = LIMIT_SEED) -> None:
        indices, self.strategy = subset_indices(base.labels(), n, seed)
        super().__init__(base, indices)
        self.n = n
        self.seed = seed

    @property
    def subset(self) -> dict[str, Any]:
        return {"n": self.n, "of": len(self.base), "seed": self.seed, "strategy": self.strategy}

    def identity(self) -> dict[str, Any]:
        return {"limit": self.n, "seed": self.seed, "strategy": self.strategy, "base": self.base.fingerprint()}


class IndexedDataset(SubsetDataset):
    """The items ``indices`` (sorted) of another dataset, named by ``part`` (``"fit"``,
    ``"validation"``). ``how`` records how the indices were chosen; ``split`` (default: the
    parent's) names the split the part stands for."""

    def __init__(self, base: ImageDataset, indices: np.ndarray, part: str, how: dict[str, Any],
                 split: str | None = None) -> None:
        super().__init__(base, indices, split)
        self.part = part
        self.how = dict(how)

    def describe(self) -> str:
        return f"{super().describe()} ({self.part} part)"

    @property
    def subset(self) -> dict[str, Any]:
        return {"part": self.part, "n": len(self), "of": len(self.base), **self.how}

    def identity(self) -> dict[str, Any]:
        return {"part": self.part, **self.how, "base": self.base.fingerprint()}


class SplitPart(IndexedDataset):
    """One part of a seeded split of a set that has no test split of its own (an ID folder with
    ``train/`` only, ``--id-test-fraction``): ``test`` = ``round(fraction × N)`` items chosen as
    ``--limit`` chooses (class-stratified when labelled; at least 1, at most N − 1), ``train`` =
    every other item. The two parts never share an image; ids are the parent's."""

    def __init__(self, base: ImageDataset, fraction: float, part: str, seed: int = LIMIT_SEED) -> None:
        if not 0 < fraction < 1 or part not in ("train", "test"):
            raise ValueError("fraction must be in (0, 1) and part train or test")
        if len(base) < 2:
            raise ValueError(f"{base.name} has {len(base)} image(s): too few to split")
        k = min(max(1, round(fraction * len(base))), len(base) - 1)
        held, strategy = subset_indices(base.labels(), k, seed)
        indices = held if part == "test" else np.setdiff1d(np.arange(len(base)), held)
        super().__init__(base, indices, part, {"test_fraction": fraction, "seed": seed, "strategy": strategy},
                         split=part)
        self.fraction, self.seed, self.strategy = fraction, seed, strategy

    @property
    def subset(self) -> dict[str, Any]:
        return {"part": self.part, "test_fraction": self.fraction, "of": len(self.base), "seed": self.seed,
                "strategy": self.strategy}

    def identity(self) -> dict[str, Any]:
        return {"split_part": self.part, "test_fraction": self.fraction, "seed": self.seed, "strategy": self.strategy,
                "base": self.base.fingerprint()}


def holdout_split(train: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset | None]:
    """``(fit, validation)``: a hold-out of ``max(1, round(fraction · N))`` items of ``train`` and the rest.

    The hold-out is drawn as :func:`subset_indices` draws (class-stratified when labelled, else
    uniformly random), seeded by the run ``seed`` (salted, so it is not the ``--limit`` draw);
    both parts keep the dataset's order and are disjoint. ``fraction == 0`` → ``(train, None)``.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1)``, or a split that leaves a part empty.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return train, None
    n = len(train)
    k = max(1, int(round(fraction * n)))
    if k >= n:
        raise ValueError(f"a validation fraction of {fraction} leaves an empty part of {n} training images")
    split_seed = int(hashlib.sha1(f"validation:{seed}".encode()).hexdigest()[:15], 16)
    held, strategy = subset_indices(train.labels(), k, split_seed)
    rest = np.setdiff1d(np.arange(n), held, assume_unique=True)
    how = {"fraction": fraction, "seed": seed, "strategy": strategy}
    return IndexedDataset(train, rest, "fit", how), IndexedDataset(train, held, "validation", how)


class ShardDataset(ImageDataset):
    """Items ``[start, stop)`` of another dataset: one rank's part of a set in sharded scoring.
    Ids are the parent's, and :meth:`batch_origin` the parent's shifted by ``start``, so a batch
    draws the random numbers it draws when the whole set is scored."""

    def __init__(self, base: ImageDataset, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= len(base):
            raise ValueError(f"shard [{start}, {stop}) outside a set of {len(base)}")
        super().__init__(base.name, base.split, base.num_classes)
        self.base = base
        self.start = start
        self.stop = stop

    def __len__(self) -> int:
        return self.stop - self.start

    def load_image(self, i: int) -> Image.Image:
        return self.base.load_image(self.start + i)

    def label(self, i: int) -> int:
        return self.base.label(self.start + i)

    def item_id(self, i: int) -> str:
        return self.base.item_id(self.start + i)

    def identity(self) -> dict[str, Any]:
        return {"shard": [self.start, self.stop], "base": self.base.fingerprint()}

    def batch_origin(self) -> tuple[str, int]:
        fp, offset = self.base.batch_origin()
        return fp, offset + self.start
