"""Any folder of images as a dataset (nested or flat; png/jpg/…).

Labels: when every image sits below a first-level subfolder and there are at least two of them
(the ``ImageFolder`` layout), the subfolder names are the classes; otherwise the set is
unlabelled. Every file is fully decoded when the set is built, so an unreadable or truncated
image is reported by name before any work starts (or skipped with a warning under
``--skip-unreadable``).

High bit depths are scaled, not clipped: 16-bit gray (PIL modes ``I;16*`` and ``I``, which is
how 16-bit PNGs open) maps 0..65535 onto 0..255; float images (mode ``F``, e.g. float TIFFs)
are taken to hold intensities in [0, 1] (values outside are clipped) and map onto 0..255.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ood_bench.utils.errors import DatasetNotFoundError, UnreadableImageError
from ood_bench.data.base import ImageDataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def to_8bit(im: Image.Image) -> Image.Image:
    """``im`` as ``"L"`` (gray sources) or ``"RGB"``, high bit depths scaled (see module doc);
    PIL's own ``convert("L")`` clips 16-bit values at 255 and truncates floats."""
    if im.mode.startswith("I"):  # 16-bit (or 32-bit int holding 16-bit data)
        a = np.asarray(im, dtype=np.float64) / 257.0
    elif im.mode == "F":
        a = np.asarray(im, dtype=np.float64) * 255.0
    else:
        return im.convert("L" if im.mode in GRAY_MODES else "RGB")
    a = np.nan_to_num(a, nan=0.0)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")


def find_images(root: Path) -> list[Path]:
    """All image files below ``root``, sorted by relative path (the stable order)."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def open_image(path: Path) -> Image.Image:
    """Decode ``path`` fully as ``"L"`` (gray sources) or ``"RGB"``.

    Raises:
        UnreadableImageError: the file cannot be decoded.
    """
    try:
        with Image.open(path) as im:
            im.load()
            return to_8bit(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise UnreadableImageError(
            f"cannot read image {path}: {e}; fix or remove the file, or pass --skip-unreadable"
        ) from None


def _check_readable(path: Path) -> str | None:
    """``None`` when the file decodes completely, else the reason. A full decode, not
    ``verify()``: a truncated JPEG passes ``verify`` and fails only when its pixels are read."""
    try:
        with Image.open(path) as im:
            im.load()
        return None
    except Exception as e:  # PIL raises many types for broken files
        return f"{type(e).__name__}: {e}"


class FolderDataset(ImageDataset):
    """Images found recursively under ``root``; item ids are paths relative to ``root``."""

    def __init__(self, root: Path, split: str = "test", name: str | None = None,
                 skip_unreadable: bool = False, verify: bool = True) -> None:
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise DatasetNotFoundError(f"image folder {root} does not exist")
        files = find_images(root)
        if not files:
            raise DatasetNotFoundError(
                f"no images ({', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS[:4])}, …) found under {root}"
            )
        if verify:
            files = self._verified(files, skip_unreadable)
        rel = [p.relative_to(root) for p in files]
        classes = sorted({r.parts[0] for r in rel}) if all(len(r.parts) > 1 for r in rel) else []
        labelled = len(classes) >= 2
        super().__init__(name or str(root), split, len(classes) if labelled else None)
        self.root = root
        self.files = files
        self.rel = [r.as_posix() for r in rel]
        self.classes = classes if labelled else []
        index = {c: k for k, c in enumerate(self.classes)}
        self._labels = [index[r.parts[0]] for r in rel] if labelled else None

    @staticmethod
    def _verified(files: list[Path], skip_unreadable: bool) -> list[Path]:
        good = []
        for p in files:
            why = _check_readable(p)
            if why is None:
                good.append(p)
            elif skip_unreadable:
                warnings.warn(f"skipping unreadable image {p} ({why})", stacklevel=3)
            else:
                raise UnreadableImageError(
                    f"cannot read image {p} ({why}); fix or remove the file, or pass --skip-unreadable"
                )
        if not good:
            raise DatasetNotFoundError(f"no readable images among {len(files)} files")
        return good

    def __len__(self) -> int:
        return len(self.files)

    def load_image(self, i: int) -> Image.Image:
        return open_image(self.files[i])

    def label(self, i: int) -> int:
        return -1 if self._labels is None else self._labels[i]

    def item_id(self, i: int) -> str:
        return self.rel[i]

    def identity(self) -> dict[str, Any]:
        h = hashlib.sha1()
        for p, r in zip(self.files, self.rel):
            st = p.stat()
            h.update(f"{r}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"kind": "folder", "root": str(self.root), "files_sha1": h.hexdigest(),
                "classes": self.classes}
