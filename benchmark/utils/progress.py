"""Progress bars and log lines (stderr), so stdout keeps only the results."""
from __future__ import annotations

import logging
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

from ood_bench.utils.distributed import is_main
from ood_bench.utils.logs import get_logger

T = TypeVar("T")
_ENABLED = True


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


def log(msg: str, level: int = logging.INFO) -> None:
    """One log line through the ``ood_bench`` logger (:mod:`ood_bench.utils.logs`); only rank 0
    of a multi-process run logs (errors still surface on every rank as exceptions)."""
    if is_main():
        get_logger().log(level, msg)
