"""Independent jobs side by side: worker processes that fit (and, optionally, score) a run's methods.

On a CPU, training runs at :data:`~ood_bench.methods.training.TRAIN_THREADS` (one) intra-op
thread, so that it is bit-exact; a serial run therefore leaves every other core idle through
every fit. :func:`prefit` runs a run's (method, seed) jobs before the runner's serial loop, in up
to ``fit_workers`` spawned processes. Each worker goes through the runner's own path —
artifacts built or loaded under the cache's file locks, the method fitted with seeded RNGs at the
training thread count, everything saved atomically — so the serial loop afterwards finds every
model in the cache. A cached model scores exactly as the one held in memory after its training,
so a run with workers reports the scores of a serial run; tests compare the two.

By default the workers only fit, and the runner scores each set alone, so that each method's
img/s is its own. With ``score_in_workers`` (``--score-in-workers``) they also score every set,
each set its own task once its model is fitted, at the parent's intra-op thread count (a
reduction's last bits depend on how many threads share it), drawing the example pictures; the
serial loop then reads every result from the cache without loading a network. Faster where there
are many cores; img/s are then measured side by side (the manifest records ``score_workers``,
the leaderboards' provenance line says so).

What the workers write is this run's own (:meth:`Cache.admit`): the run log, ``artifacts.csv``
and the cost table call it trained and scored in this run, not loaded, and ``--no-cache`` still
uses it. A job starts only when no running job is building an artifact or model it needs (it
would wait on that lock), jobs that build more new artifacts first, in run order otherwise.

Workers are used on CPUs only (``fit_workers: auto``): on a GPU one process already keeps the
device busy, and under ``torchrun`` every rank trains data-parallel with the others.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import itertools
import json
import logging
import multiprocessing
import os
import pickle
import queue
import sys
from typing import Any, Callable, Iterator

import torch

from ood_bench.engine.cache import Cache
from ood_bench.engine.config import RunConfig, fit_workers_setting
from ood_bench.engine.runner import FitPlan, Runner, prepare
from ood_bench.methods.artifacts import ARTIFACTS
from ood_bench.methods.base import MethodConfig, OODMethod
from ood_bench.methods.registry import METHODS
from ood_bench.utils import distributed as dist
from ood_bench.utils import logs
from ood_bench.utils import progress
from ood_bench.utils.progress import log

AUTO_MAX = 8  # `auto` never starts more workers than this (each holds its own copy of the data)

Job = tuple[str, type[OODMethod], MethodConfig, int]  # (method key, class, config, seed)


def fit_workers(setting: int | str, device: Any, jobs: int) -> int:
    """How many worker processes to fit ``jobs`` models with: ``setting`` (``"auto"``: one per
    usable core on a CPU, up to :data:`AUTO_MAX`; 1 on other devices), never more than ``jobs``;
    1 (no workers) under ``torchrun``."""
    if dist.active():
        return 1
    n = fit_workers_setting(setting)
    if n == "auto":
        n = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                AUTO_MAX) if device.type == "cpu" else 1
    return max(1, min(n, jobs))


def schedule(plans: list[FitPlan], built: set[tuple[str, str]],
             building: set[tuple[str, str]]) -> FitPlan | None:
    """The next plan to start: nothing it may build being built by a running job (it would only
    wait for that job), the most new artifacts first, the earliest on ties."""
    ready = [p for p in plans if not (p.builds() & building)]
    return max(ready, key=lambda p: len(p.artifacts - built), default=None)


def prefit(runner: Runner, jobs: list[Job], init: Callable[[], Any] | None = None) -> int:
    """Fit the models of ``jobs`` not cached yet in worker processes (see the module docstring)
    — with ``score_in_workers`` in the run's config, also score every set not cached yet —
    leaving models, scores and pictures in ``runner.cache`` as this run's own; nothing when the
    run's ``fit_workers`` comes to 1 or fewer than two jobs have work.
    ``init`` (picklable, e.g. a ``functools.partial`` of the plugin loader) runs first in each
    worker, so that it knows what this process registered. A worker's error stops the others
    and is raised here, as the serial run would raise it. Returns how many workers ran (0: none)."""
    cfg = runner.prep.cfg
    if fit_workers(cfg.fit_workers, runner.prep.device, len(jobs)) < 2:
        return 0  # a GPU, torchrun, --fit-workers 1 or one job: no need to plan anything
    scoring = cfg.score_in_workers
    plans: dict[tuple, tuple[FitPlan, Job]] = {}
    for job in jobs:
        plan = runner.plan_fit(*job)
        if not plan.cached or (scoring and plan.unscored):
            # fitting only: sweep points sharing one model are one job
            plans.setdefault((plan.method, plan.fit_key, id(plan) if scoring else None), (plan, job))
    todo = [p for p, _ in plans.values()]
    job_of = {id(p): job for p, job in plans.values()}
    n = fit_workers(cfg.fit_workers, runner.prep.device, len(todo))
    if n < 2:
        return 0
    # a worker imports the modules defining the methods and artifacts (tests and plugins register
    # their own); one defined in a script (``__main__``) cannot be imported there: run serially
    modules = sorted({job[1].__module__ for _, job in plans.values()}
                     | {ARTIFACTS.get(kind).__module__ for p in todo for kind, _ in p.artifacts})
    if "__main__" in modules:
        log("fitting serially: a method or artifact is defined in __main__, which fit workers cannot import",
            level=logging.DEBUG)
        return 0
    cache = runner.cache
    built = {a for p in todo for a in p.artifacts if cache.has_artifact(*a)}
    what = "fitting and scoring" if scoring else "fitting"
    log(f"{what} {len(todo)} {'methods' if scoring else 'models'} in {n} worker processes "
        f"({', '.join(p.method for p in todo)}); each trains as a serial run does"
        + (", then scores one set per task at this process's thread count" if scoring else "")
        + ", so the scores do not change")
    ctx = multiprocessing.get_context("spawn")  # never fork a process that has started torch's threads
    tasks, results = ctx.Queue(), ctx.Queue()
    # plain (non-daemonic) processes: a fit may start DataLoader workers of its own
    args = (cfg, runner.examples, torch.get_num_threads(), logs.settings(), multiprocessing.get_start_method(), init,
            modules, tasks, results)
    procs = [ctx.Process(target=_worker, args=args, name=f"fit-worker-{i}") for i in range(n)]
    with _passive_waits():
        for proc in procs:
            proc.start()
    try:
        building: set[tuple[str, str]] = set()
        running: dict[int, tuple[FitPlan, str | None]] = {}  # task -> (plan, None: its fit, or a set)
        sets: list[tuple[FitPlan, str]] = []  # sets of fitted models, waiting to be scored
        idents = itertools.count()
        while todo or sets or running:
            while len(running) < n:
                # fits first (they unlock scoring and other fits), then sets to score
                if (plan := schedule(todo, built, building)) is not None:
                    todo.remove(plan)
                    building |= plan.builds() - built
                    task: tuple[FitPlan, str | None] = (plan, None)
                elif sets:
                    task = sets.pop(0)
                else:
                    break
                ident = next(idents)
                running[ident] = task
                key, _, mcfg, seed = job_of[id(task[0])]
                tasks.put((ident, key, mcfg, seed, task[1], sorted(map(str, cache.own))))
            done, paths, error = _next_result(results, procs)
            if error is not None:
                raise error
            plan, name = running.pop(done)
            if name is None:
                building -= plan.builds()
                built |= plan.builds()
                if scoring:
                    sets.extend((plan, s) for s in plan.unscored)
            for path in paths:
                cache.admit(path)
        for _ in procs:
            tasks.put(None)
        for proc in procs:
            proc.join()
        return n
    finally:
        for proc in procs:  # after an error or Ctrl-C: stop the other jobs (their saves are atomic)
            if proc.is_alive():
                proc.terminate()
            proc.join()


def _next_result(results: Any, procs: list) -> tuple[int, list[str] | None, BaseException | None]:
    """The next finished job from ``results``; an error if a worker died without reporting."""
    while True:
        try:
            return results.get(timeout=1.0)
        except queue.Empty:
            dead = [p for p in procs if not p.is_alive()]
            if dead:
                raise RuntimeError(f"{dead[0].name} stopped (exit code {dead[0].exitcode}) while fitting; "
                                   f"rerun with --fit-workers 1 to fit in this process and see why")


# ------------------------------------------------------------------------------ in a worker
_CFG: RunConfig | None = None
_RUNNER: Runner | None = None
_LAST: tuple[tuple, Any] | None = None  # (method key, seed, config) -> what Runner.fitted returned


def _init_worker(cfg: RunConfig, log_settings: dict, init: Callable[[], Any] | None, modules: list[str]) -> None:
    global _CFG
    logs.adopt(log_settings)
    progress.set_enabled(False)
    if init is not None:
        init()
    for module in modules:  # registers what the parent registered by import (spawn passes its sys.path)
        if module not in sys.modules:
            importlib.import_module(module)
    _CFG = dataclasses.replace(cfg, download=False)  # the parent fetched what was missing


def _worker(cfg: RunConfig, examples: bool, threads: int, log_settings: dict, start_method: str,
            init: Callable[[], Any] | None, modules: list[str], tasks: Any, results: Any) -> None:
    """A worker's life: set up once, then run the jobs ``tasks`` brings until it brings ``None``."""
    # a spawned child's default is spawn; DataLoader workers start as the parent's do (fork on
    # Linux: ~0.1 s, where spawning them re-imports torch, ~8 s per loader)
    multiprocessing.set_start_method(start_method, force=True)
    _init_worker(cfg, log_settings, init, modules)
    # scores as the parent would: the same intra-op threads (training runs at TRAIN_THREADS anyway)
    torch.set_num_threads(threads)
    while (task := tasks.get()) is not None:
        ident, *job = task
        try:
            results.put((ident, _run_job(examples, *job), None))
        except BaseException as e:  # sent to the parent, which raises it as a serial run would
            try:
                pickle.dumps(e)
            except Exception:
                e = RuntimeError(f"{type(e).__name__}: {e}")
            results.put((ident, None, e))
            if not isinstance(e, Exception):
                raise


