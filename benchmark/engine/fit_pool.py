"""Independent fits side by side: a few worker processes, each training at the training thread count.

On a CPU, training runs at :data:`~ood_bench.methods.training.TRAIN_THREADS` (one) intra-op
thread, so that it is bit-exact; a serial run therefore leaves every other core idle through
every fit. :func:`prefit` fits a run's (method, seed) models before the runner's serial loop, in
up to ``fit_workers`` spawned processes. Each worker goes through the runner's own fit path —
artifacts built or loaded under the cache's file locks, the method fitted with seeded RNGs at the
training thread count, everything saved atomically — so the serial loop afterwards finds every
model in the cache, loads it and scores it. A model loaded from the cache scores exactly as the
one held in memory after its training (a cached rerun reproduces a run's scores bit for bit), so
a run with fit workers reports the scores of a serial run; tests compare the two.

Models and artifacts the workers write are this run's own (:meth:`Cache.admit`): the run log,
``artifacts.csv`` and the cost table call them trained, not loaded, and ``--no-cache`` still uses
them. A job starts only when no running job is building one of its artifacts (it would wait on
that lock), jobs that build more new artifacts first, in run order otherwise.

Workers are used on CPUs only (``fit_workers: auto``): on a GPU one process already keeps the
device busy, and under ``torchrun`` every rank trains data-parallel with the others.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import multiprocessing
import os
import pickle
import queue
import sys
from pathlib import Path
from typing import Any, Callable

from ood_bench.engine.cache import Cache
from ood_bench.engine.config import RunConfig
from ood_bench.engine.runner import FitPlan, Runner, prepare
from ood_bench.methods.artifacts import ARTIFACTS
from ood_bench.methods.base import MethodConfig, OODMethod
from ood_bench.methods.registry import METHODS
from ood_bench.utils import distributed as dist
from ood_bench.utils import logs
from ood_bench.utils import progress
from ood_bench.utils.errors import ConfigError
from ood_bench.utils.progress import log

AUTO_MAX = 8  # `auto` never starts more workers than this (each holds its own copy of the data)

Job = tuple[str, type[OODMethod], MethodConfig, int]  # (method key, class, config, seed)


def fit_workers(setting: int | str, device: Any, jobs: int) -> int:
    """How many worker processes to fit ``jobs`` models with: ``setting`` (``"auto"``: one per
    usable core on a CPU, up to :data:`AUTO_MAX`; 1 on other devices), never more than ``jobs``;
    1 (no workers) under ``torchrun``."""
    if dist.active():
        return 1
    if setting == "auto":
        n = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                AUTO_MAX) if device.type == "cpu" else 1
    elif isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        n = setting
    else:
        raise ConfigError(f"--fit-workers {setting}: give a positive number or auto")
    return max(1, min(n, jobs))


def schedule(plans: list[FitPlan], built: set[tuple[str, str]],
             building: set[tuple[str, str]]) -> FitPlan | None:
    """The next plan to start: none of its artifacts being built by a running job (it would only
    wait for that job), the most artifacts not built yet first, the earliest on ties."""
    ready = [p for p in plans if not (p.artifacts & building)]
    return max(ready, key=lambda p: len(p.artifacts - built), default=None)


def prefit(runner: Runner, jobs: list[Job], init: Callable[[], Any] | None = None) -> None:
    """Fit the models of ``jobs`` that are not cached yet in worker processes (see the module
    docstring), leaving them in ``runner.cache`` as this run's own; nothing when the run's
    ``fit_workers`` comes to 1 or fewer than two models need fitting. ``init`` (picklable, e.g.
    a ``functools.partial`` of the plugin loader) runs first in each worker, so that it knows
    what this process registered. A worker's error stops the others and is raised here, as the
    serial run would raise it."""
    cfg = runner.prep.cfg
    if fit_workers(cfg.fit_workers, runner.prep.device, len(jobs)) < 2:
        return  # a GPU, torchrun, --fit-workers 1 or one job: no need to plan anything
    plans: dict[tuple[str, str], tuple[FitPlan, Job]] = {}
    for job in jobs:
        key, cls, mcfg, seed = job
        plan = runner.plan_fit(key, cls, mcfg, seed)
        if not plan.cached:
            plans.setdefault((key, plan.fit_key), (plan, job))  # sweep points sharing one model: one job
    todo = [p for p, _ in plans.values()]
    n = fit_workers(cfg.fit_workers, runner.prep.device, len(todo))
    if n < 2:
        return
    # a worker imports the modules defining the methods and artifacts (tests and plugins register
    # their own); one defined in a script (``__main__``) cannot be imported there: fit serially
    modules = sorted({job[1].__module__ for _, job in plans.values()}
                     | {ARTIFACTS.get(kind).__module__ for p in todo for kind, _ in p.artifacts})
    if "__main__" in modules:
        log("fitting serially: a method or artifact is defined in __main__, which fit workers cannot import",
            level=logging.DEBUG)
        return
    cache = runner.cache
    built = {a for p in todo for a in p.artifacts if cache.has_artifact(*a)}
    log(f"fitting {len(todo)} models in {n} worker processes ({', '.join(p.method for p in todo)}); "
        f"each trains as a serial run does, so the scores do not change")
    ctx = multiprocessing.get_context("spawn")  # never fork a process that has started torch's threads
    tasks, results = ctx.Queue(), ctx.Queue()
    # plain (non-daemonic) processes: a fit may start DataLoader workers of its own
    args = (cfg, logs.settings(), multiprocessing.get_start_method(), init, modules, tasks, results)
    procs = [ctx.Process(target=_worker, args=args, name=f"fit-worker-{i}") for i in range(n)]
    for proc in procs:
        proc.start()
    try:
        building: set[tuple[str, str]] = set()
        running: dict[int, FitPlan] = {}
        while todo or running:
            while len(running) < n and (plan := schedule(todo, built, building)) is not None:
                todo.remove(plan)
                running[id(plan)] = plan
                building |= plan.artifacts - built
                key, _, mcfg, seed = plans[(plan.method, plan.fit_key)][1]
                tasks.put((id(plan), key, mcfg, seed, sorted(map(str, cache.own))))
            ident, folders, error = _next_result(results, procs)
            if error is not None:
                raise error
            plan = running.pop(ident)
            building -= plan.artifacts
            built |= plan.artifacts
            for folder in folders:
                cache.admit(folder)
        for _ in procs:
            tasks.put(None)
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:  # after an error or Ctrl-C: stop the other fits (their saves are atomic)
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


def _worker(cfg: RunConfig, log_settings: dict, start_method: str, init: Callable[[], Any] | None,
            modules: list[str], tasks: Any, results: Any) -> None:
    """A worker's life: set up once, then fit the jobs ``tasks`` brings until it brings ``None``."""
    # a spawned child's default is spawn; DataLoader workers start as the parent's do (fork on
    # Linux: ~0.1 s, where spawning them re-imports torch, ~8 s per loader)
    multiprocessing.set_start_method(start_method, force=True)
    _init_worker(cfg, log_settings, init, modules)
    while (task := tasks.get()) is not None:
        ident, *job = task
        try:
            results.put((ident, _fit_job(*job), None))
        except BaseException as e:  # sent to the parent, which raises it as a serial run would
            try:
                pickle.dumps(e)
            except Exception:
                e = RuntimeError(f"{type(e).__name__}: {e}")
            results.put((ident, None, e))
            if not isinstance(e, Exception):
                raise


def _fit_job(key: str, mcfg: MethodConfig, seed: int, own: list[str]) -> list[str]:
    """Fit (or load) method ``key`` with ``mcfg`` for ``seed`` through the runner's fit path;
    ``own``: folders this run's workers wrote so far. Returns the folders this job wrote."""
    global _RUNNER
    if _RUNNER is None:  # one prepared run per worker: its artifact memo serves its later jobs
        _RUNNER = Runner(prepare(_CFG), Cache(_CFG.cache_dir, _CFG.use_cache))
    for folder in own:
        _RUNNER.cache.admit(folder)
    _, fit_key, uses, (_, _, cached, _) = _RUNNER.fitted(key, METHODS.get(key), mcfg, seed)
    wrote = [u.folder for u in uses if u.status == "trained"]
    if not cached:
        wrote.append(str(_RUNNER.cache.model_dir(key, fit_key)))
    return [str(Path(f)) for f in wrote]
