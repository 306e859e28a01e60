"""The runner: methods × one ID set × OOD sets (× seeds), with caching and outputs.

For each seed and method: fit on the ID training split (or load the cached model), score the ID
test split **once**, score every OOD set, all through the method contract of
:class:`ood_bench.methods.base.OODMethod`. The runner never looks at a method's name. Everything is
validated — methods, options, datasets, label needs — before any work starts.

Under ``torchrun``/``srun`` every rank runs this same loop in step: each fits (data-parallel, see
:mod:`ood_bench.methods.training`) or loads the model, scores its shard of every set
(:mod:`ood_bench.engine.sharding`) and receives the gathered scores; only rank 0 writes the
cache (and takes the fit lock), while the other ranks follow rank 0's decisions.
"""
from __future__ import annotations

import logging
import contextlib
import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ood_bench.outcomes import DatasetScores, MethodResult
from ood_bench.utils import atomic
from ood_bench.utils import distributed as dist
from ood_bench.utils.atomic import write_json
from ood_bench.utils.naming import safe_name
from ood_bench.engine.cache import Cache, InvalidArtefact, digest
from ood_bench.engine.seeding import seed_everything
from ood_bench.engine.config import RunConfig, build_dataclass, check_run_bounds
from ood_bench.engine.process_group import setup as setup_device
from ood_bench.engine.inputs import check_distinct_sets, ood_labels
from ood_bench.engine.manifest import machine_info
from ood_bench.engine.sharding import score_sharded
from ood_bench.utils.device import (PeakMemory, configure_compile, numerics_key, set_fast_path, set_precision,
                                    synchronize)
from ood_bench.utils.errors import ConfigError, NonFiniteScoresError
from ood_bench.utils.locking import file_lock
from ood_bench.utils.progress import log
from ood_bench.methods.registry import METHODS
from ood_bench.data import DataContext, ImageDataset, load_dataset
from ood_bench.data.base import holdout_split
from ood_bench.engine.artifact_store import ArtifactStore, artifact_key, attach, requested
from ood_bench.methods.artifacts import ArtifactUse
from ood_bench.data.registry import looks_like_path
from ood_bench.methods.base import MethodConfig, OODMethod, RunContext
from ood_bench.methods.training import fixed_threads, resumed_seconds



@dataclass
class PreparedRun:
    """A validated run: resolved device, method configs and loaded datasets."""

    cfg: RunConfig
    device: Any
    methods: dict[str, tuple[type[OODMethod], MethodConfig]]
    id_train: ImageDataset | None
    id_test: ImageDataset | None
    oods: dict[str, ImageDataset]
    groups: dict[str, str]
    # seed -> (ID train minus the validation hold-out, the hold-out or None): see holdout_split;
    # a message instead where the fraction cannot split the set (an error only if a method needs it)
    splits: dict[int, tuple[ImageDataset, ImageDataset | None] | str] = field(default_factory=dict)


@dataclass(frozen=True)
class FitPlan:
    """One (method, seed) job of a run as the fit workers schedule it: the ``(kind, key)`` of
    every artifact it needs, its model's ``fit_key``, whether that model is cached already, and
    whether its scores (and example pictures) on every set are."""

    method: str
    seed: int
    fit_key: str
    artifacts: frozenset[tuple[str, str]]
    cached: bool
    unscored: tuple[str, ...] = ()  # the sets whose scores (or example picture) are not cached

    @property
    def scored(self) -> bool:
        """Whether the model and every set's scores and pictures are cached: nothing to compute."""
        return self.cached and not self.unscored

    def builds(self) -> frozenset[tuple[str, str]]:
        """What the job may build that another job could also need: its artifacts and, when not
        cached, its model (sweep points of one method share it)."""
        return self.artifacts | (frozenset() if self.cached else {("model", f"{self.method}/{self.fit_key}")})


def display_name(name: str) -> str:
    """Table name of a dataset given by registry name or by folder path."""
    return Path(name.rstrip("/")).name if looks_like_path(name) else name


