"""The Python API: a whole benchmark in one call, or one detector on its own.

    import ood_bench

    res = ood_bench.run(id="digits04", ood=["textures", "noise"], methods=["dlsr", "knn"])
    res.leaderboard          # DataFrame: AUROC per OOD set, averages, FPR95, cost
    res.metrics              # DataFrame: every metric per method × seed × OOD set (long form)
    res.scores               # DataFrame: per-image scores
    res.save("results/api")  # the same run folder ``ood-bench run`` writes

    m = ood_bench.create_method("dlsr", preset="embedded", epochs=5)
    m.fit(ood_bench.load_dataset("digits04", "train"))
    scores = m.score(ood_bench.load_dataset("textures")).canonical   # (N,), higher = more OOD

``run`` starts from a preset exactly as the CLI does (default ``embedded``); keyword options are
the YAML keys of a preset (``seeds``, ``device``, ``limit``, ``bootstrap``, …) and raise a
:class:`~ood_bench.utils.errors.ConfigError` when unknown.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from ood_bench.data.base import ImageDataset
from ood_bench.data.registry import DataContext
from ood_bench.data.registry import load_dataset as _load_dataset
from ood_bench.engine.cache import Cache
from ood_bench.engine.process_group import describe as describe_distributed
from ood_bench.engine.config import DEFAULT_PRESET, RunConfig, apply_mapping, find_preset, load_yaml
from ood_bench.engine.manifest import finish_manifest, now_iso, start_manifest
from ood_bench.engine.fit_pool import prefit
from ood_bench.engine.runner import Runner, display_name, method_config, method_context, prepare, seed_everything
from ood_bench.engine.sweep import plan_sweep, run_sweep
from ood_bench.methods.base import OODMethod
from ood_bench.methods.registry import METHODS
from ood_bench.plugins import load_plugins
from ood_bench.reporting.leaderboard import Leaderboard, build_leaderboard, provenance_lines
from ood_bench.reporting.frontier import DEFAULT_TOLERANCE, frontier_frame, knees_frame, write_sweep
from ood_bench.reporting.metrics import CONVENTIONS
from ood_bench.reporting.run_folder import (MANIFEST_FILE, check_writable_dir, claim_run_dir, holds_complete_run,
                                            figure_count, publish_run, scores_frame, stage_run_dir, write_run)
from ood_bench.reporting.figure_cache import FigureCache
from ood_bench.reporting.plot_pool import PlotPool
from ood_bench.reporting.tables import metrics_frame
from ood_bench.outcomes import MethodResult
from ood_bench.utils import progress as _progress
from ood_bench.utils import distributed as dist
from ood_bench.utils.atomic import write_json
from ood_bench.utils.device import configure_compile, resolve_device
from ood_bench.utils.errors import ConfigError, UserError



@dataclass
class RunResult:
    """What :func:`run` returns: the per-method results and their tables.

    Attributes:
        config: the resolved run configuration.
        results: one :class:`~ood_bench.outcomes.MethodResult` per method × seed.
        manifest: provenance (versions, device, commit, timings), as written to ``manifest.json``.
    """

    config: RunConfig
    results: list[MethodResult]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def id_name(self) -> str:
        return display_name(self.config.id)

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """Long form: one row per entry (method or sub-score) × seed × OOD set (and group means)."""
        return metrics_frame(self.results, self.id_name)

    @cached_property
    def board(self) -> Leaderboard:
        return build_leaderboard(self.metrics, provenance_lines([self.manifest]))

    @property
    def leaderboard(self) -> pd.DataFrame:
        """Wide table, one row per entry: AUROC % per OOD set and per group, FPR95, img/s, NFE, fit s
        (means over seeds; :attr:`board` ``.std`` holds the spreads)."""
        return self.board.mean

    @cached_property
    def scores(self) -> pd.DataFrame:
        """Per-image scores of every method, seed and dataset (higher = more OOD)."""
        return scores_frame(self.results)

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write the run folder ``ood-bench run --out FOLDER`` would write; returns the paths
        (also recorded in :attr:`manifest` under ``outputs``)."""
        _, _, files = write_run(Path(folder), self.results, self.id_name, self.manifest,
                                n_resamples=self.config.bootstrap)
        return files