def _run_job(examples: bool, key: str, mcfg: MethodConfig, seed: int, name: str | None,
             own: list[str]) -> list[str]:
    """Fit (or load) method ``key`` with ``mcfg`` for ``seed`` through the runner's own path and,
    when ``name`` is given, score that set; ``own``: what this run's workers wrote so far.
    Returns the paths (artifact and model folders, scores files, pictures) this task wrote."""
    global _RUNNER, _LAST
    if _RUNNER is None:  # one prepared run per worker: its artifact memo serves its later jobs
        _RUNNER = Runner(prepare(_CFG), Cache(_CFG.cache_dir, _CFG.use_cache), examples=examples)
    for path in own:
        _RUNNER.cache.admit(path)
    _RUNNER.cache.written.clear()
    ident = (key, seed, json.dumps(mcfg.to_dict(), sort_keys=True, default=str))
    if _LAST is None or _LAST[0] != ident:  # a worker scoring sets of one method loads it once
        # loading a model to score one of its sets: its fit was logged already (warnings still pass)
        with _only_warnings() if name is not None else contextlib.nullcontext():
            _LAST = (ident, _RUNNER.fitted(key, METHODS.get(key), mcfg, seed))
    method, fit_key, _, _ = _LAST[1]
    if name is not None:
        _RUNNER.score_sets(method, key, fit_key, [name])
    return [str(p) for p in _RUNNER.cache.written]


@contextlib.contextmanager
def _only_warnings() -> Iterator[None]:
    """Drop the ``ood_bench`` logger's lines below WARNING for the duration."""
    quiet = logging.Filter()
    quiet.filter = lambda record: record.levelno >= logging.WARNING  # type: ignore[method-assign]
    logger = logs.get_logger()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


@contextlib.contextmanager
def _passive_waits() -> Iterator[None]:
    """Processes started meanwhile let their idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``,
    unless the user set a policy). The workers together run more threads than there are cores (one
    training while another scores at the parent's thread count); OpenMP's default spinning at
    every barrier then burns the cores the others need: measured on 2 cores, two processes scoring
    at two threads each took 69 s spinning, 12 s passive (7.8 s for one alone). The arithmetic,
    and so every bit of the scores, is the same either way."""
    if "OMP_WAIT_POLICY" in os.environ:
        yield
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        yield
    finally:
        del os.environ["OMP_WAIT_POLICY"]
