"""Run configuration: YAML presets, command-line overrides and typed method configs.

A preset (``configs/<name>.yaml``) looks like::

    id: digits04
    ood:                       # a list, or groups (near/far/...) of lists
      near: [digits59]
      far: [textures, faces, photos, noise]
    methods:                   # a list of names, or name → options
      dlsr: {image_size: 96, epochs: 60}
    seeds: [0]
    device: auto

Command-line flags override the file; ``--set METHOD.OPTION=VALUE`` overrides one method
option (values parsed as YAML: ``3``, ``0.5``, ``true``, ``[1, 2]``).
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ood_bench.utils.errors import ConfigError

# The presets ship inside the package (configs/ is installed as ``ood_bench.configs``), so
# ``--config cifar10`` works from any folder, installed editable or not.
PRESETS_DIR = Path(str(importlib.resources.files("ood_bench.configs")))
DEFAULT_CACHE = Path("results") / "cache"


@dataclass
class RunConfig:
    """Everything a run needs. ``method_options[name]`` holds option overrides per method.

    ``ood_groups`` maps each OOD set to its group (``near``/``far``/…; ``ood`` when ungrouped).
    ``batch_size=None`` lets each method use its own default.
    """

    id: str = "digits04"
    ood: list[str] = field(default_factory=list)
    ood_groups: dict[str, str] = field(default_factory=dict)
    methods: list[str] = field(default_factory=list)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    compile: str = "auto"
    compile_backend: str = "inductor"
    precision: str = "auto"
    fast_path: str = "auto"
    data_root: str = "~/data"
    download: bool = False
    batch_size: int | None = None
    workers: int = 2
    limit: int | None = None
    train_limit: int | None = None
    out: str | None = None
    cache_dir: str = str(DEFAULT_CACHE)
    use_cache: bool = True
    skip_unreadable: bool = False
    bootstrap: int = 1000
    steps: int | None = None
    reps: int | None = None
    preset: str | None = None
    plugins: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_run_bounds(cfg: RunConfig) -> None:
    """Refuse out-of-range run settings up front (before any data is loaded or model fitted)."""
    for flag, v, low in (("--batch-size", cfg.batch_size, 1), ("--limit", cfg.limit, 1),
                         ("--train-limit", cfg.train_limit, 1), ("--workers", cfg.workers, 0),
                         ("--bootstrap", cfg.bootstrap, 0)):
        if v is not None and v < low:
            what = "a positive number" if low == 1 else "0 or more"
            raise ConfigError(f"{flag} {v}: must be {what}")
    if not cfg.seeds:
        raise ConfigError("no seed given; use --seed N or --seeds N ...")


RUN_KEYS = {f.name for f in dataclasses.fields(RunConfig)} - {"method_options", "ood_groups", "preset"}


def find_preset(name_or_path: str) -> Path:
    """A YAML path, or the name of a preset in ``configs/`` (``embedded`` → configs/embedded.yaml)."""
    p = Path(os.path.expanduser(name_or_path))
    if p.is_file():
        return p
    for cand in (PRESETS_DIR / name_or_path, PRESETS_DIR / f"{name_or_path}.yaml"):
        if cand.is_file():
            return cand
    known = ", ".join(sorted(q.stem for q in PRESETS_DIR.glob("*.yaml")))
    raise ConfigError(f"config {name_or_path!r} not found (no such file, and no preset of that name; presets: {known})")


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of options")
    return data


def apply_mapping(cfg: RunConfig, data: dict[str, Any], source: str) -> RunConfig:
    """Merge a preset's mapping into ``cfg``."""
    data = dict(data)
    if "seed" in data:
        data["seeds"] = [data.pop("seed")]
    if "ood" in data:
        ood = data.pop("ood")
        if isinstance(ood, dict):
            cfg.ood, cfg.ood_groups = [], {}
            for group, names in ood.items():
                for n in _as_list(names, f"{source}: ood.{group}"):
                    cfg.ood.append(str(n))
                    cfg.ood_groups[str(n)] = str(group)
        else:
            cfg.ood = [str(n) for n in _as_list(ood, f"{source}: ood")]
            cfg.ood_groups = {}
    if "methods" in data:
        methods = data.pop("methods")
        if isinstance(methods, dict):
            cfg.methods = list(methods)
            for m, opts in methods.items():
                if opts is not None and not isinstance(opts, dict):
                    raise ConfigError(f"{source}: options of method {m} must be a mapping")
                cfg.method_options.setdefault(m, {}).update(opts or {})
        else:
            cfg.methods = [str(m) for m in _as_list(methods, f"{source}: methods")]
    unknown = set(data) - RUN_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(RUN_KEYS | {'seed'}))}")
    for k, v in data.items():
        v = coerce(v, _run_hints()[k], f"{source}: {k}")
        if k == "plugins":  # plugins add up: a preset's and the command line's
            v = [*cfg.plugins, *(p for p in v if p not in cfg.plugins)]
        setattr(cfg, k, v)
    return cfg


def _as_list(v: Any, where: str) -> list:
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, (str, int)):
        return [v]
    raise ConfigError(f"{where}: expected a list")


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["dlsr.t=5", "lmd.reps=4"]`` → ``{"dlsr": {"t": 5}, "lmd": {"reps": 4}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, option = key.strip().partition(".")
        if not sep or not dot or not method or not option:
            raise ConfigError(f"--set {item!r}: expected METHOD.OPTION=VALUE, e.g. dlsr.score=mse")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        out.setdefault(method, {})[option] = parsed
    return out


# ------------------------------------------------------------------ typed dataclass building
def _run_hints() -> dict[str, Any]:
    return typing.get_type_hints(RunConfig)


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a YAML value to type ``tp`` (int, float, bool, str, tuples, lists, Optional)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], where) for v in value)
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a, where) for v, a in zip(value, args))
        return [coerce(v, args[0], where) for v in value] if args else list(value)
    if origin is dict or tp is Any:
        return value
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def build_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    """``cls(**values)`` with unknown keys refused and every value type-checked."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(f'{where}.{u}' for u in sorted(unknown))}; "
            f"known: {', '.join(sorted(fields))} (see `ood-bench list --options`)"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None