def build_config(config: str | Path | None = None, **overrides: Any) -> RunConfig:
    """A preset (name or YAML path; default ``embedded``) with ``overrides`` given as preset keys."""
    preset = find_preset(str(config or DEFAULT_PRESET))
    cfg = apply_mapping(RunConfig(), load_yaml(preset), str(preset))
    cfg.preset = str(preset)
    given = {k: v for k, v in overrides.items() if v is not None}
    return apply_mapping(cfg, given, "ood_bench.run") if given else cfg


def run(id: str | None = None, ood: Iterable[str] | dict[str, list[str]] | None = None,
        methods: Iterable[str] | dict[str, dict] | None = None, *, config: str | Path | None = None,
        out: str | Path | None = None, progress: bool = True, **options: Any) -> RunResult:
    """Run ``methods`` on ID set ``id`` against the OOD sets ``ood``; cached like the CLI.

    Args:
        id: ID dataset (registry name or folder with ``train/`` and ``test/``).
        ood: OOD sets (names or folders), or groups ``{"near": [...], "far": [...]}``.
        methods: method names, or ``{name: {option: value}}``.
        config: preset name or YAML path the rest starts from (default ``embedded``).
        out: also write the run folder there (as the CLI does); see :meth:`RunResult.save`.
        progress: show progress bars.
        **options: any preset key: ``seeds``, ``device``, ``limit``, ``cache_dir``, ``plugins``, …
    """
    cfg = build_config(config, id=id, ood=_names(ood), methods=_names(methods),
                       out=None if out is None else str(out), **options)
    return execute(cfg, command=f"ood_bench.run(config={cfg.preset!r})", show_progress=progress)


def execute(cfg: RunConfig, command: str, show_progress: bool = True) -> RunResult:
    """Validate ``cfg``, run it, and (when ``cfg.out`` is set) write its run folder.

    The run folder's manifest says ``running`` while the run goes on and ``failed`` /
    ``interrupted`` if it stops early, with the reason; finished models and scores stay cached
    either way. A folder that already holds a complete run keeps it until this run has
    succeeded: the new run is written beside it (``OUT/.next.XXXX/``) and swapped in at the end.
    A full disk is one :class:`UserError` line.

    Under ``torchrun`` / ``srun`` every rank calls this and gets the same results (scores are
    gathered on all ranks; timings are each rank's own); only rank 0 writes the run folder."""
    _progress.set_enabled(show_progress)
    t0 = time.perf_counter()
    load_plugins(cfg.plugins)
    check_output_dirs(cfg)
    prep = prepare(cfg)
    manifest = {**start_manifest(cfg, prep, command), "conventions": CONVENTIONS}
    if dist.active():
        manifest["distributed"] = describe_distributed()
    run_dir, stage = open_run_dir(cfg, manifest)
    write_dir = stage or run_dir
    _progress.log(f"run folder {run_dir or '(none)'}; device {prep.device}; methods {', '.join(prep.methods)}; "
                  f"ID {cfg.id}; OOD {', '.join(prep.oods)}; seeds {cfg.seeds}")
    runner = Runner(prep, Cache(cfg.cache_dir, cfg.use_cache),
                    examples_dir=write_dir / "examples" if write_dir is not None else None)
    figures = figure_count(len(cfg.seeds) * len(prep.methods) * len(prep.oods), len(prep.oods))
    with publishing(manifest, run_dir, stage):
        # independent fits (and, with score_in_workers, scoring) side by side (CPU); the serial loop
        # then loads or reads the results. The manifest says how many workers scored side by side.
        workers = prefit(runner, runner.jobs(), init=functools.partial(load_plugins, cfg.plugins))
        manifest["fit_workers"] = workers
        manifest["score_workers"] = workers if cfg.score_in_workers else 0
        # the figure worker starts now: it imports matplotlib while the methods are scored
        with PlotPool(figures if write_dir is not None else 0,
                      cache=FigureCache(runner.cache.figures_dir() if cfg.use_cache else None)) as pool:
            results = runner.run()
            finish_manifest(manifest, results, time.perf_counter() - t0)
            result = RunResult(cfg, results, manifest)
            if write_dir is not None:
                # the run folder's metrics are the result's: not computed a second time
                result.metrics, _, _ = write_run(write_dir, results, result.id_name, manifest,
                                                 n_resamples=cfg.bootstrap,
                                                 final_dir=run_dir if stage is not None else None, pool=pool)
    return result


