"""Embedded offline datasets: real images that ship inside scikit-learn and scikit-image.

Nothing is downloaded, so the default benchmark runs on a fresh machine. Every set is built
deterministically (fixed split rules and seeds); its content hash is its cache identity.

=========  ====================================================  =========  ==============
name       content                                               native     splits
=========  ====================================================  =========  ==============
digits     sklearn ``load_digits``: 1797 real handwritten digits  8×8 L      train 1248 / test 549
digits04   digits 0–4 only (the ID half of the near-OOD split)    8×8 L      train 625 / test 276
digits59   digits 5–9 only (the near-OOD half)                    8×8 L      train 623 / test 273
textures   crops of skimage's brick, grass and gravel photos      32×32 L    train 300 / test 300
faces      the 100 faces of skimage's ``lfw_subset`` (LFW)        25×25 L    test 100
photos     crops of 15 other real photos (skimage + sklearn)      32×32 RGB  train 300 / test 300
noise      Gaussian and uniform noise images, interleaved         8×8 L      train 300 / test 300
=========  ====================================================  =========  ==============

Splits are disjoint: digits split within each class by rank; crops for ``train`` come from the
left half of each photo and crops for ``test`` from the right half; noise uses a seed per split.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from ood_bench.utils.errors import ConfigError
from ood_bench.data.base import ArrayDataset
from ood_bench.data.registry import DataContext, register_dataset

PATCH = 32          # side of texture/photo crops after resizing
N_CROPS = 300       # crops per split
CROP_RANGE = (48, 128)  # side of the square cut from the photo before resizing to PATCH
TEXTURE_SOURCES = ("brick", "grass", "gravel")
PHOTO_SOURCES = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "camera", "coins", "moon", "page", "text", "cell",
)
SPLIT_SEED = {"train": 1, "test": 2}


# ---------------------------------------------------------------------------------- digits
@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (1797,8,8), labels, is_test mask) with a deterministic stratified split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    labels = d.target.astype(np.int64)
    # Within each class, every 10 consecutive samples give 3 to test: a 70/30 split
    # that does not depend on a library's shuffling.
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        is_test[idx[(np.arange(len(idx)) % 10) < 3]] = True
    return images, labels, is_test


def _digit_subset(name: str, split: str, classes: range) -> ArrayDataset:
    images, labels, is_test = _digits()
    keep = (is_test if split == "test" else ~is_test) & np.isin(labels, list(classes))
    return ArrayDataset(name, split, images[keep], labels[keep], num_classes=max(classes) + 1,
                        source="sklearn.load_digits")


@register_dataset("digits", kind="embedded", display_name="Digits", labelled=True,
                  description="sklearn handwritten digits 0-9, 8x8 gray (1248 train / 549 test)")
def digits(ctx: DataContext, split: str) -> ArrayDataset:
    return _digit_subset("digits", split, range(10))


@register_dataset("digits04", kind="embedded", display_name="Digits 0–4", labelled=True, aliases=("digits-0-4",),
                  description="digits 0-4 only: ID half of the near-OOD split (625 / 276)")
def digits04(ctx: DataContext, split: str) -> ArrayDataset:
    return _digit_subset("digits04", split, range(0, 5))


@register_dataset("digits59", kind="embedded", display_name="Digits 5–9", labelled=True, aliases=("digits-5-9",),
                  description="digits 5-9 only: near-OOD half of the split (623 / 273)")
def digits59(ctx: DataContext, split: str) -> ArrayDataset:
    return _digit_subset("digits59", split, range(5, 10))


# --------------------------------------------------------------------------- photo crops
def _load_photo(name: str) -> np.ndarray:
    """A real photo as uint8 (H,W) or (H,W,3)."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.dtype != np.uint8:
        img = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return img


