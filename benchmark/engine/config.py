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
DEFAULT_PRESET = "embedded"  # what `ood-bench run` and ood_bench.run() start from without --config / config=


@dataclass
class RunConfig:
    """Everything a run needs. ``method_options[name]`` holds option overrides per method.

    ``ood_groups`` maps each OOD set to its group (``near``/``far``/…; ``ood`` when ungrouped).
    ``batch_size=None`` lets each method use its own default. ``validation``: the fraction of
    the ID training split held out per seed (DDPM-OOD's 5 %): artifacts requested with
    ``data="fit"`` train without it, methods with ``needs_validation`` receive it; never ID test.
    ``fit_workers``: processes fitting independent models side by side
    (:mod:`ood_bench.engine.fit_pool`; ``auto``: one per core on a CPU, 1 on a GPU);
    ``score_in_workers``: they score every set too (faster on many cores; img/s are then
    measured side by side, sharing the cores).
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
    fit_workers: int | str = "auto"
    score_in_workers: bool = False
    limit: int | None = None
    train_limit: int | None = None
    validation: float = 0.05
    id_test_fraction: float | None = None
    out: str | None = None
    cache_dir: str = str(DEFAULT_CACHE)
    use_cache: bool = True
    skip_unreadable: bool = False
    bootstrap: int = 1000
    steps: int | None = None
    reps: int | None = None
    preset: str | None = None
    plugins: list[str] = field(default_factory=list)
    sweep: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # ood-bench sweep: method -> option -> ladder

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fit_workers_setting(value: int | str) -> int | str:
    """``--fit-workers`` / ``fit_workers:`` as a run takes it: ``"auto"`` or a positive number
    (an ``int`` or its digits); a :class:`ConfigError` naming the fix otherwise."""
    if value == "auto":
        return value
    n = value
    if isinstance(value, str):
        try:
            n = int(value)
        except ValueError:
            n = 0
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"--fit-workers {value}: give a positive number or auto")
    return n


def check_run_bounds(cfg: RunConfig) -> None:
    """Refuse out-of-range run settings up front (before any data is loaded or model fitted)."""
    for flag, v, low in (("--batch-size", cfg.batch_size, 1), ("--limit", cfg.limit, 1),
                         ("--train-limit", cfg.train_limit, 1), ("--workers", cfg.workers, 0),
                         ("--bootstrap", cfg.bootstrap, 0)):
        if v is not None and v < low:
            what = "a positive number" if low == 1 else "0 or more"
            raise ConfigError(f"{flag} {v}: must be {what}")
    fit_workers_setting(cfg.fit_workers)
    if not 0.0 <= cfg.validation < 1.0:
        raise ConfigError(f"--validation {cfg.validation}: must be a fraction in [0, 1) of the ID training set")
    if not cfg.seeds:
        raise ConfigError("no seed given; use --seed N or --seeds N ...")
    twice = sorted({s for s in cfg.seeds if cfg.seeds.count(s) > 1})
    if twice:
        raise ConfigError(f"seed(s) {', '.join(map(str, twice))} given twice in {cfg.seeds}: one run would count "
                          f"as several; give each seed once")
    if cfg.id_test_fraction is not None and not 0 < cfg.id_test_fraction < 1:
        raise ConfigError(f"--id-test-fraction {cfg.id_test_fraction}: must lie strictly between 0 and 1, e.g. 0.2")
    for name in dict.fromkeys(n for n in cfg.ood if cfg.ood.count(n) > 1):
        raise ConfigError(f"OOD set {name} is given twice (in one list, or as both near and far); give each set "
                          f"once, in one group")


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


class UniqueKeySafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only, never Python objects) that refuses a key given twice
    in one mapping: YAML's own rule is that the last one silently wins. Keys merged in with
    ``<<: *anchor`` may still be overridden (that is what a merge is for)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                dup = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if dup:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (line {seen[key] + 1} and line "
                                f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str) -> Any:
    """YAML text as plain data (:class:`UniqueKeySafeLoader`)."""
    return yaml.load(text, Loader=UniqueKeySafeLoader)


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at offset {e.start}); "
                          f"save the config as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or type(e).__name__}); give a readable YAML file") from None
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
            parsed = safe_load(value) if value.strip() else ""
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


def counts_at_least_one(option: str) -> bool:
    """Options that count something that must happen at least once, in every method's config:
    ``epochs`` and ``*_epochs``, ``*batch_size``, ``checkpoint_every`` (0 would divide by zero
    or train nothing and fail late)."""
    return (option == "epochs" or option.endswith("_epochs") or option.endswith("batch_size")
            or option == "checkpoint_every")


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
    for k, v in kwargs.items():
        if counts_at_least_one(k) and isinstance(v, int) and v < 1:
            raise ConfigError(f"{where}.{k}={v}: must be at least 1")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None