def check_output_dirs(cfg: RunConfig) -> None:
    """``--out`` and ``--cache-dir`` writable (or creatable), checked before any work so that
    nothing is half-written."""
    for flag, folder in (("--out", Path(cfg.out) if cfg.out else None), ("--cache-dir", Path(cfg.cache_dir))):
        if folder is not None:
            check_writable_dir(folder, flag)


@contextlib.contextmanager
def publishing(manifest: dict[str, Any], run_dir: Path | None, stage: Path | None) -> Iterator[None]:
    """The body of a run (or sweep) writing into ``stage or run_dir``: on success the staged
    folder is swapped in (:func:`publish_run`); on any error the manifest says why (:func:`failed`)."""
    try:
        yield
        if stage is not None:
            publish_run(stage, run_dir)
    except BaseException as e:
        failed(e, manifest, run_dir, stage)
        raise


def open_run_dir(cfg: RunConfig, manifest: dict[str, Any] | None = None) -> tuple[Path | None, Path | None]:
    """``(run_dir, stage)`` of a run (or sweep) about to start, on rank 0 (``(None, None)``
    elsewhere or without ``--out``). A folder holding a complete run keeps it: the new one is
    written into ``stage`` (``OUT/.next.XXXX/``) and swapped in by :func:`publish_run` on
    success; any other folder is claimed (an unfinished earlier run's outputs go first).
    ``manifest``, when given, is written into the folder at once (it says ``running``)."""
    run_dir = Path(cfg.out) if cfg.out and dist.is_main() else None
    stage = None
    if run_dir is not None:
        if holds_complete_run(run_dir):
            stage = stage_run_dir(run_dir)
        else:
            claim_run_dir(run_dir)
        if manifest is not None:
            write_json((stage or run_dir) / MANIFEST_FILE, manifest)
    return run_dir, stage


def failed(e: BaseException, manifest: dict[str, Any], run_dir: Path | None, stage: Path | None) -> None:
    """After a run (or sweep) stopped with ``e``: its manifest says why; a full disk becomes one
    :class:`UserError` line (raised from here); other errors are the caller's to re-raise."""
    write_dir = stage or run_dir
    if write_dir is not None:
        _mark_failed(write_dir, manifest, e)
        if stage is not None:
            _progress.log(f"the complete earlier run in {run_dir} is kept; this attempt's manifest: "
                          f"{stage / MANIFEST_FILE}")
    if isinstance(e, OSError) and e.errno in _DISK_ERRORS:
        where = f"; the run is marked failed in {write_dir / MANIFEST_FILE}" if write_dir is not None else ""
        raise UserError(f"cannot write {e.filename or 'a file'}: {os.strerror(e.errno)}; free space (or "
                        f"choose --out / --cache-dir on another disk) and run again: finished models and "
                        f"scores stay cached{where}") from None


