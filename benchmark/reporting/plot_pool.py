"""Drawing a run's figures in a worker process while the main process writes the tables.

Drawing and saving dozens of matplotlib figures (PNG + PDF each) is CPU-bound Python. Worker
processes (:data:`PROCESSES`: one on two cores) start drawing them as soon as they are
submitted, beside the bootstrap and the tables; when the main process then asks for a figure it
draws queued ones itself until that figure is done, so on two cores both draw, and on a busy
machine nothing waits for a slow worker.

The worker is a fresh interpreter running this module (``python -m
ood_bench.reporting.plot_pool``), fed pickled calls on its stdin by a thread of the main process
and answering on its stdout. Not ``multiprocessing``: its ``fork`` would copy the threads and locks
of a process that has torch loaded, and its ``spawn``/``forkserver`` re-import the main script in
every worker, which re-runs a user's script that calls ``ood_bench.run(out=...)`` without an
``if __name__ == "__main__"`` guard. A figure is drawn by the same function into the same file
whichever process draws it, so the files do not depend on the worker; a worker that cannot start
or dies costs time, not figures: what it did not draw is drawn in the main process.
"""
from __future__ import annotations

import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ood_bench.reporting.figure_cache import FigureCache, destination

# workers besides the main process, which draws too: one on two cores, at most three
PROCESSES = max(1, min(3, len(os.sched_getaffinity(0)) - 1)) if hasattr(os, "sched_getaffinity") else 1
# below this many figures, drawing them all in the main process is quicker than starting a
# worker (it imports matplotlib and scikit-learn, ≈2 s of CPU)
MIN_FIGURES = 12

_Job = tuple[Future, Callable[..., Path], tuple, dict]


class NotDrawn(RuntimeError):
    """The worker did not draw a figure (no worker, it died, the call could not be passed to it,
    or drawing failed there): the main process draws it instead."""


def _run_here(job: _Job) -> None:
    future, fn, args, kwargs = job
    if future.set_running_or_notify_cancel():
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # raised again where the figure is asked for
            future.set_exception(e)


class Pending:
    """A submitted figure: :meth:`result` returns what the plotting function returned (its PNG
    path), drawing queued figures in this process while it waits; an error drawing it is raised
    here. A figure drawn now is kept in the pool's figure cache under ``key``."""

    def __init__(self, pool: PlotPool, job: _Job, key: str | None = None):
        self._pool, self._job, self._key = pool, job, key

    def result(self) -> Path:
        future, fn, args, kwargs = self._job
        self._pool._help(future)
        try:
            path = future.result()
        except NotDrawn:
            path = fn(*args, **kwargs)
        if self._key is not None:
            self._pool.cache.store(self._key, path)
            self._key = None
        return path


class PlotPool:
    """Submit figures now (:meth:`submit`), collect their paths later (``Pending.result()``).

    ``expected``: how many figures will be submitted; below :data:`MIN_FIGURES` (or with
    ``processes=0``) no worker starts and the main process draws every figure, in submission
    order, when results are asked for. Use as a context manager: leaving it normally lets the
    worker finish what was submitted; leaving it on an exception drops the queued figures and
    stops the workers.
    """

    def __init__(self, expected: int, processes: int = PROCESSES, cache: FigureCache | None = None):
        self.cache = cache or FigureCache(None)
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._procs: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []
        if expected >= MIN_FIGURES:
            for _ in range(processes):
                t = threading.Thread(target=self._serve, name="plot-worker", daemon=True)
                t.start()
                self._threads.append(t)

    def submit(self, fn: Callable[..., Path], *args: Any, **kwargs: Any) -> Pending:
        """Draw ``fn(*args, **kwargs)``: a module-level plotting function, picklable arguments
        (one of them the destination ``Path``). A figure the cache holds is copied, not drawn."""
        job = (Future(), fn, args, kwargs)
        key = self.cache.key(fn, args, kwargs)
        if self.cache.fetch(key, destination(args, kwargs)):
            job[0].set_result(destination(args, kwargs))
            return Pending(self, job)
        self._jobs.put(job)
        return Pending(self, job, key)

    def _help(self, future: Future) -> None:
        """Draw queued figures here until ``future`` is done or the queue is empty."""
        while not future.done():
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is None:  # a worker's stop signal (only after every result was asked for)
                self._jobs.put(None)
                return
            _run_here(job)

    def _serve(self) -> None:
        """Thread body: start one worker, pass it jobs until the ``None`` sentinel. Every job's
        future ends done: with the worker's answer, or :class:`NotDrawn`."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # import what we import
        try:
            proc: subprocess.Popen | None = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                                             stdout=subprocess.PIPE, env=env)
            self._procs.append(proc)
        except OSError:
            proc = None
        while (job := self._jobs.get()) is not None:
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                request = pickle.dumps((fn, args, kwargs))
            except Exception as e:  # not picklable: the main process draws it
                future.set_exception(NotDrawn(f"cannot pass the figure to the worker: {e}"))
                continue
            try:
                if proc is None:
                    raise NotDrawn("no plot worker")
                proc.stdin.write(request)
                proc.stdin.flush()
                status, value = pickle.load(proc.stdout)
            except Exception as e:  # the worker is gone (or out of step): its remaining jobs fail over
                if proc is not None:
                    proc.kill()
                proc = None
                future.set_exception(e if isinstance(e, NotDrawn) else NotDrawn(f"plot worker lost: {e!r}"))
                continue
            if status == "ok":
                future.set_result(value)
            else:  # drawing failed there: drawn again here, where the error is raised with its traceback
                future.set_exception(NotDrawn(f"failed in the plot worker: {value}"))
        if proc is not None:
            proc.stdin.close()
            proc.wait()

    def __enter__(self) -> PlotPool:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is not None:  # the run failed: queued figures are not wanted
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
            for proc in self._procs:
                proc.kill()
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()


def _worker(inp: BinaryIO, out: BinaryIO) -> None:
    """Run pickled ``(fn, args, kwargs)`` calls from ``inp``; answer ``("ok", result)`` or
    ``("failed", "Type: message")`` on ``out``; stop at the end of the input."""
    import ood_bench.reporting.plots  # noqa: F401  (imported before the first call arrives)

    while True:
        try:
            fn, args, kwargs = pickle.load(inp)
        except EOFError:
            return
        try:
            answer = pickle.dumps(("ok", fn(*args, **kwargs)))
        except Exception as e:
            answer = pickle.dumps(("failed", f"{type(e).__name__}: {e}"))
        out.write(answer)
        out.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle; it stops us
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr, not into the protocol
    sys.stdout = sys.stderr
    _worker(sys.stdin.buffer, protocol)
