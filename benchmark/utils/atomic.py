"""Atomic file writes: write to a temporary file in the same folder, then rename.

A killed run never leaves a truncated table, score file or checkpoint behind: readers see the
old complete file or the new complete file.

Integrity: a folder written with :func:`atomic_dir` records the SHA-256 of every file in it
(:data:`CHECKSUM_FILE`) before it is swapped in, and a file written with
``write_with(..., checksum=True)`` gets a ``<name>.sha256`` beside it; :func:`verify_dir` and
:func:`verify_file` compare them with what is on disk now, so a flipped bit is found on load.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
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


def write_with(path: Path | str, writer: Callable[[Path], Any], checksum: bool = False) -> Path:
    """``writer(tmp_path)`` writes the file (``torch.save``, ``savefig``, ``to_csv``, …);
    ``checksum``: also record its SHA-256 in ``<name>.sha256`` (see :func:`verify_file`)."""
    with atomic_path(path) as tmp:
        writer(tmp)
        digest = sha256_file(tmp) if checksum else None
    if digest is not None:
        write_text(sidecar(path), digest + "\n")
    return Path(path)


# ------------------------------------------------------------------------------ integrity
CHECKSUM_FILE = "checksums.json"  # in a folder written by atomic_dir: {relative path: sha256}


class ChecksumMismatch(ValueError):
    """A file's content no longer matches the SHA-256 recorded when it was written."""


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar(path: Path | str) -> Path:
    """Where ``write_with(..., checksum=True)`` records the SHA-256 of ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def verify_file(path: Path | str) -> bool:
    """``True`` when ``path`` matches its recorded SHA-256, ``False`` when none was recorded.

    Raises:
        ChecksumMismatch: the content changed since it was written (or the record is damaged)."""
    rec = sidecar(path)
    if not rec.is_file():
        return False
    if rec.read_text().strip() != sha256_file(path):
        raise ChecksumMismatch(f"{Path(path).name} does not match its SHA-256 recorded when it was written")
    return True


def _dir_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != CHECKSUM_FILE)


def write_checksums(folder: Path | str) -> Path:
    """Record the SHA-256 of every file under ``folder`` in ``folder/checksums.json``."""
    folder = Path(folder)
    sums = {p.relative_to(folder).as_posix(): sha256_file(p) for p in _dir_files(folder)}
    return write_json(folder / CHECKSUM_FILE, {"algorithm": "sha256", "files": sums})


def verify_dir(folder: Path | str) -> bool:
    """``True`` when every file under ``folder`` matches ``checksums.json`` (no file missing,
    none added), ``False`` when the folder has no record (written before records were kept).

    Raises:
        ChecksumMismatch: naming the first file that differs, is missing or is unexpected."""
    folder = Path(folder)
    rec = folder / CHECKSUM_FILE
    if not rec.is_file():
        return False
    try:
        sums = json.loads(rec.read_text())["files"]
        assert isinstance(sums, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise ChecksumMismatch(f"{CHECKSUM_FILE} is damaged") from None
    present = {p.relative_to(folder).as_posix() for p in _dir_files(folder)}
    for name in sorted(set(sums) | present):
        if name not in present:
            raise ChecksumMismatch(f"{name} is missing (it was written with the folder)")
        if name not in sums:
            raise ChecksumMismatch(f"{name} was not written with the folder")
        if sha256_file(folder / name) != sums[name]:
            raise ChecksumMismatch(f"{name} does not match its SHA-256 recorded when it was written")
    return True


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
def atomic_dir(path: Path | str, checksums: bool = True) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces the folder ``path`` as a whole
    (see :func:`replace_dir`: there is never a moment without a complete folder on Linux).
    ``checksums``: record every file's SHA-256 first (:func:`write_checksums`, :func:`verify_dir`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if checksums:
            write_checksums(tmp)
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
