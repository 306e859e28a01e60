"""``ood-bench``: run benchmarks, list what is registered, re-export leaderboards.

    ood-bench run --method dlsr --id digits --ood textures faces noise --out results/demo
    ood-bench run --config configs/embedded.yaml --set dlsr.score=mse
    ood-bench list [--options [--config PRESET]]
    ood-bench leaderboard RUN_DIR [RUN_DIR ...] --format csv|latex|md|json [--out FILE]
    ood-bench fetch --config cifar10 [--dry-run]

Every command takes ``-q/--quiet`` (warnings only, no progress bars), ``-v`` (debug lines) and
``--log-file FILE``; log lines go to stderr through :mod:`logging`, results to stdout. Output
into a closed pipe (``| head``) ends quietly and never fails a run.

Input problems (missing data, unreadable image, unknown option, missing weights offline) print
one ``error:`` line and exit with status 2; nothing already computed is lost (see the cache).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import logging
import sys
import time
from pathlib import Path

from ood_bench.utils.errors import ConfigError, UserError
from ood_bench.engine.config import DEFAULT_PRESET, fit_workers_setting
from ood_bench.reporting.formats import FORMATS


def _common() -> argparse.ArgumentParser:
    """Logging flags every command takes (after the command name)."""
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors; no progress bars")
    c.add_argument("-v", "--verbose", action="store_true", help="also debug log lines")
    c.add_argument("--log-file", metavar="FILE", help="also write every log line (debug up) to FILE")
    return c


def _parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    p = argparse.ArgumentParser(prog="ood-bench", description="Unsupervised OOD detection with diffusion models: DLSR, LMD, DiffOOD.")
    p.add_argument("--version", action="version", version=f"ood-bench {version('ood-bench')}")
    sub = p.add_subparsers(dest="command", required=True)
    common = [_common()]

    r = sub.add_parser("run", parents=common, help="run methods on an ID set and OOD sets", description=(
        "Fit each method on the ID training split, score the ID test split and every OOD set, and "
        f"write metrics, leaderboards, per-image scores and plots. Without --config the "
        f"'{DEFAULT_PRESET}' preset (configs/{DEFAULT_PRESET}.yaml) gives the defaults."))
    _run_flags(r)
    r.add_argument("--drift", action="store_true",
                   help="instead of a run: fit (or load) each model once, score it with the fast path (bf16, "
                        "--fast-path on, --compile) and with true fp32 on the plain path, and print both AUROCs "
                        "and the per-image differences (drift.csv, drift.md in --out)")

    sw = sub.add_parser("sweep", parents=common, help="AUROC against cost: each method's cost knobs over a grid, one fitted model per method",
                        description=(
        "Score every method of a preset at each point of a grid over its cost knobs (sampling steps, "
        "repetitions, ...: scoring options only, so each method's model is fitted or loaded once), and write "
        "frontier.csv, the Pareto set, each method's knee (knees.yaml: a preset with every method at its "
        "knee), AUROC-vs-cost plots and report.html. Ladders: --grid, else the preset's sweep:, else "
        "each method's declared cost knobs (`ood-bench list --options` marks them). Takes run's flags "
        "except --steps/--reps/--no-cache."))
    _run_flags(sw)
    sw.add_argument("--grid", nargs="+", default=[], metavar="M.OPT=V1,V2",
                    help="ladders to sweep, e.g. lmd.steps=10,50,1000 lmd.reps=2,4 (a method named here varies only these)")
    sw.add_argument("--tolerance", type=float, default=None,
                    help="knee: the cheapest point within this many AUROC points of the method's most expensive point (default 0.5)")

    sp = sub.add_parser("speed", parents=common, help="time the scoring of methods at their configured sizes (untrained weights)",
                        description="Builds each method's networks at the configured sizes with untrained weights and "
                                    "times scoring on random images; see ood_bench/engine/speed.py (benchmark/engine/speed.py in the repository).")
    _preset_flags(sp)
    sp.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    sp.add_argument("--images", type=int, help="images to time (default 8; with --data: the whole set)")
    sp.add_argument("--batch-size", type=int, help="images per batch (default: per method)")
    sp.add_argument("--timing-steps", type=int, help="time chains longer than this at this many sampling steps and "
                                                     "extrapolate to the full budget (sampler evaluations only)")
    sp.add_argument("--data", metavar="NAME_OR_FOLDER", help="end to end: score this dataset's test split or image "
                                                             "folder, reading and decoding included")
    sp.add_argument("--data-root", help="folder holding the standard datasets (default ~/data)")
    sp.add_argument("--workers", type=int, help="DataLoader workers for --data read from disk (default 2)")
    sp.add_argument("--min-time", type=float, default=1.0, help="seconds of timed passes per budget (median; default 1)")
    sp.add_argument("--train", action="store_true", help="time UNet training (LMD, DiffOOD) instead of scoring: "
                                                         "img/s at the train batch size (--batch-size overrides)")
    sp.add_argument("--train-steps", type=int, default=25,
                    help="--train: steps of the longer of the two timed trainings (default 25)")
    _fast_path_flags(sp)
    _plugin_flag(sp)

    ls = sub.add_parser("list", parents=common, help="presets, registered methods and datasets")
    ls.add_argument("--options", action="store_true",
                    help="also every method option with its value under --config (YAML syntax, as --set takes it)")
    ls.add_argument("--config", help=f"preset whose option values --options shows (default: {DEFAULT_PRESET})")
    _plugin_flag(ls)

    lb = sub.add_parser("leaderboard", parents=common, help="(re-)export the leaderboard of one or several runs, merged")
    lb.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    lb.add_argument("--format", choices=FORMATS, default="md")
    lb.add_argument("--out", type=Path, help="write to this file instead of stdout")
    lb.add_argument("--primary-only", action="store_true", help="only each method's canonical score (csv, md, json)")
    lb.add_argument("--sub-scores", action="store_true",
                    help="latex: also the methods' other sub-scores (default: canonical scores only)")
    lb.add_argument("--resizebox", action="store_true", help="latex: wrap each table in \\resizebox{\\textwidth}{!}")
    lb.add_argument("--allow-mixed", action="store_true",
                    help="merge runs of different protocols (ID set, image counts, options), rows labelled by run")

    cp = sub.add_parser("compare", parents=common, help="check a run against reference results (exit 1 on drift)",
                        description="Per method and OOD set, the run's mean AUROC must lie within k x the reference's "
                                    "seed spread (see benchmark/reporting/compare.py).")
    cp.add_argument("run", type=Path, metavar="RUN_DIR")
    cp.add_argument("--reference", type=Path, required=True, metavar="DIR", help="finished reference run folder")
    cp.add_argument("--k", type=float, default=3.0, help="tolerance in standard errors of the difference (default 3)")
    cp.add_argument("--floor", type=float, default=0.1, help="smallest tolerance, AUROC points (default 0.1)")

    f = sub.add_parser("fetch", parents=common, help="download the weights and datasets a preset needs and you lack",
                       description="Checksummed downloads with progress into the torch hub cache and --data-root "
                                   "(see benchmark/engine/fetch.py for the table of sources).")
    _preset_flags(f)
    f.add_argument("--data-root", help="folder for the datasets (default ~/data)")
    f.add_argument("--dry-run", action="store_true", help="only list what is missing and where it would go")
    f.set_defaults(device=None)
    _plugin_flag(f)
    return p


def _run_flags(r: argparse.ArgumentParser) -> None:
    """The flags of ``run`` (``sweep`` takes them too)."""
    r.add_argument("--config", help="YAML file or preset name in configs/ (default: embedded)")
    r.add_argument("--method", "--methods", dest="methods", nargs="+", metavar="M", help="method(s) to run")
    r.add_argument("--id", help="ID dataset: registry name or folder (with train/ and test/)")
    r.add_argument("--ood", nargs="+", metavar="OOD",
                   help="OOD sets: registry names or image folders, one ungrouped set of columns "
                        "(replaces the preset's OOD sets and their near/far groups)")
    r.add_argument("--near", nargs="+", metavar="OOD", help="near-OOD sets (with --far: grouped columns and averages)")
    r.add_argument("--far", nargs="+", metavar="OOD", help="far-OOD sets")
    r.add_argument("--out", help="run folder (default: results/<preset>-<time>)")
    r.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (default auto: cuda if present, else cpu)")
    r.add_argument("--seed", type=int, help="random seed (default 0)")
    r.add_argument("--seeds", type=int, nargs="+", help="several seeds: every table shows mean ± std")
    r.add_argument("--data-root", help="folder holding the standard datasets (default ~/data)")
    r.add_argument("--download", action="store_true", default=None,
                   help="download missing weights and datasets first (as `ood-bench fetch`)")
    r.add_argument("--batch-size", type=int, help="images per scoring batch (default: per method)")
    r.add_argument("--workers", type=int, help="DataLoader workers for sets read from disk (default 2)")
    r.add_argument("--limit", type=int, help="score N images of the ID test set and of every OOD set (quick looks): "
                                             "a fixed-seed subset, class-stratified when labelled, in dataset order")
    r.add_argument("--train-limit", type=int, help="fit on N images of the ID training set (chosen as --limit chooses)")
    r.add_argument("--fit-workers", type=_fit_workers, metavar="N|auto",
                   help="processes fitting independent models side by side, one training thread each, before "
                        "scoring (default auto: one per core on a CPU, 1 on a GPU); scores equal a serial run's")
    r.add_argument("--score-in-workers", action="store_true", default=None,
                   help="the fit workers also score every set, one set per task (faster on many cores; img/s are "
                        "then measured side by side, sharing the cores); scores equal a serial run's")
    r.add_argument("--validation", type=float,
                   help="fraction of the ID training set held out per seed (default 0.05): shared networks requested "
                        "on 'fit' data train without it; methods that calibrate on it receive it")
    r.add_argument("--id-test-fraction", type=float, metavar="F",
                   help="an ID folder with train/ but no test/ (refused otherwise): hold out the fraction F of "
                        "train/ (seeded, class-stratified) as its test split and fit on the rest")
    r.add_argument("--set", dest="sets", nargs="+", default=[], metavar="M.OPT=V",
                   help="method options, e.g. dlsr.score=mse lmd.reps=4")
    r.add_argument("--cache-dir", help="model/score cache (default results/cache)")
    r.add_argument("--no-cache", action="store_true", help="ignore cached models and scores (still writes them)")
    r.add_argument("--skip-unreadable", action="store_true", default=None,
                   help="skip unreadable images in folders with a warning instead of failing")
    r.add_argument("--steps", type=int, help="equal budget: sampling steps per chain for every method (each maps it onto its own option)")
    r.add_argument("--reps", type=int, help="equal budget: repetitions (noise draws / masks) per image for every "
                                            "method that repeats (DLSR does not: it says so and keeps 1)")
    r.add_argument("--bootstrap", type=int, help="bootstrap resamples for intervals and p-values (default 1000; 0 = none)")
    r.add_argument("--json", action="store_true",
                   help="print a JSON summary (run folder, status, outputs, leaderboard) instead of the table")
    _fast_path_flags(r)
    _plugin_flag(r)


def _fit_workers(value: str) -> int | str:
    """``--fit-workers``: ``auto`` or a positive number (an argparse error otherwise)."""
    try:
        return fit_workers_setting(value)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"{value!r}: give a positive number or auto") from None


def _preset_flags(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--method``, ``--set``: what :func:`preset_config` reads (besides ``--device``)."""
    p.add_argument("--config", help="YAML file or preset (default: embedded)")
    p.add_argument("--method", "--methods", dest="methods", nargs="+", metavar="M")
    p.add_argument("--set", dest="sets", nargs="+", default=[], metavar="M.OPT=V")


