"""``ood-bench sweep``: every method's cost knobs over a grid, on one fitted model per method.

A method declares its *cost knobs* (:attr:`OODMethod.cost_knobs`): scoring options that trade
accuracy for network evaluations, each with a default ladder of values. A sweep scores the run's
ID test set and OOD sets once per grid point (the product of a method's ladders), through the
same :class:`~ood_bench.engine.runner.Runner` as ``ood-bench run``: the fitted model is keyed by
the fit options only, so it is fitted (or loaded) once and every point re-scores it; scores are
cached per point, so a rerun or a wider grid only scores the points that are new, and a point's
scores are bit-identical to a plain run with the same options.

A knob may also be a *fit* option when the method declares it (MSMA's noise levels, DiffPath's
inversion steps: their own fit is a post-hoc density on statistics of a shared network): the
method then refits its density at each point, never the shared network — a point whose config
would ask for another shared network is refused.

Ladders come, in order of precedence, from ``--grid METHOD.OPTION=V1,V2,...`` (the command line),
the preset's ``sweep:`` mapping (``{method: {option: [values]}}``), then the method's declared
``cost_knobs``. A method named in the command line or the preset varies only the knobs named
there; the others keep the preset's value.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Callable

import torch
import yaml

from ood_bench.engine.cache import Cache
from ood_bench.engine.config import build_dataclass
from ood_bench.engine.fit_pool import prefit
from ood_bench.engine.runner import PreparedRun, Runner
from ood_bench.methods.base import MethodConfig, OODMethod, RunContext
from ood_bench.methods.registry import METHODS
from ood_bench.outcomes import MethodResult
from ood_bench.utils.errors import ConfigError

Grid = dict[str, dict[str, list[Any]]]  # method -> option -> ladder


@dataclass(frozen=True)
class SweepPoint:
    """One method at one grid point: the knob values and the full typed config they give."""

    method: str
    knobs: tuple[tuple[str, Any], ...]  # (option, value) in ladder order; () = the preset's config
    config: MethodConfig

    @property
    def label(self) -> str:
        """``steps=10 reps=2`` (``preset`` when the method has no knob)."""
        return " ".join(f"{k}={_fmt(v)}" for k, v in self.knobs) or "preset"


def _fmt(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def parse_grid(items: list[str]) -> Grid:
    """``["lmd.steps=10,50,1000", "lmd.reps=2,4"]`` → ``{"lmd": {"steps": [10, 50, 1000], "reps": [2, 4]}}``.

    Each comma-separated value is read as YAML (``10``, ``0.5``, ``true``, ``mse``)."""
    grid: Grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        method, dot, option = key.strip().partition(".")
        if not sep or not dot or not method or not option or not values.strip():
            raise ConfigError(f"--grid {item!r}: expected METHOD.OPTION=V1,V2,..., e.g. lmd.steps=10,50,1000")
        ladder = []
        for v in values.split(","):
            try:
                ladder.append(yaml.safe_load(v) if v.strip() else v)
            except yaml.YAMLError:
                ladder.append(v.strip())
        if option in grid.get(method, {}):
            raise ConfigError(f"--grid names {method}.{option} twice; give all its values in one item")
        grid.setdefault(method, {})[option] = ladder
    return grid


def _ladders(cls: type[OODMethod], key: str, given: dict[str, Any] | None) -> dict[str, list[Any]]:
    """The knobs to vary for one method, validated: score options of its config, non-empty,
    without repeats."""
    ladders = {k: list(v) for k, v in (given if given is not None else cls.cost_knobs).items()}
    fields = {f.name: f for f in dataclasses.fields(cls.config_cls)}
    for option, values in ladders.items():
        if option not in fields:
            raise ConfigError(f"sweep: {key} has no option {option!r}; its cost knobs are "
                              f"{', '.join(cls.cost_knobs) or 'none'} (see `ood-bench list --options`)")
        if fields[option].metadata.get("stage", "fit") != "score" and option not in cls.cost_knobs:
            raise ConfigError(f"sweep: {key}.{option} is a fit option (changing it retrains the model); "
                              f"a sweep varies scoring options only, e.g. {', '.join(cls.cost_knobs) or 'none'}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep: {key}.{option} needs a non-empty list of values")
        if len({_fmt(v) for v in values}) != len(values):
            raise ConfigError(f"sweep: {key}.{option} lists a value twice: {values}")
    return ladders


def plan_sweep(prep: PreparedRun, grid: Grid) -> list[SweepPoint]:
    """Every (method, grid point) of the run, each config built and checked before anything runs.

    Raises :class:`ConfigError` for a grid naming a method the run does not have, an unknown or
    fit-stage option, or a value the method's config refuses (out of range, wrong type)."""
    cfg = prep.cfg
    if cfg.steps is not None or cfg.reps is not None:
        raise ConfigError("a sweep varies each method's own cost knobs: drop --steps/--reps (equal budgets are one point)")
    if not cfg.use_cache:
        raise ConfigError("a sweep re-scores one cached model per method: it cannot run with --no-cache")
    preset_grid = cfg.sweep or {}
    for name in grid:  # the preset's sweep: may list methods this sweep leaves out (--method)
        key = METHODS.canonical(name) if name in METHODS else name
        if key not in prep.methods:
            raise ConfigError(f"--grid names method {name!r}, which this sweep does not run "
                              f"(methods: {', '.join(prep.methods)})")
    points: list[SweepPoint] = []
    for key, (cls, _) in prep.methods.items():
        given = _for(grid, key) if _for(grid, key) is not None else _for(preset_grid, key)
        ladders = _ladders(cls, key, given)
        base = {**cfg.method_options.get(key, {})}
        base_cfg = build_dataclass(cls.config_cls, base, key)
        seen: set[str] = set()
        for values in itertools.product(*ladders.values()):
            knobs = tuple(zip(ladders, values))
            mcfg = build_dataclass(cls.config_cls, {**base, **dict(knobs)}, f"sweep point {key}")
            cls.preflight(mcfg)
            if _requests(cls, mcfg) != _requests(cls, base_cfg):
                raise ConfigError(f"sweep: {key} at {' '.join(f'{k}={_fmt(v)}' for k, v in knobs)} would train "
                                  f"another shared network; a sweep re-scores the networks it has")
            fingerprint = repr(mcfg.to_dict())
            if fingerprint not in seen:  # two ladders may meet in one config
                seen.add(fingerprint)
                points.append(SweepPoint(key, knobs, mcfg))
    return points


