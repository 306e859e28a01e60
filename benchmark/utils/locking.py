"""Inter-process file locks, so runs sharing a cache folder coordinate instead of racing.

:func:`file_lock` takes an exclusive ``flock`` on a lock file (created if needed, never
deleted: deleting a lock file others may hold open would let two holders in). The lock is
released when the block ends or the process dies, so a killed run never leaves a stale lock.
POSIX only (Linux, macOS); elsewhere it degrades to no locking, with the atomic writes still
keeping every file whole.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None


@contextlib.contextmanager
def file_lock(path: Path | str, on_wait: Callable[[], None] | None = None,
              poll_s: float = 0.5) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block; ``on_wait()`` is called once if another
    process holds it (e.g. to log "waiting for …")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                while True:  # polling keeps Ctrl-C responsive (a blocking flock ignores it)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        time.sleep(poll_s)
        yield
    finally:
        if fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
