"""Arithmetic drift of the fast path: one fitted model scored twice, with the fast path and with
the fp32 reference, compared per image and by AUROC (``ood-bench run --drift``).

Both scorings load the very same cached model (fitted, or loaded, under the run's own options),
so the differences are the arithmetic's alone — not training chaos, as two separately fitted
models would give. The two sides:

- ``fast``: ``--precision bf16`` (autocast), ``--fast-path on`` (uint8 batches resized on the
  device, channels_last) and the run's ``--compile`` / ``--compile-backend``;
- ``reference``: true fp32 (TF32 off), the plain path (per-image resize in the loader, standard
  layout), eager.

Per method (canonical score) and set: both AUROCs (each OOD set against the ID test set;
higher score = more OOD), their difference in AUROC points, and the relative per-image
difference ``|s_fast − s_ref| / max(|s_ref|, 0.01 · median |s_ref|)`` (the floor keeps scores
that happen to be near 0, such as a difference of two errors, from dividing by ~0): its max
and median over the set's images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from ood_bench.engine.cache import Cache
from ood_bench.engine.runner import PreparedRun, Runner, display_name
from ood_bench.utils.device import numerics
from ood_bench.utils.progress import log as default_log


@dataclass(frozen=True)
class Numerics:
    """One side of the comparison: ``--precision``, ``--fast-path``, ``--compile``."""

    precision: str
    fast_path: str
    compile: str

    def describe(self) -> str:
        return f"precision {self.precision}, fast path {self.fast_path}, compile {self.compile}"


REFERENCE = Numerics("fp32", "off", "off")


def fast_side(compile: str) -> Numerics:
    """The fast path on any device: bf16 autocast, native-size batches, channels_last, ``compile``."""
    return Numerics("bf16", "on", compile)


@dataclass
class DriftRow:
    """One method × set: AUROCs in [0, 1] (``None`` for the ID set) and relative per-image differences."""

    method: str
    dataset: str
    role: str
    images: int
    auroc_reference: float | None
    auroc_fast: float | None
    max_rel: float
    median_rel: float

    @property
    def auroc_diff_points(self) -> float | None:
        """``100 · (AUROC_fast − AUROC_reference)``."""
        if self.auroc_fast is None or self.auroc_reference is None:
            return None
        return 100.0 * (self.auroc_fast - self.auroc_reference)


def relative_difference(fast: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``|fast − ref| / max(|ref|, 0.01 · median |ref|)`` per image (0 where both are 0)."""
    fast, ref = np.asarray(fast, np.float64), np.asarray(ref, np.float64)
    floor = 0.01 * float(np.median(np.abs(ref)))
    den = np.maximum(np.abs(ref), floor if floor > 0 else np.finfo(np.float64).tiny)
    return np.abs(fast - ref) / den


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """AUROC of OOD (positive) against ID, higher score = more OOD."""
    y = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
    return float(roc_auc_score(y, np.r_[id_scores, ood_scores]))


def measure_drift(prep: PreparedRun, cache: Cache, fast: Numerics, reference: Numerics = REFERENCE,
                  log: Callable[[str], None] = default_log) -> list[DriftRow]:
    """For each method of ``prep`` (first seed): fit or load its model once, score the ID test
    set and every OOD set with ``reference`` and with ``fast``, and compare. ``prep`` comes
    from :func:`~ood_bench.engine.runner.prepare` (datasets loaded)."""
    runner = Runner(prep, cache)
    seed = prep.cfg.seeds[0]
    sets = {display_name(prep.cfg.id): ("id", prep.id_test), **{n: ("ood", ds) for n, ds in prep.oods.items()}}
    rows: list[DriftRow] = []
    for key, (cls, mcfg) in prep.methods.items():
        _, fit_key, _, _ = runner.fitted(key, cls, mcfg, seed)
        model_dir = cache.model_dir(key, fit_key)
        scores: dict[str, dict[str, np.ndarray]] = {}
        for side, num in (("reference", reference), ("fast", fast)):
            with numerics(num.precision, num.fast_path):
                method = cls(mcfg, runner.context(cls, seed, compile=num.compile))
                runner.attach(method, key, seed)  # the very artifacts the fit used (shared objects)
                method.load(model_dir)
                log(f"{key}: scoring with {num.describe()}")
                scores[side] = {name: method.score(ds, desc=f"{key} {side} {name}").canonical
                                for name, (_, ds) in sets.items()}
        id_name = display_name(prep.cfg.id)
        first = len(rows)
        for name, (role, ds) in sets.items():
            ref, fst = scores["reference"][name], scores["fast"][name]
            rel = relative_difference(fst, ref)
            a_ref = a_fast = None
            if role == "ood":
                a_ref = auroc(scores["reference"][id_name], ref)
                a_fast = auroc(scores["fast"][id_name], fst)
            rows.append(DriftRow(key, name, role, len(ds), a_ref, a_fast, float(rel.max()), float(np.median(rel))))
        log(f"{key}: drift\n{format_drift(rows[first:])}")  # as each method finishes: long runs keep their figures
    return rows


def drift_frame(rows: list[DriftRow]):
    """The rows as a pandas DataFrame (AUROCs in points)."""
    import pandas as pd

    def pts(v: float | None) -> float:
        return float("nan") if v is None else 100.0 * v

    return pd.DataFrame([{"method": r.method, "set": r.dataset, "role": r.role, "images": r.images,
                          "auroc_fp32": pts(r.auroc_reference), "auroc_fast": pts(r.auroc_fast),
                          "diff_points": float("nan") if r.auroc_diff_points is None else r.auroc_diff_points,
                          "max_rel": r.max_rel, "median_rel": r.median_rel} for r in rows])


def format_drift(rows: list[DriftRow]) -> str:
    """A plain-text table of :func:`drift_frame`, with the worst figures last."""
    df = drift_frame(rows)
    text = df.to_markdown(index=False, tablefmt="simple", floatfmt=".4g", missingval="-")
    ood = df[df.role == "ood"]
    worst = f"max |AUROC diff| {ood.diff_points.abs().max():.3g} points" if len(ood) else "no OOD set"
    return f"{text}\n\n{worst}; max relative per-image difference {df.max_rel.max():.3g}"
