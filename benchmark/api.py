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

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ood_bench.data.base import ImageDataset
from ood_bench.data.registry import DataContext
from ood_bench.data.registry import load_dataset as _load_dataset
from ood_bench.engine.cache import Cache
from ood_bench.engine.distributed import describe as describe_distributed
from ood_bench.engine.config import RunConfig, apply_mapping, build_dataclass, find_preset, load_yaml
from ood_bench.engine.manifest import finish_manifest, now_iso, start_manifest
from ood_bench.engine.runner import DEFAULT_BATCH, Runner, display_name, prepare, seed_everything
from ood_bench.methods.base import OODMethod, RunContext
from ood_bench.methods.registry import METHODS
from ood_bench.plugins import load_plugins
from ood_bench.reporting.leaderboard import Leaderboard, build_leaderboard, provenance_lines
from ood_bench.reporting.metrics import CONVENTIONS
from ood_bench.reporting.run_folder import (MANIFEST_FILE, check_writable_dir, claim_run_dir, scores_frame,
                                            write_run)
from ood_bench.reporting.tables import metrics_frame
from ood_bench.results import MethodResult
from ood_bench.utils import progress as _progress
from ood_bench.utils import distributed as dist
from ood_bench.utils.atomic import write_json
from ood_bench.utils.device import configure_compile, resolve_device

DEFAULT_PRESET = "embedded"


@dataclass
class RunResult:
    """What :func:`run` returns: the per-method results and their tables.

    Attributes:
        config: the resolved run configuration.
        results: one :class:`~ood_bench.results.MethodResult` per method × seed.
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
    ``interrupted`` if it stops early; finished models and scores stay cached either way.

    Under ``torchrun`` / ``srun`` every rank calls this and gets the same results (scores are
    gathered on all ranks; timings are each rank's own); only rank 0 writes the run folder."""
    _progress.set_enabled(show_progress)
    t0 = time.perf_counter()
    load_plugins(cfg.plugins)
    run_dir = Path(cfg.out) if cfg.out else None
    for flag, folder in (("--out", run_dir), ("--cache-dir", Path(cfg.cache_dir))):
        if folder is not None:
            check_writable_dir(folder, flag)  # before any work, so nothing is half-written
    prep = prepare(cfg)
    manifest = {**start_manifest(cfg, prep, command), "conventions": CONVENTIONS}
    if dist.active():
        manifest["distributed"] = describe_distributed()
    run_dir = Path(cfg.out) if cfg.out and dist.is_main() else None
    if run_dir is not None:
        claim_run_dir(run_dir)  # one folder, one run: an earlier run's outputs go first
        write_json(run_dir / MANIFEST_FILE, manifest)
    _progress.log(f"run folder {run_dir or '(none)'}; device {prep.device}; methods {', '.join(prep.methods)}; "
                  f"ID {cfg.id}; OOD {', '.join(prep.oods)}; seeds {cfg.seeds}")
    runner = Runner(prep, Cache(cfg.cache_dir, cfg.use_cache),
                    examples_dir=run_dir / "examples" if run_dir is not None else None)
    try:
        results = runner.run()
    except BaseException as e:
        if run_dir is not None:
            manifest.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                            finished=now_iso(), error=f"{type(e).__name__}: {e}".splitlines()[0])
            write_json(run_dir / MANIFEST_FILE, manifest)
        raise
    finish_manifest(manifest, results, time.perf_counter() - t0)
    result = RunResult(cfg, results, manifest)
    if run_dir is not None:
        result.save(run_dir)
    return result


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
    mcfg = build_dataclass(cls.config_cls, opts, key)
    cls.preflight(mcfg)
    dev = resolve_device(device)
    configure_compile(compile, dev)
    ctx = RunContext(device=dev, seed=seed, compile=compile,
                     batch_size=batch_size or getattr(cls, "default_batch_size", DEFAULT_BATCH),
                     workers=workers, work_dir=Path(work_dir) if work_dir is not None else None)
    method = cls(mcfg, ctx)
    seed_everything(seed, cls.fit_family or key)
    return method


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