@dataclass
class SweepResult:
    """What :func:`sweep` returns.

    Attributes:
        config: the resolved run configuration.
        pairs: ``(SweepPoint, MethodResult)`` per method × grid point × seed.
        frontier: one row per method × point × OOD set (and mean rows): AUROC, FPR95, NFE/img,
            measured s/img, bootstrap intervals, ``pareto`` (see :mod:`ood_bench.reporting.frontier`).
        knees: per method, its knee and its most expensive point.
    """

    config: RunConfig
    pairs: list
    frontier: pd.DataFrame
    knees: pd.DataFrame
    tolerance: float
    manifest: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write the sweep folder ``ood-bench sweep --out FOLDER`` writes; returns the paths."""
        return write_sweep(Path(folder), self.frontier, self.knees, preset_mapping(self.config),
                           self.manifest, self.tolerance)


def sweep(config: str | Path | None = None, *, grid: dict[str, dict[str, list]] | None = None,
          tolerance: float = DEFAULT_TOLERANCE, out: str | Path | None = None, progress: bool = True,
          **options: Any) -> SweepResult:
    """AUROC against cost: every method of ``config`` over a grid of its cost knobs.

    ``grid`` is ``{method: {option: [values]}}`` (default: the preset's ``sweep:``, else each
    method's declared ``cost_knobs``); ``tolerance`` (AUROC points) sets the knees; ``options``
    are preset keys as for :func:`run` (``methods``, ``seeds``, ``limit``, ``cache_dir``, …)."""
    cfg = build_config(config, out=None if out is None else str(out), **options)
    return execute_sweep(cfg, grid or {}, tolerance, command=f"ood_bench.sweep(config={cfg.preset!r})",
                         show_progress=progress)


def execute_sweep(cfg: RunConfig, grid: dict, tolerance: float, command: str, show_progress: bool = True) -> SweepResult:
    """Validate ``cfg`` and the grid (every point's config is built before any work), score every
    point, and (when ``cfg.out`` is set) write the sweep folder."""
    _progress.set_enabled(show_progress)
    t0 = time.perf_counter()
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"--tolerance {tolerance}: must be a finite number of AUROC points, 0 or more")
    load_plugins(cfg.plugins)
    check_output_dirs(cfg)
    prep = prepare(cfg)
    points = plan_sweep(prep, grid)
    manifest = {**start_manifest(cfg, prep, command), "kind": "sweep", "grid": grid, "tolerance": tolerance,
                "conventions": CONVENTIONS}
    run_dir, stage = open_run_dir(cfg, manifest)
    write_dir = stage or run_dir
    counts = {}
    for p in points:
        counts[p.method] = counts.get(p.method, 0) + 1
    _progress.log(f"sweep folder {run_dir or '(none)'}; {len(points)} points "
                  f"({', '.join(f'{m} {n}' for m, n in counts.items())}) x seeds {cfg.seeds}")
    with publishing(manifest, run_dir, stage):
        pairs = run_sweep(prep, points, Cache(cfg.cache_dir, cfg.use_cache), init=functools.partial(load_plugins, cfg.plugins))
        frontier = frontier_frame(pairs, display_name(cfg.id), cfg.bootstrap)
        knees = knees_frame(frontier, tolerance)
        finish_manifest(manifest, [r for _, r in pairs], time.perf_counter() - t0)
        manifest["timings"] = {f"{p.method}[{p.label}]/seed{r.seed}": {
            "fit_cached": r.fit_cached, "fit_key": r.fit_key, "score_s": sum(d.seconds for d in r.all_scored),
            "scores_cached": all(d.cached for d in r.all_scored), "nfe_per_image": r.cost} for p, r in pairs}
        result = SweepResult(cfg, pairs, frontier, knees, tolerance, manifest)
        if write_dir is not None:
            result.save(write_dir)
    return result


def preset_mapping(cfg: RunConfig) -> dict[str, Any]:
    """``cfg`` as a preset's YAML mapping (id, OOD groups, methods with options, seeds, plugins)."""
    if cfg.ood_groups:
        ood: Any = {}
        for name in cfg.ood:
            ood.setdefault(cfg.ood_groups.get(name, "ood"), []).append(name)
    else:
        ood = list(cfg.ood)
    out: dict[str, Any] = {"id": cfg.id, "ood": ood, "seeds": list(cfg.seeds),
                           "methods": {m: dict(cfg.method_options.get(m, {})) for m in cfg.methods}}
    if cfg.plugins:
        out["plugins"] = list(cfg.plugins)
    return out


_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)


def _mark_failed(write_dir: Path, manifest: dict[str, Any], e: BaseException) -> None:
    """The run folder's manifest says ``failed`` (or ``interrupted``) with the reason; best effort
    (on a full disk even this write can fail, and must not hide the original error)."""
    reason = f"{type(e).__name__}: {e}".splitlines()[0]
    if isinstance(e, OSError) and e.errno in _DISK_ERRORS:
        reason = f"{os.strerror(e.errno)} writing {e.filename or 'a file'}"
    manifest.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                    finished=now_iso(), error=reason)
    try:
        write_json(write_dir / MANIFEST_FILE, manifest)
    except OSError:
        pass
