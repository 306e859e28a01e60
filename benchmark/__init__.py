"""ood-bench: unsupervised OOD detection with diffusion models (DLSR, LMD, DiffOOD) and baselines.

The public API (see :mod:`ood_bench.api`)::

    import ood_bench
    res = ood_bench.run(id="digits04", ood=["textures"], methods=["dlsr", "knn"])
    m = ood_bench.create_method("dlsr", preset="embedded")

Layers, lowest first; a layer imports only those below it:

- :mod:`ood_bench.utils`      errors, atomic writes, progress/logging, device, registry base;
- :mod:`ood_bench.data`       datasets and their registry;
- :mod:`ood_bench.methods`    the detector contract, the method registry, every method;
- :mod:`ood_bench.outcomes`    result types of a run;
- :mod:`ood_bench.engine`     run configuration, cache, runner, speed measurements, manifest;
- :mod:`ood_bench.reporting`  metrics, tables, leaderboard, statistics, plots, HTML, run folders;
- :mod:`ood_bench.plugins`, :mod:`ood_bench.api`, :mod:`ood_bench.cli`.

Names below are imported lazily: ``import ood_bench.utils.errors`` (done by every lower layer)
must not pull in torch-heavy modules through this file.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "run": "ood_bench.api", "execute": "ood_bench.api", "create_method": "ood_bench.api",
    "load_dataset": "ood_bench.api", "RunResult": "ood_bench.api", "fit_method": "ood_bench.api",
    "Artifact": "ood_bench.methods.artifacts", "ArtifactRequest": "ood_bench.methods.artifacts",
    "register_artifact": "ood_bench.methods.artifacts",
    "OODMethod": "ood_bench.methods.base", "MethodConfig": "ood_bench.methods.base",
    "BatchOutput": "ood_bench.methods.base", "ScoreBatch": "ood_bench.methods.base",
    "fit_option": "ood_bench.methods.base", "score_option": "ood_bench.methods.base",
    "register_method": "ood_bench.methods.registry",
    "register_dataset": "ood_bench.data.registry", "ImageDataset": "ood_bench.data.base",
    "ArrayDataset": "ood_bench.data.base", "ImageTransform": "ood_bench.data.transforms",
    "load_plugin": "ood_bench.plugins", "load_method": "ood_bench.api",
    "auroc": "ood_bench.reporting.metrics", "fpr95": "ood_bench.reporting.metrics",
    "fpr95_oodpos": "ood_bench.reporting.metrics", "aupr_in": "ood_bench.reporting.metrics",
    "aupr_out": "ood_bench.reporting.metrics", "all_metrics": "ood_bench.reporting.metrics",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        if name in ("register_method", "OODMethod") or _EXPORTS[name] == "ood_bench.api":
            importlib.import_module("ood_bench.plugins").load_builtins()  # built-ins before user code
        return getattr(module, name)
    raise AttributeError(f"module 'ood_bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
