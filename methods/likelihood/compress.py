"""Lossless compressed length of an 8-bit image, in bits (input complexity, Serrà et al. 2020).

L(x) = 8 × the bytes of the encoded file of the very ``uint8`` array the likelihood scores
(H × W × C; a channel-repeated grayscale image is compressed as the RGB array it is), no
metadata. Codecs that Pillow provides:

- ``png`` (default, the paper's): zlib at ``compress_level=9``;
- ``jpeg2000``: OpenJPEG, reversible 5/3 wavelet (lossless: no quality layers given);
- ``webp``: WebP lossless, ``quality=100``, ``method=6`` (slowest, smallest).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, features

from ood_bench.utils.errors import ConfigError

COMPRESSORS = ("png", "jpeg2000", "webp")
_FEATURE = {"jpeg2000": "jpg_2000", "webp": "webp"}


def check_compressor(name: str) -> None:
    """Raise :class:`ConfigError` for an unknown codec or one this Pillow build lacks."""
    if name not in COMPRESSORS:
        raise ConfigError(f"compressor must be one of {', '.join(COMPRESSORS)}, got {name!r}")
    feat = _FEATURE.get(name)
    if feat and not features.check(feat):
        raise ConfigError(f"this Pillow build has no {name} codec; use compressor=png or install Pillow with {name} support")


def _image(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"expected a uint8 (H, W, 1|3) array, got {arr.dtype} {arr.shape}")
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, "L" if arr.shape[2] == 1 else "RGB")


def encode(arr: np.ndarray, compressor: str = "png") -> bytes:
    """The encoded file of a ``uint8`` array ``(H, W, C)``, C ∈ {1, 3}."""
    check_compressor(compressor)
    buf = io.BytesIO()
    img = _image(arr)
    if compressor == "png":
        img.save(buf, format="PNG", compress_level=9)
    elif compressor == "jpeg2000":
        img.save(buf, format="JPEG2000", irreversible=False)
    else:
        img.save(buf, format="WEBP", lossless=True, quality=100, method=6, exact=True)
    return buf.getvalue()


def compressed_bits(arr: np.ndarray, compressor: str = "png") -> int:
    """L(x) in bits: 8 × the encoded file's bytes (a whole number, ≥ 0)."""
    return 8 * len(encode(arr, compressor))


def decode(data: bytes) -> np.ndarray:
    """An encoded file back to ``uint8`` ``(H, W, C)`` (for checking losslessness)."""
    img = Image.open(io.BytesIO(data))
    img.load()
    arr = np.asarray(img)
    return arr[:, :, None] if arr.ndim == 2 else arr