def _requests(cls: type[OODMethod], mcfg: MethodConfig) -> dict[str, dict]:
    """The identities of the shared artifacts a method of config ``mcfg`` asks for."""
    method = cls(mcfg, RunContext(device=torch.device("cpu")))
    return {name: r.identity() for name, r in method.requires().items()}


def _for(grid: Grid, key: str) -> dict[str, Any] | None:
    """The grid entry of method ``key`` under its name or any alias."""
    for name, entry in grid.items():
        if name == key or (name in METHODS and METHODS.canonical(name) == key):
            if not isinstance(entry, dict):
                raise ConfigError(f"sweep: the ladders of {name} must be a mapping option -> [values]")
            return entry
    return None


def run_sweep(prep: PreparedRun, points: list[SweepPoint], cache: Cache,
              init: Callable[[], Any] | None = None) -> list[tuple[SweepPoint, MethodResult]]:
    """Score every point for every seed of the run (points of one method share its fitted model);
    models not cached yet are fitted first, side by side where the run has fit workers (``init``:
    see :func:`~ood_bench.engine.fit_pool.prefit`)."""
    runner = Runner(prep, cache)
    prefit(runner, [(p.method, METHODS.get(p.method), p.config, seed) for seed in prep.cfg.seeds for p in points],
           init=init)
    out = []
    for seed in prep.cfg.seeds:
        for p in points:
            out.append((p, runner.run_method(p.method, METHODS.get(p.method), p.config, seed)))
    return out