def drift(cfg: RunConfig, show_progress: bool = True, fast_compile: str | None = None) -> tuple[pd.DataFrame, str]:
    """The fast path's arithmetic drift (:mod:`ood_bench.engine.drift`): each method's model is
    fitted (or loaded from the cache) once under ``cfg``'s options, then scored with the fast
    path (bf16, ``fast_path`` on, ``cfg.compile``) and with the fp32 plain path. Returns the
    per-method/per-set table (AUROCs in points, relative per-image differences) and its text;
    with ``cfg.out`` both are written there as ``drift.csv`` and ``drift.md``. ``fast_compile``:
    the fast side's ``--compile`` when it should differ from the fit's (``cfg.compile``)."""
    from ood_bench.engine.drift import drift_frame, fast_side, format_drift, measure_drift, REFERENCE

    _progress.set_enabled(show_progress)
    load_plugins(cfg.plugins)
    out = Path(cfg.out) if cfg.out else None
    for flag, folder in (("--out", out), ("--cache-dir", Path(cfg.cache_dir))):
        if folder is not None:
            check_writable_dir(folder, flag)
    prep = prepare(cfg)
    configure_compile(fast_compile or cfg.compile, prep.device, cfg.compile_backend)
    fast = fast_side(fast_compile or cfg.compile)
    rows = measure_drift(prep, Cache(cfg.cache_dir, enabled=cfg.use_cache), fast)
    text = (f"fast path drift, {Path(cfg.preset or 'run').stem} settings, device {prep.device}, seed {cfg.seeds[0]}: "
            f"fast = {fast.describe()} (backend {cfg.compile_backend}) vs reference = {REFERENCE.describe()}; "
            f"one fitted model per method; canonical scores; AUROC in points\n\n{format_drift(rows)}\n")
    frame = drift_frame(rows)
    if out is not None and dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / "drift.csv", index=False)
        (out / "drift.md").write_text(text)
    return frame, text


def create_method(name: str, *, preset: str | Path | None = None, device: str = "auto", seed: int = 0,
                  batch_size: int | None = None, workers: int = 0, work_dir: str | Path | None = None,
                  compile: str = "auto", plugins: Iterable[str] = (), **options: Any) -> OODMethod:
    """One detector, ready for ``fit(train)`` and ``score(data)``, outside any run.

    Options are the method's (``ood-bench list --options``); ``preset`` first applies a preset's
    options for this method (e.g. ``"embedded"`` for CPU sizes). Global RNGs are seeded as the
    runner seeds them before ``fit``, so ``fit`` trains the model a run with the same seed trains.
    ``work_dir`` keeps resumable training checkpoints; ``compile`` is ``--compile``
    (``auto``: ``torch.compile`` on CUDA, never on a CPU).
    """
    load_plugins(list(plugins))
    key = METHODS.canonical(name)
    cls = METHODS.get(key)
    opts: dict[str, Any] = {}
    if preset is not None:
        pcfg = build_config(preset)
        opts.update(pcfg.method_options.get(key, {}))
    opts.update(options)
    mcfg = method_config(cls, key, opts)
    dev = resolve_device(device)
    configure_compile(compile, dev)
    method = cls(mcfg, method_context(cls, dev, seed, batch_size, workers, compile,
                                      Path(work_dir) if work_dir is not None else None))
    seed_everything(seed, key)
    return method


def fit_method(method: OODMethod, train: ImageDataset, *, cache_dir: str | Path | None = None,
               validation: float = 0.05) -> OODMethod:
    """Fit ``method`` on ``train`` as a run would: its shared artifacts first (built, or loaded
    from ``cache_dir`` when given and cached there; nothing is written without one), the
    validation hold-out of ``validation`` × ``train`` (seeded by the method's seed) for
    artifacts trained on ``fit`` data and methods that calibrate on it, then ``fit()`` with the
    run's seeding and thread count. Returns ``method``; ``method.artifacts`` holds the artifacts.

    A method that requires no artifacts can also be fitted with ``method.fit(train)`` directly.
    """
    import tempfile

    from ood_bench.data.base import holdout_split
    from ood_bench.engine.artifact_store import ArtifactStore, attach
    from ood_bench.methods.training import fixed_threads
    from ood_bench.utils.device import numerics_key

    try:
        fit_part, held = holdout_split(train, validation, method.ctx.seed)
    except ValueError as e:
        raise ConfigError(f"validation: {e}") from None
    numerics = numerics_key("auto", method.ctx.compile, method.device)
    with tempfile.TemporaryDirectory(prefix="ood-bench-artifacts-") as tmp:
        cache = Cache(cache_dir) if cache_dir is not None else Cache(tmp, enabled=False)
        data, _ = attach(ArtifactStore(cache, numerics), method, method.name, train, fit_part, held)
    seed_everything(method.ctx.seed, method.name)
    with fixed_threads(method.device):
        method.fit(data)
    return method