def cmd_fetch(args: argparse.Namespace) -> int:
    from ood_bench.engine.fetch import fetch_missing, format_plan, plan
    from ood_bench.plugins import load_plugins

    _, cfg = preset_config(args)
    load_plugins(cfg.plugins)
    if args.data_root:
        cfg.data_root = args.data_root
    if args.dry_run:
        print(format_plan(plan(cfg)))
    else:
        print(f"fetched {len(fetch_missing(cfg))} item(s); everything {Path(args.config or DEFAULT_PRESET).stem} needs is in place")
    return 0


def _fast_path_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile", choices=("auto", "on", "graphs", "off"),
                   help="torch.compile the networks methods score and train with (auto: on for CUDA, eager "
                        "fallback; graphs: scoring replayed as CUDA graphs)")
    p.add_argument("--compile-backend", choices=("inductor", "aot_eager", "eager"),
                   help="torch.compile backend (default inductor; aot_eager traces the same graphs without "
                        "generating code: the compiled path checked on a CPU in seconds)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast on CUDA, fp32 elsewhere; bf16: bf16 autocast on any device; "
                        "fp32: true fp32 everywhere, TF32 off (the reference)")
    p.add_argument("--fast-path", choices=("auto", "on", "off"),
                   help="uint8 native-size batches resized on the device + channels_last networks "
                        "(auto: on CUDA unless --precision fp32; on: any device, CPUs included)")


