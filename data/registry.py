"""Dataset registry: a name (or a folder path) → :class:`~ood_bench.data.base.ImageDataset`.

Registered factories take a :class:`DataContext` (data root, download flag, …) and a split.
Anything that is not a registered name but is an existing folder becomes a
:class:`~ood_bench.data.folder.FolderDataset`, so any folder of images can be an ID or OOD set.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ood_bench.utils.errors import ConfigError, DatasetNotFoundError
from ood_bench.utils.registry import Registry
from ood_bench.data.base import ImageDataset

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DataContext:
    """Where and how data-root datasets are found.

    Attributes:
        root: the ``--data-root`` folder.
        download: let torchvision download missing sets (only when the user asks).
        skip_unreadable: drop unreadable files of folder sets with a warning instead of failing.
        test_fraction: a folder with ``train/`` but no ``test/`` is refused (its test split would
            be the whole folder, training images included) unless this is set: then the
            fraction of ``train/`` held out (:class:`~ood_bench.data.base.SplitPart`) is its test
            split and the rest its train split (``--id-test-fraction``).
    """

    root: Path = Path("~/data")
    download: bool = False
    skip_unreadable: bool = False
    test_fraction: float | None = None  # a folder with train/ but no test/: hold this part of train/ out as test

    @property
    def root_path(self) -> Path:
        return Path(os.path.expanduser(str(self.root)))


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to build it and what to tell users about it."""

    name: str
    factory: Callable[[DataContext, str], ImageDataset]
    kind: str  # "embedded" (ships with the packages) or "data-root"
    description: str
    labelled: bool
    display_name: str = ""  # name in tables and figures (``CIFAR-100``); empty: ``name``

    @property
    def title(self) -> str:
        return self.display_name or self.name


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(
    name: str, *, kind: str, description: str, labelled: bool, aliases: tuple[str, ...] = (),
    display_name: str = "",
) -> Callable[[Callable[[DataContext, str], ImageDataset]], Callable]:
    """Decorator registering ``factory(ctx, split) -> ImageDataset`` under ``name``;
    ``display_name`` is how tables and figures print it (default: ``name``)."""

    def deco(factory: Callable[[DataContext, str], ImageDataset]) -> Callable:
        DATASETS.register(name, aliases=aliases)(
            DatasetSpec(name, factory, kind, description, labelled, display_name)
        )
        return factory

    return deco


def dataset_title(name: str) -> str:
    """Display name of a dataset given by registry name (``svhn`` → ``SVHN``) or folder path
    (its last component); any other name is returned as given."""
    if name in DATASETS:
        return DATASETS.get(name).title
    return Path(name.rstrip("/")).name if looks_like_path(name) else name


def looks_like_path(name: str) -> bool:
    return os.sep in name or name.startswith((".", "~")) or Path(name).is_dir()


def load_dataset(name: str, split: str, ctx: DataContext) -> ImageDataset:
    """Build dataset ``name`` (registry name or folder path) for ``split``.

    Raises:
        DatasetNotFoundError: a path that is not a folder, or a data-root set not on disk.
        ConfigError: an unknown name or split.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {SPLITS}")
    if name not in DATASETS and looks_like_path(name):
        from ood_bench.data.folder import FolderDataset

        path = Path(os.path.expanduser(name))
        if not path.is_dir():
            raise DatasetNotFoundError(f"image folder {path} does not exist; give an existing folder of images")
        # A folder with train/ and test/ subfolders serves both splits; a plain folder is a
        # test set only (an OOD set, or the ID test set of a folder that has no train/).
        if (path / "train").is_dir() and not (path / "test").is_dir():
            if ctx.test_fraction is None:
                raise DatasetNotFoundError(
                    f"{path} has train/ but no test/: its test split would be the whole folder, training images "
                    f"included; add a test/ subfolder, give {path / 'train'} itself as a plain folder, or hold out "
                    f"part of train/ as the test split with --id-test-fraction F (e.g. 0.2)")
            from ood_bench.data.base import SplitPart

            base = FolderDataset(path / "train", split="train", name=name.rstrip("/"), skip_unreadable=ctx.skip_unreadable)
            return SplitPart(base, ctx.test_fraction, split)
        if (path / split).is_dir():
            path = path / split
        elif split == "train":
            raise DatasetNotFoundError(
                f"{path} has no train/ subfolder: a folder used as the ID set needs train/ and test/ subfolders"
            )
        return FolderDataset(path, split=split, name=name.rstrip("/"), skip_unreadable=ctx.skip_unreadable)
    spec = DATASETS.get(name)
    return spec.factory(ctx, split)
