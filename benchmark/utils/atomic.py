"""Atomic file writes: write to a temporary file in the same folder, then rename.

A killed run never leaves a truncated table, score file or checkpoint behind: readers see the
old complete file or the new complete file.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; results should get the permissions a plain open() would give
FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: Path | str, obj: Any) -> Path:
    """``obj`` as indented JSON (non-JSON values via ``str``)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_bytes(path: Path | str, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_with(path: Path | str, writer: Callable[[Path], Any]) -> Path:
    """``writer(tmp_path)`` writes the file (``torch.save``, ``savefig``, ``to_csv``, …)."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``);
    ``False`` where the OS or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def replace_dir(new: Path, path: Path) -> None:
    """Put folder ``new`` at ``path``, replacing the folder there.

    A reader of ``path`` always finds a complete folder, old or new: the two are swapped in one
    atomic rename-exchange, and the old one (now at ``new``) is deleted afterwards. Where the
    exchange is not available (not Linux, some network file systems) the old folder is renamed
    aside and the new one renamed in: two renames, microseconds apart, the only moment with no
    folder; the old one is deleted only once the new one is in place."""
    if not path.exists():
        os.replace(new, path)
        return
    if _exchange(new, path):
        shutil.rmtree(new)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
    os.replace(path, aside / "old")
    os.replace(new, path)
    shutil.rmtree(aside)


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces the folder ``path`` as a whole
    (see :func:`replace_dir`: there is never a moment without a complete folder on Linux)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