def _plugin_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="load methods/datasets from a .py file or an importable module (repeatable)")


# ------------------------------------------------------------------------------ run
def preset_config(args: argparse.Namespace):
    """The preset (``--config``, default ``embedded``) with the flags ``run`` and ``speed``
    share applied: ``--method``, ``--device``, ``--set``. Returns ``(preset path, RunConfig)``."""
    from ood_bench.engine.config import RunConfig, apply_mapping, find_preset, load_yaml, parse_set

    preset = find_preset(args.config or DEFAULT_PRESET)
    cfg = apply_mapping(RunConfig(), load_yaml(preset), str(preset))
    cfg.preset = str(preset)
    if args.methods:
        cfg.methods = list(args.methods)
    for flag in ("device", "compile", "compile_backend", "precision", "fast_path"):
        if getattr(args, flag, None) is not None:
            setattr(cfg, flag, getattr(args, flag))
    for m, opts in parse_set(args.sets).items():
        cfg.method_options.setdefault(m, {}).update(opts)
    cfg.plugins += [p for p in args.plugins if p not in cfg.plugins]
    return preset, cfg


def build_run_config(args: argparse.Namespace):
    preset, cfg = preset_config(args)
    if args.id:
        cfg.id = args.id
    if args.ood and (args.near or args.far):
        raise ConfigError("give OOD sets either with --ood (one ungrouped set) or with --near/--far (grouped), not both")
    if args.ood:  # sets named on the command line: one "ood" group, not the preset's near/far
        cfg.ood, cfg.ood_groups = list(args.ood), {}
    elif args.near or args.far:
        groups = {"near": args.near or [], "far": args.far or []}
        cfg.ood = [n for names in groups.values() for n in names]
        cfg.ood_groups = {n: g for g, names in groups.items() for n in names}
    if args.seeds and args.seed is not None:
        raise ConfigError(f"--seed {args.seed} and --seeds {' '.join(map(str, args.seeds))} both given; use --seeds "
                          f"for several seeds (add {args.seed} to it if you want it)")
    if args.seeds:
        cfg.seeds = list(args.seeds)
    elif args.seed is not None:
        cfg.seeds = [args.seed]
    for flag, attr in (("data_root", "data_root"), ("download", "download"),
                       ("batch_size", "batch_size"), ("workers", "workers"), ("limit", "limit"), ("train_limit", "train_limit"), ("validation", "validation"),
                       ("id_test_fraction", "id_test_fraction"),
                       ("cache_dir", "cache_dir"), ("skip_unreadable", "skip_unreadable"), ("out", "out"),
                       ("bootstrap", "bootstrap"), ("steps", "steps"), ("reps", "reps"), ("fit_workers", "fit_workers"),
                       ("score_in_workers", "score_in_workers")):
        v = getattr(args, flag)
        if v is not None:
            setattr(cfg, attr, v)
    if args.no_cache:
        cfg.use_cache = False
    if cfg.out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        cfg.out = str(Path("results") / f"{preset.stem}-{stamp}")
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    from ood_bench.api import execute
    from ood_bench.utils import progress
    from ood_bench.utils.distributed import is_main

    t_start = time.perf_counter()
    cfg = build_run_config(args)
    if args.drift:
        from ood_bench.api import drift

        _, text = drift(cfg, show_progress=not args.quiet)
        print(text, end="")
        return 0
    result = execute(cfg, command=" ".join(["ood-bench", *sys.argv[1:]]), show_progress=not args.quiet)
    if not is_main():  # under torchrun: rank 0 wrote the run folder and reports it
        return 0
    run_dir = Path(cfg.out)
    progress.set_enabled(True)
    if args.json:
        summary = {"run_dir": str(run_dir), "status": result.manifest.get("status"),
                   "seconds": round(time.perf_counter() - t_start, 1), "seeds": cfg.seeds,
                   "outputs": result.manifest.get("outputs", {}), "leaderboard": result.board.to_dict()}
        print(json.dumps(summary, indent=1))
        return 0
    print(_terminal_table(result.board))
    print(f"\nwrote {run_dir}/ in {time.perf_counter() - t_start:.1f}s:")
    for key, path in result.manifest.get("outputs", {}).items():
        print(f"  {key:18s} {path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ood_bench.api import execute_sweep
    from ood_bench.engine.sweep import parse_grid
    from ood_bench.reporting.frontier import DEFAULT_TOLERANCE, format_mean_table, knee_options, set_lines
    from ood_bench.utils import progress

    t_start = time.perf_counter()
    grid = parse_grid(args.grid)
    cfg = build_run_config(args)
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    result = execute_sweep(cfg, grid, tolerance, command=" ".join(["ood-bench", *sys.argv[1:]]),
                           show_progress=not args.quiet)
    progress.set_enabled(True)
    print(format_mean_table(result.frontier).to_markdown(index=False, tablefmt="simple", disable_numparse=True))
    print(f"\nknees (cheapest point within {tolerance:g} AUROC points of each method's most expensive point):")
    for line in set_lines(knee_options(result.frontier, result.knees)) or ["  (no method has cost knobs)"]:
        print(f"  {line}")
    print(f"\nwrote {cfg.out}/ in {time.perf_counter() - t_start:.1f}s (run every method at its knee: "
          f"ood-bench run --config {Path(cfg.out) / 'knees.yaml'})")
    return 0


def _terminal_table(board) -> str:
    cells = board.cells("{}", " ± {}")
    return cells.to_markdown(stralign="right", tablefmt="simple", disable_numparse=True)


# ------------------------------------------------------------------------------ speed
def cmd_speed(args: argparse.Namespace) -> int:
    from ood_bench.data import DataContext, load_dataset
    from ood_bench.engine.manifest import device_info
    from ood_bench.engine.runner import prepare_methods
    from ood_bench.engine.speed import SpeedSetup, format_table, measure
    from ood_bench.plugins import load_plugins
    from ood_bench.utils import progress

    progress.set_enabled(False)
    preset, cfg = preset_config(args)
    if args.images is not None and args.images <= 0:
        raise ConfigError("--images must be a positive number")
    if args.timing_steps is not None and args.timing_steps <= 0:
        raise ConfigError("--timing-steps must be a positive number of sampling steps")
    if args.min_time <= 0:
        raise ConfigError("--min-time must be a positive number of seconds")
    load_plugins(cfg.plugins)
    prep = prepare_methods(cfg)
    info = device_info(prep.device)
    if args.train:
        return _speed_training(args, preset, cfg, prep, info)
    data = None
    if args.data:
        ctx = DataContext(root=Path(args.data_root or cfg.data_root), download=False, skip_unreadable=False)
        data = load_dataset(args.data, "test", ctx)
    setup = SpeedSetup(images=args.images, batch_size=args.batch_size, timing_steps=args.timing_steps, data=data,
                       workers=cfg.workers if args.workers is None else args.workers, min_time=args.min_time,
                       compile=cfg.compile, compile_backend=cfg.compile_backend)
    results = measure(prep, setup)
    mode = f"end to end on {args.data} (reading and decoding included)" if data is not None else "model only, random images"
    print(f"scoring speed, {preset.stem} settings, {mode}, device {info['type']} ({info['name']}), "
          f"{info['torch_threads']} torch threads, precision {cfg.precision}, fast path {cfg.fast_path}, "
          f"compile {cfg.compile}, untrained weights")
    print(format_table(results))
    return 0


def _speed_training(args: argparse.Namespace, preset: Path, cfg, prep, info: dict) -> int:
    from ood_bench.engine.speed import format_training_table, measure_training
    from ood_bench.methods.training import TRAIN_THREADS
    from ood_bench.utils.device import compile_backend

    if args.train_steps < 2:
        raise ConfigError("--train-steps must be at least 2")
    if args.batch_size is not None and args.batch_size <= 0:
        raise ConfigError("--batch-size must be a positive number")
    results = measure_training(prep, args.train_steps, args.batch_size, compile_backend(cfg.compile, prep.device, cfg.compile_backend))
    if not results:
        raise ConfigError(f"none of {', '.join(prep.methods)} trains a UNet; --train times LMD's and DiffOOD's")
    threads = TRAIN_THREADS if prep.device.type == "cpu" else info["torch_threads"]  # training's own count on CPU
    print(f"UNet training speed, {preset.stem} settings, random images, device {info['type']} ({info['name']}), "
          f"{threads} torch thread(s), precision {cfg.precision}, fast path {cfg.fast_path}, compile {cfg.compile}")
    print(format_training_table(results))
    return 0


# ------------------------------------------------------------------------------ list
def cmd_list(args: argparse.Namespace) -> int:
    from ood_bench.data import DATASETS
    from ood_bench.engine.config import PRESETS_DIR
    from ood_bench.methods.registry import METHODS
    from ood_bench.plugins import load_plugins

    load_plugins(args.plugins)
    preset_opts = _preset_options(args.config) if args.options else {}

    print("presets (--config NAME):")
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        print(f"  {path.stem:14s}{_preset_summary(path)}")
    print("\nmethods:")
    for name, cls in METHODS.items():
        doc = next(iter((cls.__doc__ or "").strip().splitlines()), "")  # a plugin may have no docstring
        labels = " [needs labels]" if cls.needs_labels else ""
        print(f"  {name:14s}{doc}{labels}")
        if args.options:
            given = preset_opts.get(name, {})
            for f in dataclasses.fields(cls.config_cls):
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                stage = f.metadata.get("stage", "fit")
                if f.name in cls.cost_knobs:  # what `ood-bench sweep` varies by default
                    stage += f"; cost knob, sweep ladder {_yaml(list(cls.cost_knobs[f.name]))}"
                value = _yaml(given[f.name]) if f.name in given else _yaml(default)
                origin = f" [preset; paper: {_yaml(default)}]" if f.name in given and given[f.name] != default else ""
                print(f"      {name}.{f.name}={value}  ({stage}){origin} {f.metadata.get('help', '')}")
    kinds = {"embedded": "ship with the packages, offline", "data-root": "under --data-root", "plugin": "from plugins"}
    for kind, where in kinds.items():
        if not any(spec.kind == kind for _, spec in DATASETS.items()):
            continue
        print(f"\ndatasets ({where}):")
        for name, spec in DATASETS.items():
            if spec.kind == kind:
                alias = DATASETS.aliases_of(name)
                extra = f" (alias: {', '.join(alias)})" if alias else ""
                print(f"  {name:14s}{spec.description}{extra}")
    print("\nany folder of images can be given by path (png/jpg/..., nested or flat)")
    if args.options:
        print(f"\noption values: the {Path(args.config or DEFAULT_PRESET).stem} preset's where it sets them, "
              f"else the paper default; written as --set takes them (YAML)")
    return 0


def _yaml(value) -> str:
    """A value as YAML flow syntax (``[1, 2]``, ``true``, ``null``), the way ``--set`` reads it."""
    import yaml

    def plain(v):
        return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v

    return yaml.safe_dump(plain(value), default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()


def _preset_options(config: str | None) -> dict[str, dict]:
    """The method options a preset sets, typed as the methods' configs type them."""
    from ood_bench.engine.config import RunConfig, apply_mapping, build_dataclass, find_preset, load_yaml
    from ood_bench.methods.registry import METHODS

    preset = find_preset(config or DEFAULT_PRESET)
    cfg = apply_mapping(RunConfig(), load_yaml(preset), str(preset))
    out = {}
    for name, opts in cfg.method_options.items():
        key = METHODS.canonical(name)
        typed = build_dataclass(METHODS.get(key).config_cls, opts, key)
        out[key] = {k: getattr(typed, k) for k in opts}
    return out


def _preset_summary(path: Path) -> str:
    """``ID digits04 vs near: digits59; far: textures, …; methods dlsr, lmd, …``."""
    from ood_bench.engine.config import RunConfig, apply_mapping, load_yaml

    try:
        cfg = apply_mapping(RunConfig(), load_yaml(path), str(path))
    except UserError as e:
        return f"(unreadable: {e.one_line()})"
    groups: dict[str, list[str]] = {}
    for n in cfg.ood:
        groups.setdefault(cfg.ood_groups.get(n, "ood"), []).append(n)
    ood = "; ".join(f"{g}: {', '.join(ns)}" for g, ns in groups.items())
    return f"ID {cfg.id} vs {ood}; methods {', '.join(cfg.methods)}"


# ------------------------------------------------------------------------------ leaderboard
def cmd_leaderboard(args: argparse.Namespace) -> int:
    from ood_bench.utils import atomic
    from ood_bench.reporting.leaderboard import build_leaderboard, merge_runs, provenance_lines

    metrics, manifests = merge_runs(args.runs, allow_mixed=args.allow_mixed)
    board = build_leaderboard(metrics, provenance_lines(manifests), primary_only=args.primary_only)
    if args.format == "latex":
        text = board.to_latex(sub_scores=args.sub_scores, resize=args.resizebox)
    else:
        text = board.export(args.format)
    if args.out:
        try:
            atomic.write_text(args.out, text)
        except OSError as e:
            raise UserError(f"--out {args.out} cannot be written ({e.strerror or type(e).__name__}); "
                            f"give a file path you can write to") from None
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ood_bench.reporting.compare import compare_runs

    result = compare_runs(args.run, args.reference, k=args.k, floor=args.floor / 100)
    sys.stdout.write(result.to_text())
    return 1 if len(result.drifted) else 0


def main(argv: list[str] | None = None) -> int:
    from ood_bench.utils import logs

    # a reader that goes away (`| head`) must neither print a traceback nor fail a run
    for name in ("stdout", "stderr"):
        if not isinstance(getattr(sys, name), logs.SafeStream):
            setattr(sys, name, logs.SafeStream(getattr(sys, name)))
    args = _parser().parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    try:
        logs.configure(level, args.log_file)
        commands = {"run": cmd_run, "list": cmd_list, "leaderboard": cmd_leaderboard, "speed": cmd_speed,
                    "fetch": cmd_fetch, "compare": cmd_compare, "sweep": cmd_sweep}
        rc = commands[args.command](args)
        sys.stdout.flush()
        return rc
    except UserError as e:
        print(f"error: {e.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished models and scores are cached; re-run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