def random_crops(img: np.ndarray, n: int, rng: np.random.Generator, half: str,
                 size: int = PATCH, crop_range: tuple[int, int] = CROP_RANGE) -> np.ndarray:
    """``n`` square crops of random side in ``crop_range`` from the ``half`` ("left"/"right")
    of ``img``, each resized (antialiased) to ``size``×``size``. Returns uint8 (n,size,size[,3])."""
    h, w = img.shape[:2]
    x_lo, x_hi = (0, w // 2) if half == "left" else (w // 2, w)
    out = []
    for _ in range(n):
        side = int(rng.integers(crop_range[0], min(crop_range[1], h, x_hi - x_lo) + 1))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(x_lo, x_hi - side + 1))
        crop = Image.fromarray(img[y:y + side, x:x + side])
        out.append(np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS)))
    return np.stack(out)


def _crop_set(name: str, split: str, sources: tuple[str, ...], rgb: bool) -> ArrayDataset:
    rng = np.random.default_rng(SPLIT_SEED[split])
    half = "left" if split == "train" else "right"
    per = -(-N_CROPS // len(sources))
    crops = []
    for src in sources:
        img = _load_photo(src)
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]
        if rgb and img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        elif not rgb and img.ndim == 3:
            img = np.asarray(Image.fromarray(img).convert("L"))
        crops.append(random_crops(img, per, rng, half))
    # Interleave sources, so that any contiguous stretch of images covers all photos.
    stacked = np.stack(crops, axis=1).reshape(-1, *crops[0].shape[1:])[:N_CROPS]
    return ArrayDataset(name, split, np.ascontiguousarray(stacked), source="+".join(sources))


@lru_cache(maxsize=4)
def _textures(split: str) -> ArrayDataset:
    return _crop_set("textures", split, TEXTURE_SOURCES, rgb=False)


@lru_cache(maxsize=4)
def _photos(split: str) -> ArrayDataset:
    return _crop_set("photos", split, PHOTO_SOURCES + ("china", "flower"), rgb=True)


@register_dataset("textures", kind="embedded", display_name="Textures", labelled=False,
                  description="crops of skimage brick/grass/gravel photos, 32x32 gray (300 / 300)")
def textures(ctx: DataContext, split: str) -> ArrayDataset:
    return _textures(split)


@register_dataset("photos", kind="embedded", display_name="Photos", labelled=False,
                  description="crops of 15 real photos (skimage, sklearn), 32x32 RGB (300 / 300)")
def photos(ctx: DataContext, split: str) -> ArrayDataset:
    return _photos(split)


# --------------------------------------------------------------------------------- faces
@register_dataset("faces", kind="embedded", display_name="Faces", labelled=False,
                  description="the 100 LFW faces of skimage lfw_subset, 25x25 gray (test only)")
def faces(ctx: DataContext, split: str) -> ArrayDataset:
    if split != "test":
        raise ConfigError("faces has only a test split (100 images): use it as an OOD set, not as ID")
    import skimage.data

    lfw = skimage.data.lfw_subset()[:100]  # the first 100 of lfw_subset are faces
    images = np.round(np.clip(lfw, 0, 1) * 255).astype(np.uint8)
    return ArrayDataset("faces", "test", images, source="skimage.lfw_subset[:100]")


# --------------------------------------------------------------------------------- noise
NOISE_SIZE = 8  # the digits' resolution: noise images are the ID set's size


@register_dataset("noise", kind="embedded", display_name="Noise", labelled=False,
                  description="Gaussian (mean .5, std .25) and uniform noise, 8x8 gray, interleaved (300 / 300)")
def noise(ctx: DataContext, split: str) -> ArrayDataset:
    rng = np.random.default_rng(100 + SPLIT_SEED[split])
    gauss = np.clip(rng.normal(0.5, 0.25, size=(N_CROPS // 2, NOISE_SIZE, NOISE_SIZE)), 0, 1)
    unif = rng.uniform(0, 1, size=(N_CROPS // 2, NOISE_SIZE, NOISE_SIZE))
    both = np.stack([gauss, unif], axis=1).reshape(-1, NOISE_SIZE, NOISE_SIZE)
    return ArrayDataset("noise", split, np.round(both * 255).astype(np.uint8),
                        source="gaussian+uniform")