def apply_budget(cls: type[OODMethod], key: str, mcfg: MethodConfig, steps: int | None,
                 reps: int | None) -> MethodConfig:
    """``cls.with_budget`` with an invalid result reported as a one-line :class:`ConfigError`."""
    if (steps is not None and steps <= 0) or (reps is not None and reps <= 0):
        raise ConfigError("a steps or reps budget (--steps, --reps, --timing-steps) must be a positive number")
    try:
        return cls.with_budget(mcfg, steps, reps)
    except ValueError as e:  # the budget made the config invalid
        raise ConfigError(f"{key}: {e}") from None


def method_config(cls: type[OODMethod], key: str, options: dict[str, Any], steps: int | None = None,
                  reps: int | None = None) -> MethodConfig:
    """The typed config of method ``key`` from ``options`` (checked), with the equal-compute
    budget applied and the method's preflight checks passed: what a run and
    ``ood_bench.create_method`` both build."""
    mcfg = apply_budget(cls, key, build_dataclass(cls.config_cls, options, key), steps, reps)
    cls.preflight(mcfg)
    return mcfg


def method_context(cls: type[OODMethod], device: Any, seed: int, batch_size: int | None, workers: int,
                   compile: str, work_dir: Path | None = None) -> RunContext:
    """The :class:`RunContext` a method gets, in a run or from ``ood_bench.create_method``: the
    batch size given, else the method's ``default_batch_size``."""
    return RunContext(device=device, seed=seed, batch_size=batch_size or cls.default_batch_size, workers=workers,
                      compile=compile, work_dir=work_dir)


def prepare_methods(cfg: RunConfig) -> PreparedRun:
    """Resolve the device and every method's typed config (budgets applied, preflight checks
    passed); datasets are not loaded (see :func:`prepare`)."""
    if not cfg.methods:
        raise ConfigError("no method given; use --method NAME (see `ood-bench list`)")
    check_run_bounds(cfg)
    device = setup_device(cfg.device)  # joins the process group under torchrun / srun
    if cfg.download:  # weights and data first, so the preflight checks below find them
        from ood_bench.engine.fetch import fetch_missing

        fetch_missing(cfg, log=log)
    set_precision(cfg.precision)
    set_fast_path(cfg.fast_path)
    configure_compile(cfg.compile, device, cfg.compile_backend)
    methods: dict[str, tuple[type[OODMethod], MethodConfig]] = {}
    for name in cfg.methods:
        key = METHODS.canonical(name)
        if key in methods:
            raise ConfigError(f"method {key} listed twice")
        cls = METHODS.get(key)
        opts = {**cfg.method_options.get(key, {}), **(cfg.method_options.get(name, {}) if name != key else {})}
        methods[key] = (cls, method_config(cls, key, opts, cfg.steps, cfg.reps))
    for name in cfg.method_options:
        METHODS.canonical(name)  # an option for an unknown method is a typo: say so
    return PreparedRun(cfg, device, methods, None, None, {}, {})


def prepare(cfg: RunConfig) -> PreparedRun:
    """Validate everything and load the datasets; raises a :class:`UserError` on bad input."""
    if not cfg.ood:
        raise ConfigError("no OOD set given; use --ood NAME_OR_FOLDER ...")
    prep = prepare_methods(cfg)
    ctx = DataContext(root=Path(cfg.data_root), download=cfg.download, skip_unreadable=cfg.skip_unreadable)
    id_ctx = dataclasses.replace(ctx, test_fraction=cfg.id_test_fraction)  # a train/-only ID folder
    id_sets = {split: load_dataset(cfg.id, split, id_ctx) for split in ("train", "test")}
    oods = {name: load_dataset(name, "test", ctx) for name in cfg.ood}
    check_distinct_sets(cfg.id, id_sets, oods, cfg.ood_groups)  # the ID set or one set twice, under any name
    prep.id_train = id_sets["train"].take(cfg.train_limit)
    prep.id_test = id_sets["test"].take(cfg.limit)
    for name, label in ood_labels(cfg.ood).items():
        prep.oods[label] = oods[name].take(cfg.limit)
        prep.groups[label] = cfg.ood_groups.get(name, "ood")
    for seed in cfg.seeds:
        try:
            prep.splits[seed] = holdout_split(prep.id_train, cfg.validation, seed)
        except ValueError as e:
            prep.splits[seed] = f"--validation {cfg.validation}: {e}; choose another fraction or a larger --train-limit"
    for key, (cls, _) in prep.methods.items():
        if cls.needs_validation and cfg.validation == 0:
            raise ConfigError(f"{key} calibrates on a validation hold-out, but --validation is 0; "
                              f"give a fraction such as 0.05 or drop {key}")
        if cls.needs_labels and not prep.id_train.has_labels:
            raise ConfigError(
                f"{key} needs class labels, but the ID set {cfg.id} is unlabelled; use a labelled ID set "
                f"(e.g. digits, cifar10, or a folder with one subfolder per class) or drop {key}"
            )
    return prep