def load_method(folder: str | Path, method: str | None = None, *, seed: int | None = None, device: str = "auto",
                batch_size: int | None = None, workers: int = 0, compile: str = "auto",
                plugins: Iterable[str] = ()) -> OODMethod:
    """A fitted method, ready for ``score`` / ``embed`` / ``logits``, without fitting anything.

    Args:
        folder: a run folder (``--out``: its manifest names each method's cached model) — then
            ``method`` (and ``seed``, default the run's first) pick one — or a cached model folder
            (``<cache>/<method>/<fit_key>/model``, or ``<cache>/<method>/<fit_key>``).
        device, batch_size, workers, compile: as for :func:`create_method`.

    The model folder's ``fit.json`` names the method, its options, seed and shared artifacts;
    those are loaded from their cache folders, then the method's own state.

    Raises:
        UserError: not a run or model folder, no such method/seed in the run, or a cache folder
            that is gone (re-run the run's command to rebuild it).
    """
    import json

    from ood_bench.methods.artifacts import ARTIFACTS
    from ood_bench.utils.errors import UserError

    load_plugins(list(plugins))
    folder = Path(folder).expanduser()
    if (folder / MANIFEST_FILE).is_file():
        timings = json.loads((folder / MANIFEST_FILE).read_text()).get("timings") or {}
        runs = {k: v for k, v in timings.items()
                if (method is None or k.split("/seed")[0] == METHODS.canonical(method))
                and (seed is None or k.endswith(f"/seed{seed}"))}
        names = sorted({k.split("/seed")[0] for k in runs})
        if len(names) != 1 or "model" not in next(iter(runs.values())):
            raise UserError(f"{folder}: name one method of the run ({', '.join(sorted({k.split('/seed')[0] for k in timings})) or 'none'})"
                            + (f" with seed {seed}" if seed is not None else "") + ", e.g. load_method(folder, 'knn')")
        model_dir = Path(next(iter(runs.values()))["model"])
    else:
        model_dir = folder if (folder / "fit.json").is_file() else folder / "model"
    meta_file = model_dir / "fit.json"
    if not meta_file.is_file():
        raise UserError(f"{model_dir} holds no fitted model (no fit.json); give a run folder or a cached model folder, "
                        f"or re-run the run's command to rebuild its cache")
    meta = json.loads(meta_file.read_text())
    if "method" not in meta:
        raise UserError(f"{meta_file} was written by an older ood-bench (no method recorded); re-run with --no-cache")
    key = METHODS.canonical(meta["method"])
    cls = METHODS.get(key)
    dev = resolve_device(device)
    configure_compile(compile, dev)
    m = cls(method_config(cls, key, meta["config"]),
            method_context(cls, dev, meta["seed"], batch_size, workers, compile))
    for name, request in m.requires().items():
        where = Path(meta["artifacts"][name]["folder"])
        if not where.is_dir():
            raise UserError(f"the {request.kind} artifact of {key} is gone from {where}; re-run the run's command to rebuild it")
        m.artifacts[name] = ARTIFACTS.get(request.kind).load(dict(request.recipe), where, m.ctx)
    m.load(model_dir)
    return m


def load_dataset(name: str, split: str = "test", *, data_root: str | Path = "~/data", download: bool = False,
                 skip_unreadable: bool = False, plugins: Iterable[str] = ()) -> ImageDataset:
    """A registered dataset (``ood-bench list``) or an image folder, as an ordered image dataset."""
    load_plugins(list(plugins))
    ctx = DataContext(root=Path(data_root), download=download, skip_unreadable=skip_unreadable)
    return _load_dataset(name, split, ctx)


def _names(value: Iterable[str] | dict | None) -> Any:
    """``ood`` / ``methods`` as a preset holds them: ``None``, a mapping as given, or a list."""
    if value is None or isinstance(value, dict):
        return value
    return [value] if isinstance(value, str) else list(value)
