"""Progress bars and log lines (stderr), so stdout keeps only the results."""
from __future__ import annotations

import sys
import time
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

from ood_bench.utils.distributed import is_main

T = TypeVar("T")
_ENABLED = True
_T0 = time.perf_counter()


def set_enabled(enabled: bool) -> None:
    """Turn progress bars on/off process-wide (``--quiet``, tests)."""
    global _ENABLED
    _ENABLED = enabled


def progress(it: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> tqdm:
    """A tqdm bar on stderr; off with ``--quiet`` and when stderr is not a terminal (logs, CI),
    where the log lines of :func:`log` say what finished and how fast. Only rank 0 of a
    multi-process run shows bars."""
    return tqdm(it, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False,
                dynamic_ncols=True, disable=None if _ENABLED and is_main() else True, mininterval=0.5)


def log(msg: str) -> None:
    """A timestamped line on stderr; only rank 0 of a multi-process run logs (errors still
    surface on every rank as exceptions)."""
    if not is_main():
        return
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)