class Runner:
    """Executes a :class:`PreparedRun`; results land in ``self.results`` as they complete."""

    def __init__(self, prep: PreparedRun, cache: Cache, examples_dir: Path | None = None,
                 examples: bool | None = None) -> None:
        self.prep = prep
        self.cache = cache
        self.examples_dir = examples_dir
        # whether methods draw their example pictures (cached beside the scores); a fit worker
        # draws them for its parent's run folder without writing one (``examples_dir`` None)
        self.examples = examples_dir is not None if examples is None else examples
        self.results: list[MethodResult] = []
        self.artifacts = ArtifactStore(cache, self.numerics("fit"))

    def jobs(self) -> list[tuple[str, type[OODMethod], MethodConfig, int]]:
        """``(method key, class, config, seed)`` of every method × seed, in the order :meth:`run` takes them."""
        p = self.prep
        return [(key, cls, mcfg, seed) for seed in p.cfg.seeds for key, (cls, mcfg) in p.methods.items()]

    def run(self) -> list[MethodResult]:
        for job in self.jobs():
            self.results.append(self.run_method(*job))
        return self.results

    # ------------------------------------------------------------------------------------
    def run_method(self, key: str, cls: type[OODMethod], mcfg: MethodConfig, seed: int) -> MethodResult:
        done = self.cached_result(key, cls, mcfg, seed)
        if done is not None:  # every score (and picture) cached: no network is loaded
            return done
        method, fit_key, uses, (fit_seconds, fit_peak, fit_cached, report) = self.fitted(key, cls, mcfg, seed)
        sets = self.score_sets(method, key, fit_key)
        return MethodResult(key, seed, mcfg.to_dict(), fit_key, fit_seconds, fit_peak, fit_cached,
                            report, method.cost(), method.budget(), sets[0], sets[1:], uses)

    def datasets(self) -> list[tuple[ImageDataset, str, str, str]]:
        """``(dataset, role, group, name)`` of every set a method scores: the ID test split first."""
        p = self.prep
        return [(p.id_test, "id", "id", display_name(p.cfg.id)),
                *((ds, "ood", p.groups[name], name) for name, ds in p.oods.items())]

    def score_sets(self, method: OODMethod, key: str, fit_key: str,
                   names: list[str] | None = None) -> list[DatasetScores]:
        """``method`` (registered as ``key``, its model ``fit_key``) scored on every set of
        :meth:`datasets` — or on those named in ``names`` — each read from the cache where it is
        there, else computed and cached, with its example picture."""
        return [self._score(method, key, fit_key, self.score_key(method, fit_key, ds), ds, role, group, name)
                for ds, role, group, name in self.datasets() if names is None or name in names]

    def score_key(self, method: OODMethod, fit_key: str, ds: ImageDataset) -> str:
        """The cache key of ``method``'s scores (its model: ``fit_key``) on ``ds``."""
        return digest({"fit": fit_key, "score": method.config.stage_dict("score"), "batch": method.ctx.batch_size,
                       "device": self.prep.device.type, "seed": method.ctx.seed, **self.numerics("score"),
                       "data": ds.fingerprint()})

    def cached_result(self, key: str, cls: type[OODMethod], mcfg: MethodConfig, seed: int) -> MethodResult | None:
        """The result of ``key`` for ``seed`` read from the cache alone — model metadata, artifact
        metadata, every set's scores and example picture — without building or loading a network;
        ``None`` when anything is missing or damaged (the full path then fits or loads, and scores)."""
        if not dist.is_main() or dist.active():
            return None  # under torchrun every rank takes the same path: the full one
        plan, method, keys = self._plan(key, cls, mcfg, seed)
        if not plan.scored:
            return None
        loaded = [(self.cache.load_scores(key, plan.fit_key, keys[name]), keys[name], ds, role, group, name)
                  for ds, role, group, name in self.datasets()]
        if any(c is None for c, *_ in loaded):
            return None
        model_dir = self.cache.model_dir(key, plan.fit_key)
        if not self.cache.intact(model_dir):
            return None  # damaged (or never checksummed): the full path validates and heals it
        try:
            meta = self.cache.fit_meta(key, plan.fit_key)
            uses = self.artifacts.describe(key, method, self.prep.id_train, self.split(method, key, seed)[0])
        except (OSError, ValueError, KeyError, InvalidArtefact):
            return None  # an unreadable fit.json or artifact folder: the full path heals it
        if uses is None:
            return None
        seconds, peak, cached, report = self._cached_fit(method, key, model_dir, meta, loaded=False)
        seconds += sum(u.seconds for u in uses if u.status != "shared")
        sets = []
        for c, sk, ds, role, group, name in loaded:
            out = self._cached_scores(key, plan.fit_key, sk, c, ds, role, group, name)
            out.example = self._example(method, key, plan.fit_key, sk, ds, name)  # cached: drawn by no network
            sets.append(out)
        return MethodResult(key, seed, mcfg.to_dict(), plan.fit_key, seconds, peak, cached, report,
                            method.cost(), method.budget(), sets[0], sets[1:], uses)

    def context(self, cls: type[OODMethod], seed: int, **kw: Any) -> RunContext:
        """The run's :class:`RunContext` for a method of class ``cls`` (``kw`` overrides fields)."""
        c = self.prep.cfg
        ctx = method_context(cls, self.prep.device, seed, c.batch_size, c.workers, c.compile)
        ctx.compile_backend = c.compile_backend
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx

    def fitted(self, key: str, cls: type[OODMethod], mcfg: MethodConfig,
               seed: int) -> tuple[OODMethod, str, list[ArtifactUse], tuple[float, float, bool, dict]]:
        """``(method, fit_key, artifact uses, (fit seconds, fit peak MiB, cached?, fit report))``:
        the method with its artifacts attached and its own model fitted, or loaded from the cache
        (where it then is, on rank 0: ``cache.model_dir(key, fit_key)``). The fit seconds count
        the artifacts this method built or loaded (not those it shared)."""
        ctx = self.context(cls, seed)
        method = cls(mcfg, ctx)
        train, uses = self.attach(method, key, seed)
        fit_key = self.fit_key(key, method, train, {u.name: u.key for u in uses})
        ctx.work_dir = self.cache.work_dir(key, fit_key)
        origin = {"method": key, "config": mcfg.to_dict(), "seed": seed,
                  "artifacts": {u.name: {"kind": u.kind, "key": u.key, "folder": u.folder} for u in uses}}
        seconds, peak, cached, report = self._fit(method, key, fit_key, train, origin)
        seconds += sum(u.seconds for u in uses if u.status != "shared")
        return method, fit_key, uses, (seconds, peak, cached, report)

    def fit_key(self, key: str, method: OODMethod, train: ImageDataset, artifact_keys: dict[str, str]) -> str:
        """The cache key of ``method``'s own model (registered as ``key``) fitted on ``train``
        with the artifacts of ``artifact_keys`` (name → artifact key)."""
        cls = type(method)
        return digest({"method": key, "version": cls.version, "fit": method.config.stage_dict("fit"),
                       "train": train.fingerprint(), "seed": method.ctx.seed, **self.numerics("fit"),
                       **({"artifacts": artifact_keys} if artifact_keys else {}),
                       **({"validation": method.validation.fingerprint()} if cls.needs_validation else {})})

    def plan_fit(self, key: str, cls: type[OODMethod], mcfg: MethodConfig, seed: int) -> FitPlan:
        """What fitting ``key`` for ``seed`` takes, worked out without building or loading anything:
        the artifacts it needs and its model's key (for the fit workers' schedule)."""
        return self._plan(key, cls, mcfg, seed)[0]

    def _plan(self, key: str, cls: type[OODMethod], mcfg: MethodConfig,
              seed: int) -> tuple[FitPlan, OODMethod, dict[str, str]]:
        """:meth:`plan_fit`'s plan, with the (unfitted) method it was worked out on and the score
        key of every set by name."""
        method = cls(mcfg, self.context(cls, seed))
        id_train, (fit_part, validation) = self.prep.id_train, self.split(method, key, seed)
        arts = {name: (request.kind, artifact_key(request, data, seed, self.artifacts.numerics))
                for name, (request, data) in requested(method, id_train, fit_part).items()}
        method.validation = validation
        train = fit_part if cls.needs_validation else id_train
        fit_key = self.fit_key(key, method, train, {name: k for name, (_, k) in arts.items()})
        cached = self.cache.has_model(key, fit_key)
        keys = {name: self.score_key(method, fit_key, ds) for ds, _, _, name in self.datasets()}
        unscored = tuple(name for name, sk in keys.items()
                         if not self.cache.usable(self.cache.scores_path(key, fit_key, sk))
                         or (self.examples and not self.cache.example_done(key, fit_key, sk)))
        return FitPlan(key, seed, fit_key, frozenset(arts.values()), cached, unscored), method, keys

    def numerics(self, stage: str) -> dict[str, str]:
        """The fast-path options that change a ``stage``'s numbers (``{}`` on a CPU by default)."""
        c = self.prep.cfg
        return numerics_key(c.precision, c.compile, self.prep.device, stage=stage, fast_path_mode=c.fast_path,
                            backend=c.compile_backend)

    def attach(self, method: OODMethod, key: str, seed: int) -> tuple[ImageDataset, list[ArtifactUse]]:
        """Give ``method`` its artifacts and hold-out (:func:`~ood_bench.engine.artifact_store.attach`)
        for ``seed``; returns the set ``fit()`` trains on and the artifact uses."""
        return attach(self.artifacts, method, key, self.prep.id_train, *self.split(method, key, seed))

    def split(self, method: OODMethod, key: str, seed: int) -> tuple[ImageDataset, ImageDataset | None]:
        """``(ID train minus the hold-out, the hold-out)`` of ``seed`` for ``method``; ``(ID train,
        None)`` where the fraction cannot split the set and ``method`` does not need the hold-out."""
        split = self.prep.splits[seed]
        if isinstance(split, str):
            if type(method).needs_validation or any(r.data == "fit" for r in method.requires().values()):
                raise ConfigError(f"{key}: {split}")
            return self.prep.id_train, None
        return split

    def _fit(self, method: OODMethod, key: str, fit_key: str, train: ImageDataset,
             origin: dict) -> tuple[float, float, bool, dict]:
        # Runs sharing the cache fit each model once: the first takes the lock and trains, the
        # others wait, then find the model cached and load it. Within one torchrun job only rank
        # 0 takes it: the others train with rank 0 (DDP), so they must not wait on its lock.
        lock = (file_lock(self.cache.fit_lock(key, fit_key),
                          on_wait=lambda: log(f"{key}: another process is fitting this model; waiting for it"))
                if dist.is_main() else contextlib.nullcontext())
        with lock:
            return self._fit_locked(method, key, fit_key, train, origin)

    def _fit_locked(self, method: OODMethod, key: str, fit_key: str, train: ImageDataset,
                    origin: dict) -> tuple[float, float, bool, dict]:
        """Load the cached model or fit one; ``origin`` (method, config, seed, artifacts) goes
        into ``fit.json``, so that ``ood_bench.load_method`` can rebuild the method from the folder."""
        model_dir = self.cache.model_dir(key, fit_key)
        # rank 0 decides (validating, and healing, the cached model); every rank follows it
        cached = self._load_cached(method, key, fit_key) if dist.is_main() and self.cache.has_model(key, fit_key) else None
        if dist.broadcast(cached is not None if dist.is_main() else None):
            return cached if dist.is_main() else self._load_rank0_model(method, key, fit_key, cached=True)
        work = method.ctx.work_dir
        if not self.cache.enabled and work is not None and dist.is_main():
            shutil.rmtree(work, ignore_errors=True)  # --no-cache: no finished parts either
            work.mkdir(parents=True)
        dist.barrier()
        log(f"{key}: fitting on {train.describe()}")
        seed_everything(method.ctx.seed, key)
        with PeakMemory(method.device) as mem:
            t0 = time.perf_counter()
            # the whole fit, not only the training loops, at fixed threads: statistics computed
            # before training (e.g. the classifier's input normalisation) are reductions too
            with fixed_threads(method.device):
                method.fit(train)
            synchronize(method.device)
            # earlier, interrupted segments of this fit count too (their checkpoints were reused)
            seconds = time.perf_counter() - t0 + resumed_seconds(work)
        report = method.fit_report()
        if dist.is_main():
            with atomic.atomic_dir(model_dir) as tmp:
                method.save(tmp)
                write_json(tmp / "fit.json", {**origin, "seconds": seconds, "peak_mem_mib": mem.peak_mib, "report": report,
                                               "device": method.device.type, "machine": machine_info(method.device)})
            self.cache.wrote(model_dir)
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)  # checkpoints of a cached model are dead weight
            log(f"{key}: fitted in {seconds:.1f}s; model cached in {model_dir}")
        dist.barrier()
        if dist.is_main():
            return seconds, mem.peak_mib, False, report
        return self._load_rank0_model(method, key, fit_key, cached=False)

    def _load_rank0_model(self, method: OODMethod, key: str, fit_key: str,
                          cached: bool) -> tuple[float, float, bool, dict]:
        """Other ranks score with the model rank 0 saved (or validated), so every rank holds the
        very same weights and buffers (BatchNorm statistics are per rank in CPU training)."""
        model_dir = self.cache.model_dir(key, fit_key)
        if not (model_dir / "fit.json").is_file():
            raise RuntimeError(f"rank {dist.rank()} cannot see the model rank 0 saved in {model_dir}: "
                               f"put --cache-dir on a filesystem every node shares")
        meta = self.cache.fit_meta(key, fit_key)
        method.load(model_dir)
        return meta["seconds"], meta.get("peak_mem_mib", float("nan")), cached, meta.get("report", {})

    def _load_cached(self, method: OODMethod, key: str, fit_key: str) -> tuple[float, float, bool, dict] | None:
        """The cached model loaded into ``method``, or ``None`` after moving a damaged one aside."""
        model_dir = self.cache.model_dir(key, fit_key)
        try:
            meta = self.cache.validate_model(key, fit_key)
            method.load(model_dir)
        except Exception as e:  # InvalidArtefact, or a file the method itself cannot use
            self.cache.quarantine(model_dir, str(e) if isinstance(e, InvalidArtefact) else type(e).__name__)
            return None
        return self._cached_fit(method, key, model_dir, meta)

    def _cached_fit(self, method: OODMethod, key: str, model_dir: Path, meta: dict,
                    loaded: bool = True) -> tuple[float, float, bool, dict]:
        """``(fit seconds, peak MiB, cached?, report)`` of the cached model in ``model_dir``
        (``meta``: its ``fit.json``), with the log line saying how this run got it."""
        if model_dir in self.cache.own:  # a fit worker of this run fitted it (engine/fit_pool.py)
            log(f"{key}: fitted in {meta['seconds']:.1f}s by a fit worker; model cached in {model_dir}")
            return meta["seconds"], meta.get("peak_mem_mib", float("nan")), False, meta.get("report", {})
        here = machine_info(method.device)["fingerprint"]
        there = (meta.get("machine") or {}).get("fingerprint")
        if there != here:
            # reused on purpose (a GPU-trained model scored on a laptop is the point of a cache),
            # but said: the scores may differ in their last digits from a fit on this machine
            m = meta.get("machine") or {}
            log(f"warning: {key}: the cached model was trained on another machine type "
                f"({m.get('device', '?')}, {m.get('cpu', 'unknown CPU')}, {m.get('isa', '?')}, "
                f"{m.get('accelerator') or 'no GPU'}); its scores can differ from a fit here; --no-cache refits", level=logging.WARNING)
        log(f"{key}: {'loaded cached model' if loaded else 'cached model'} {model_dir} (fitted in {meta['seconds']:.1f}s"
            + (")" if loaded else "; its scores are cached, not loaded)"))
        return meta["seconds"], meta.get("peak_mem_mib", float("nan")), True, meta.get("report", {})

    def _cached_scores(self, key: str, fit_key: str, score_key: str, cached: Any, ds: ImageDataset,
                       role: str, group: str, name: str) -> DatasetScores:
        """``cached`` (:class:`~ood_bench.engine.cache.CachedScores`) as the run's scores of
        ``ds``: computed in this run when a fit worker of this run scored it, else cached."""
        mine = self.cache.scores_path(key, fit_key, score_key) in self.cache.own
        if mine:
            log(f"{key}: scored {name}: {len(ds)} images in {cached.seconds:.1f}s by a fit worker "
                f"({len(ds) / max(cached.seconds, 1e-9):.1f} img/s)")
        else:
            log(f"{key}: cached scores for {name} ({len(cached.batch)} images)")
        return DatasetScores(name, role, group, ds, cached.batch, cached.seconds, cached.peak_mem_mib, not mine)

    def _score(self, method: OODMethod, key: str, fit_key: str, score_key: str, ds: ImageDataset,
               role: str, group: str, name: str) -> DatasetScores:
        # rank 0 decides for all ranks (a file appearing between two ranks' looks would split them)
        cached = dist.broadcast(self.cache.load_scores(key, fit_key, score_key) if dist.is_main() else None)
        if cached is not None:
            out = self._cached_scores(key, fit_key, score_key, cached, ds, role, group, name)
        else:
            with PeakMemory(method.device) as mem:
                synchronize(method.device)
                t0 = time.perf_counter()
                batch = score_sharded(method, ds, desc=f"{key} scoring {name}")
                synchronize(method.device)
                seconds = time.perf_counter() - t0  # with shards: until every rank has every score
            peak = max(dist.all_gather(mem.peak_mib))
            if len(batch) != len(ds):
                raise RuntimeError(f"{key} returned {len(batch)} scores for {len(ds)} images of {name}")
            for sub, v in batch.scores.items():
                if not np.isfinite(v).all():
                    bad = int((~np.isfinite(v)).sum())
                    raise NonFiniteScoresError(
                        f"{key} produced {bad} non-finite {sub} scores on {name}; nothing was cached. The "
                        f"model or images are degenerate: check the images, or refit with --no-cache")
            if dist.is_main():
                self.cache.save_scores(key, fit_key, score_key, batch, seconds, peak)
            log(f"{key}: scored {name}: {len(ds)} images in {seconds:.1f}s ({len(ds) / seconds:.1f} img/s)")
            out = DatasetScores(name, role, group, ds, batch, seconds, peak, False)
        out.example = self._example(method, key, fit_key, score_key, ds, name)
        return out

    def _example(self, method: OODMethod, key: str, fit_key: str, score_key: str,
                 ds: ImageDataset, name: str) -> Path | None:
        """The method's picture for this dataset (cached beside the scores), if it has one, copied
        into the run folder's ``examples/`` (a fit worker only draws it into the cache)."""
        if not self.examples or not dist.is_main():
            return None
        cached = self.cache.example_path(key, fit_key, score_key)
        if not self.cache.usable(cached):
            none = self.cache.no_example_path(key, fit_key, score_key)
            if self.cache.usable(none):
                return None
            if not method.save_examples(ds, cached):
                atomic.write_text(none, "")  # so that a rerun knows without loading the method
                self.cache.wrote(none)
                return None
            self.cache.wrote(cached)
        if self.examples_dir is None:
            return None
        dest = self.examples_dir / f"{key}_{safe_name(name)}.png"
        atomic.write_bytes(dest, cached.read_bytes())
        return dest

