"""Standard datasets under ``--data-root``: torchvision classes and ImageFolder-style sets.

Nothing is downloaded unless the user passes ``--download``. A missing set raises
:class:`~ood_bench.utils.errors.DatasetNotFoundError` saying where it was looked for and how to get it.

Expected layout under the data root (torchvision's own layouts for its classes; the ODIN /
OpenOOD folder names for the OOD benchmark sets):

=============  ===========================================================================
cifar10        ``cifar-10-batches-py/``                      (torchvision CIFAR10)
cifar100       ``cifar-100-python/``                         (torchvision CIFAR100)
svhn           ``svhn/train_32x32.mat``, ``svhn/test_32x32.mat``  (torchvision SVHN)
mnist          ``MNIST/raw/``                                (torchvision MNIST)
fashionmnist   ``FashionMNIST/raw/``                         (torchvision FashionMNIST)
kmnist         ``KMNIST/raw/``                               (torchvision KMNIST)
celeba         ``celeba/img_align_celeba/`` + ``list_eval_partition.txt`` (torchvision CelebA)
lsun_c         ``LSUN/``           (ODIN's LSUN crop)
lsun_r         ``LSUN_resize/``    (ODIN's LSUN resize)
isun           ``iSUN/``
dtd            ``dtd/images/``     (Describable Textures; OpenOOD's "Textures")
places365      ``places365/``      (any folder of Places365 images, e.g. OpenOOD's test list)
tinyimagenet   ``tiny-imagenet-200/train/`` and ``tiny-imagenet-200/val/``
=============  ===========================================================================
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np
from PIL import Image

from ood_bench.utils.errors import ConfigError, DatasetNotFoundError
from ood_bench.data.base import ImageDataset
from ood_bench.data.folder import FolderDataset
from ood_bench.data.registry import DataContext, register_dataset

ODIN_URL = "https://github.com/facebookresearch/odin (OOD test sets)"


class TorchvisionDataset(ImageDataset):
    """Wraps a torchvision dataset whose items are ``(PIL image, int label or None)``."""

    def __init__(self, name: str, split: str, tv: Any, num_classes: int | None,
                 targets: np.ndarray | None) -> None:
        super().__init__(name, split, num_classes)
        self.tv = tv
        self._targets = targets

    def __len__(self) -> int:
        return len(self.tv)

    def load_image(self, i: int) -> Image.Image:
        img = self.tv[i][0]
        return img if img.mode in ("L", "RGB") else img.convert("RGB")

    def label(self, i: int) -> int:
        return -1 if self._targets is None else int(self._targets[i])

    def labels(self) -> np.ndarray:
        if self._targets is None:
            return np.full(len(self), -1, dtype=np.int64)
        return np.asarray(self._targets, dtype=np.int64).copy()

    def identity(self) -> dict[str, Any]:
        h = hashlib.sha1(np.asarray(self._targets if self._targets is not None else [], dtype=np.int64).tobytes())
        return {"kind": "torchvision", "class": type(self.tv).__name__, "split": self.split,
                "targets_sha1": h.hexdigest()}


def _open_torchvision(name: str, looked_for: str, build: Callable[[bool], Any], ctx: DataContext) -> Any:
    """Build a torchvision dataset, turning its not-found/download errors into one-line errors."""
    try:
        return build(ctx.download)
    except RuntimeError as e:
        if "not found" in str(e).lower() or "corrupted" in str(e).lower():
            raise DatasetNotFoundError(
                f"{name} not found under {ctx.root_path} (looked for {ctx.root_path / looked_for}); "
                f"pass --download to fetch it, or --data-root to point at the folder that holds it"
            ) from None
        raise
    except OSError as e:  # a download that cannot reach the internet
        raise DatasetNotFoundError(
            f"downloading {name} into {ctx.root_path} failed ({e}); put the files under "
            f"{ctx.root_path / looked_for} by hand"
        ) from None


def _register_torchvision(name: str, cls_name: str, looked_for: str, description: str,
                          split_kw: Callable[[str], dict], subdir: str = "", classes: int | None = None) -> None:
    # the display name is the description's first part: "CIFAR-10, 32x32 RGB, ..." → "CIFAR-10"
    @register_dataset(name, kind="data-root", labelled=True, description=description,
                      display_name=description.split(",")[0])
    def factory(ctx: DataContext, split: str) -> TorchvisionDataset:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        root = ctx.root_path / subdir if subdir else ctx.root_path
        tv = _open_torchvision(name, looked_for,
                               lambda dl: cls(str(root), download=dl, **split_kw(split)), ctx)
        targets = np.asarray(tv.targets if hasattr(tv, "targets") else tv.labels)  # SVHN: .labels
        n_classes = classes or len(tv.classes)
        return TorchvisionDataset(name, split, tv, n_classes, targets)


def _train_flag(split: str) -> dict:
    return {"train": split == "train"}


_register_torchvision("cifar10", "CIFAR10", "cifar-10-batches-py", "CIFAR-10, 32x32 RGB, 10 classes (50k / 10k)", _train_flag)
_register_torchvision("cifar100", "CIFAR100", "cifar-100-python", "CIFAR-100, 32x32 RGB, 100 classes (50k / 10k)", _train_flag)
_register_torchvision("svhn", "SVHN", "svhn/test_32x32.mat", "SVHN, 32x32 RGB digits (73k / 26k)",
                      lambda s: {"split": s}, subdir="svhn", classes=10)
_register_torchvision("mnist", "MNIST", "MNIST/raw", "MNIST, 28x28 gray (60k / 10k)", _train_flag)
_register_torchvision("fashionmnist", "FashionMNIST", "FashionMNIST/raw", "Fashion-MNIST, 28x28 gray (60k / 10k)", _train_flag)
_register_torchvision("kmnist", "KMNIST", "KMNIST/raw", "Kuzushiji-MNIST, 28x28 gray (60k / 10k)", _train_flag)


@register_dataset("celeba", kind="data-root", labelled=False, display_name="CelebA",
                  description="CelebA aligned faces (torchvision layout), unlabelled (162k train / 20k test)")
def celeba(ctx: DataContext, split: str) -> TorchvisionDataset:
    import torchvision.datasets as tvd

    tv = _open_torchvision("celeba", "celeba/img_align_celeba",
                           lambda dl: tvd.CelebA(str(ctx.root_path), split=split, target_type=[], download=dl), ctx)
    return TorchvisionDataset("celeba", split, tv, None, None)


# ------------------------------------------------------------------ ImageFolder-style sets
def _register_folder(name: str, candidates: dict[str, tuple[str, ...]], how: str, description: str,
                     aliases: tuple[str, ...] = (), display_name: str = "") -> None:
    @register_dataset(name, kind="data-root", labelled=False, description=description, aliases=aliases,
                      display_name=display_name)
    def factory(ctx: DataContext, split: str) -> FolderDataset:
        if split not in candidates:
            raise ConfigError(f"{name} has only a {'/'.join(candidates)} split: use it as an OOD set")
        tried = [ctx.root_path / c for c in candidates[split]]
        for path in tried:
            if path.is_dir():
                return FolderDataset(path, split=split, name=name, skip_unreadable=ctx.skip_unreadable)
        raise DatasetNotFoundError(
            f"{name} not found (looked for {', '.join(str(p) for p in tried)}); get it from {how} "
            f"and extract it there, or pass --data-root"
        )


_register_folder("lsun_c", {"test": ("LSUN", "LSUN_C", "lsun_c")}, ODIN_URL, "LSUN crop (ODIN), 32x32, 10k", display_name="LSUN-C")
_register_folder("lsun_r", {"test": ("LSUN_resize", "LSUN_R", "lsun_r")}, ODIN_URL, "LSUN resize (ODIN), 32x32, 10k", display_name="LSUN-R")
_register_folder("isun", {"test": ("iSUN", "isun")}, ODIN_URL, "iSUN (ODIN), 32x32, 8925", display_name="iSUN")
_register_folder("dtd", {"test": ("dtd/images", "dtd", "textures_dtd", "Textures")},
                 "https://www.robots.ox.ac.uk/~vgg/data/dtd/", "Describable Textures (DTD), 5640 images",
                 aliases=("describable_textures",), display_name="Textures (DTD)")
_register_folder("places365", {"test": ("places365", "Places365", "places")},
                 "http://places2.csail.mit.edu/download.html (or OpenOOD's benchmark lists)",
                 "Places365 images (any subset placed in the folder)", display_name="Places365")
_register_folder("tinyimagenet", {"train": ("tiny-imagenet-200/train", "tin/train"),
                                  "test": ("tiny-imagenet-200/val", "tin/val", "tin")},
                 "http://cs231n.stanford.edu/tiny-imagenet-200.zip", "Tiny ImageNet, 64x64 RGB (val used as test)",
                 aliases=("tin",), display_name="Tiny ImageNet")
