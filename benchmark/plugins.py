"""Methods and datasets from outside this package.

Two ways in, both ending in the same registries (:data:`ood_bench.methods.registry.METHODS`,
:data:`ood_bench.data.registry.DATASETS`):

- **entry points** of installed distributions, groups ``ood_bench.methods`` and
  ``ood_bench.datasets``. An entry point names a module (importing it runs its
  ``@register_method`` / ``@register_dataset`` decorators) or an object: an
  :class:`~ood_bench.methods.base.OODMethod` subclass or a dataset factory
  ``f(ctx, split) -> ImageDataset``, registered under the entry point's name unless it registered
  itself. In ``pyproject.toml``::

      [project.entry-points."ood_bench.methods"]
      pixel-l2 = "my_package.detectors:PixelL2"

- **a file or module named at run time**: ``ood-bench run --plugin my_detector.py`` (or
  ``--plugin my_package.detectors``, or ``plugins: [...]`` in a preset, or
  ``ood_bench.run(..., plugins=[...])``). Importing it registers what it declares.

A plugin that fails to load is reported in one line naming it and the error.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import importlib.util
import inspect
import os
import sys
from pathlib import Path

from ood_bench.utils.errors import ConfigError, UserError

METHOD_GROUP = "ood_bench.methods"
DATASET_GROUP = "ood_bench.datasets"

_loaded: dict[str, object] = {}  # plugin spec (resolved path or module name) → module
_entry_points_done = False


def load_builtins() -> None:
    """Import the built-in methods and datasets (registers them), then the entry points."""
    import ood_bench.data  # noqa: F401
    import ood_bench.methods  # noqa: F401

    load_entry_points()


def load_entry_points() -> None:
    """Load every ``ood_bench.methods`` / ``ood_bench.datasets`` entry point, once per process."""
    global _entry_points_done
    if _entry_points_done:
        return
    _entry_points_done = True
    for group in (METHOD_GROUP, DATASET_GROUP):
        for ep in md.entry_points(group=group):
            try:
                obj = ep.load()
            except (Exception, SystemExit) as e:  # a broken third-party package must not hide which one it is
                raise ConfigError(f"plugin {ep.name!r} (entry point {ep.value} in group {group}) failed to "
                                  f"load: {_why(e)}; fix or uninstall the package that provides it") from None
            _register_object(ep.name, obj, group)


def _register_object(name: str, obj: object, group: str) -> None:
    """Register an entry point's object under ``name`` unless it is a module or already registered."""
    if inspect.ismodule(obj):
        return
    if group == METHOD_GROUP:
        from ood_bench.methods.base import OODMethod
        from ood_bench.methods.registry import METHODS, register_method

        if not (inspect.isclass(obj) and issubclass(obj, OODMethod)):
            raise ConfigError(f"entry point {name!r} in {group} is not an OODMethod subclass or a module")
        if obj not in dict(METHODS.items()).values():
            register_method(name)(obj)
    else:
        from ood_bench.data.registry import DATASETS, register_dataset

        if not callable(obj):
            raise ConfigError(f"entry point {name!r} in {group} is not a dataset factory or a module")
        if name not in DATASETS:
            doc = (inspect.getdoc(obj) or f"dataset from plugin {name}").splitlines()[0]
            register_dataset(name, kind="plugin", description=doc, labelled=False)(obj)


def load_plugin(spec: str) -> object:
    """Import a plugin given as a ``.py`` file path or a dotted module name; returns the module.

    Loading the same plugin twice is a no-op (its decorators must not register twice)."""
    path = Path(os.path.expanduser(spec))
    is_file = spec.endswith(".py") or os.sep in spec
    key = str(path.resolve()) if is_file else spec
    if key in _loaded:
        return _loaded[key]
    load_builtins()
    if is_file and not path.is_file():
        raise ConfigError(f"plugin file {spec} does not exist; give the path of a .py file or a module name")
    try:
        if is_file:
            # the same name in every process (fit workers unpickle the plugin's configs by it)
            name = f"ood_bench_plugin_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
            mod_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module  # dataclasses and pickling look the module up by name
            try:
                mod_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            module = importlib.import_module(spec)
    except UserError as e:  # the plugin's own one-line error: said as its own
        raise ConfigError(f"plugin {spec} failed to load: {e.one_line()}") from None
    except ModuleNotFoundError as e:
        if not is_file and e.name and spec.startswith(e.name):
            raise ConfigError(f"plugin module {spec!r} not found; give a .py file path or an importable module") from None
        raise ConfigError(f"plugin {spec} failed to load: {type(e).__name__}: {e}") from None
    except (Exception, SystemExit) as e:  # SystemExit too: a plugin must not end the run silently
        raise ConfigError(f"plugin {spec} failed to load: {_why(e)}; fix the plugin or drop --plugin {spec}") from None
    _loaded[key] = module
    return module


def _why(e: BaseException) -> str:
    """One line saying why importing a plugin failed."""
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r}) on import"
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__

def load_plugins(specs: list[str] | tuple[str, ...]) -> None:
    """The built-ins, the entry points, and every plugin in ``specs``."""
    load_builtins()
    for s in specs:
        load_plugin(s)
