"""Finished figures kept by what drew them, so that a rerun copies them instead of drawing again.

A figure is a module-level plotting function of :mod:`ood_bench.reporting.plots` called with
data (score arrays, points), one destination ``path`` (``.png``, with its ``.pdf`` sibling) and
keyword options (title, ...). Its files depend on exactly: the function, its arguments other than
the destination folder, the plotting code, and matplotlib's version (PNGs and PDFs are written
without dates, see :mod:`~ood_bench.reporting.plots`). :class:`FigureCache` keys a call by a
SHA-256 of those and keeps its two files under ``<cache>/figures/<key>.png|.pdf``; a rerun with the
same scores gets byte-identical files, copied. The files are only ever copied, never parsed.
"""
from __future__ import annotations

import hashlib
import pickle
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from ood_bench.utils import atomic

SUFFIXES = (".png", ".pdf")


@lru_cache(maxsize=1)
def _code_digest() -> bytes:
    """The plotting code and matplotlib's version: a change to either draws every figure anew."""
    import matplotlib

    from ood_bench.reporting import plots

    return hashlib.sha256(Path(plots.__file__).read_bytes() + matplotlib.__version__.encode()).digest()


def destination(args: tuple, kwargs: dict[str, Any]) -> Path | None:
    """The one :class:`~pathlib.Path` among a plotting call's arguments (its PNG), if exactly one."""
    paths = [a for a in (*args, *kwargs.values()) if isinstance(a, Path)]
    return paths[0] if len(paths) == 1 else None


class FigureCache:
    """Figures by key under ``root`` (``None``: a cache that never holds anything)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def key(self, fn: Callable[..., Path], args: tuple, kwargs: dict[str, Any]) -> str | None:
        """The key of ``fn(*args, **kwargs)``; ``None`` when it cannot be cached (no cache, no
        single destination path, or arguments that cannot be serialised for hashing)."""
        dest = destination(args, kwargs)
        if self.root is None or dest is None:
            return None
        # the destination's folder is not part of what is drawn (a rerun writes a staging folder)
        named = lambda v: v.name if v is dest else v  # noqa: E731
        try:
            # serialised for hashing only: nothing here is ever unpickled
            payload = pickle.dumps((fn.__module__, fn.__qualname__, [named(a) for a in args],
                                    sorted((k, named(v)) for k, v in kwargs.items())), protocol=4)
        except Exception:
            return None
        return hashlib.sha256(_code_digest() + payload).hexdigest()[:32]

    def fetch(self, key: str | None, dest: Path) -> bool:
        """Copy the cached files of ``key`` to ``dest`` (and its ``.pdf``); whether they were there."""
        if key is None or self.root is None:
            return False
        cached = [self.root / f"{key}{s}" for s in SUFFIXES]
        if not all(f.is_file() for f in cached):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        for src, suffix in zip(cached, SUFFIXES):
            atomic.write_with(dest.with_suffix(suffix), lambda p, src=src: shutil.copyfile(src, p))
        return True

    def store(self, key: str | None, dest: Path) -> None:
        """Keep the files a plotting call just wrote at ``dest`` (and its ``.pdf``) under ``key``."""
        if key is None or self.root is None:
            return
        files = [dest.with_suffix(s) for s in SUFFIXES]
        if not all(f.is_file() for f in files):
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for src, suffix in zip(files, SUFFIXES):
            atomic.write_with(self.root / f"{key}{suffix}", lambda p, src=src: shutil.copyfile(src, p))
