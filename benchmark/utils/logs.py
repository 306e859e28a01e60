"""Log lines through :mod:`logging` (logger ``ood_bench``), and streams that survive a closed pipe.

The CLI sets the level (``--quiet``: warnings only, ``-v``: debug) and an optional log file
(:func:`configure`). Used as a library, ``ood_bench`` logs to stderr at INFO until the
application configures the ``ood_bench`` logger or the root logger itself.
"""
from __future__ import annotations

import errno
import logging
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from ood_bench.utils.errors import UserError

LOGGER = logging.getLogger("ood_bench")
_T0 = time.time()


class _Elapsed(logging.Formatter):
    """``[   12.3s] message`` (seconds since import); warnings and errors say so."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            msg = f"{record.levelname.lower()}: {msg}"
        return f"[{record.created - _T0:7.1f}s] {msg}"


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at each write (the CLI's :class:`SafeStream`, pytest's capture)."""

    def write(self, s: str) -> int:
        return sys.stderr.write(s)

    def flush(self) -> None:
        sys.stderr.flush()


def _stderr_handler() -> logging.Handler:
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(_Elapsed())
    return handler


def settings() -> dict:
    """This process's logging set-up as plain data, for :func:`adopt` in a child process: its
    console level, log file (or ``None``) and time origin, so a child's lines read as the parent's."""
    console = next((h for h in LOGGER.handlers if not isinstance(h, logging.FileHandler)), None)
    files = [h.baseFilename for h in LOGGER.handlers if isinstance(h, logging.FileHandler)]
    return {"level": console.level if console is not None else logging.INFO,
            "log_file": files[0] if files else None, "t0": _T0}


def adopt(parent: dict) -> None:
    """Log as the parent process whose :func:`settings` these are (same level, same file, same clock)."""
    global _T0
    configure(parent["level"], parent["log_file"])
    _T0 = parent["t0"]


def configure(level: int = logging.INFO, log_file: str | Path | None = None) -> None:
    """Log at ``level`` to stderr, and everything (DEBUG up) to ``log_file`` when given;
    Python warnings are logged too. Replaces handlers an earlier call installed."""
    for h in list(LOGGER.handlers):
        LOGGER.removeHandler(h)
        h.close()
    console = _stderr_handler()
    console.setLevel(level)
    LOGGER.addHandler(console)
    file_level = level
    if log_file is not None:
        if Path(log_file).is_dir():
            raise UserError(f"--log-file {log_file} is a folder; give a file path, e.g. {Path(log_file) / 'run.log'}")
        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as e:
            raise UserError(f"--log-file {log_file} cannot be written ({e.strerror or type(e).__name__}); "
                            f"give a file path you can write to") from None
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        fh.setLevel(logging.DEBUG)
        LOGGER.addHandler(fh)
        file_level = logging.DEBUG
    LOGGER.setLevel(min(level, file_level))
    LOGGER.propagate = False
    logging.captureWarnings(True)
    warn_logger = logging.getLogger("py.warnings")
    for h in list(warn_logger.handlers):
        warn_logger.removeHandler(h)
    for h in LOGGER.handlers:
        warn_logger.addHandler(h)
    warn_logger.propagate = False


def get_logger() -> logging.Logger:
    """The ``ood_bench`` logger, with a default stderr handler at INFO when nobody configured
    logging (library use), so run progress stays visible as it was before logging existed."""
    if not LOGGER.handlers and not logging.getLogger().handlers:
        LOGGER.addHandler(_stderr_handler())
        LOGGER.setLevel(logging.INFO)
        LOGGER.propagate = False
    return LOGGER


class SafeStream:
    """A text stream that stops writing, silently, once its reader has gone (``| head``):
    the first ``BrokenPipeError`` points the file descriptor at /dev/null, so neither later
    writes nor the interpreter's flush at exit fail, and a run keeps going to its end."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def _guard(self, fn, *args):
        if self.broken:
            return None
        try:
            return fn(*args)
        except BrokenPipeError:
            self._to_devnull()
        except OSError as e:
            if e.errno != errno.EPIPE:
                raise
            self._to_devnull()
        return None

    def _to_devnull(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # not a real file (pytest capture)
            pass

    def write(self, s: str) -> int:
        self._guard(self._stream.write, s)
        return len(s)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
