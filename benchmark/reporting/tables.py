"""The long-form metrics table: one row per method entry × seed × OOD set, plus mean rows.

An *entry* is a method's canonical score (``dlsr``) or one of its other sub-scores
(``dlsr[mse]``), so every variant a method computed is evaluated. Columns:

``entry, method, score, primary, seed, id, ood, group, n_id, n_ood, auroc, fpr95,
fpr95_oodpos, aupr_in, aupr_out, fit_s, img_per_s, nfe, steps, reps, peak_mem_mib, id_acc``

Mean rows have ``group == "mean"`` and ``ood`` = ``mean(near)``, ``mean(far)``, …, ``mean``
(over all OOD sets). Metrics are fractions in ``[0, 1]``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ood_bench.reporting.metrics import METRIC_NAMES, all_metrics

if TYPE_CHECKING:
    from ood_bench.outcomes import MethodResult

COST_COLS = ("fit_s", "img_per_s", "nfe", "steps", "reps", "peak_mem_mib", "id_acc")
KEY_COLS = ("entry", "method", "score", "primary", "seed", "id")
MEAN_GROUP = "mean"


def entry_name(method: str, score: str, primary: str) -> str:
    return method if score == primary else f"{method}[{score}]"


def metrics_frame(results: list[MethodResult], id_name: str) -> pd.DataFrame:
    """Per-set metrics for every result and sub-score, followed by the mean rows."""
    rows = []
    for r in results:
        primary = r.id.batch.primary
        subs = [primary, *(k for k in r.id.batch.scores if k != primary)]  # canonical entry first
        for sub in subs:
            id_s = r.id.batch.scores[sub]
            for o in r.ood:
                rows.append({
                    "entry": entry_name(r.method, sub, primary), "method": r.method, "score": sub,
                    "primary": sub == primary, "seed": r.seed, "id": id_name, "ood": o.name,
                    "group": o.group, "n_id": len(id_s), "n_ood": len(o.batch),
                    **all_metrics(id_s, o.batch.scores[sub]),
                    "fit_s": r.fit_seconds, "img_per_s": r.images_per_second, "nfe": r.nfe,
                    "steps": r.budget.get("steps", np.nan), "reps": r.budget.get("reps", np.nan),
                    "peak_mem_mib": r.peak_mem_mib, "id_acc": r.id_accuracy,
                })
    return add_mean_rows(pd.DataFrame(rows))


def add_mean_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Append, per entry and seed, the mean over each OOD group and over all OOD sets."""
    sets = df[df["group"] != MEAN_GROUP]
    means = []
    for _, g in sets.groupby(["entry", "seed", "id"], sort=False):
        groups = list(dict.fromkeys(g["group"]))
        parts = [(f"mean({grp})", g[g["group"] == grp]) for grp in groups] if len(groups) > 1 else []
        for label, part in [*parts, ("mean", g)]:
            row = part.iloc[0][list(KEY_COLS)].to_dict()
            row.update({"ood": label, "group": MEAN_GROUP, "n_id": part["n_id"].iloc[0],
                        "n_ood": int(part["n_ood"].sum())})
            row.update({m: float(part[m].mean()) for m in METRIC_NAMES})
            row.update({c: part[c].iloc[0] for c in COST_COLS})
            means.append(row)
    return pd.concat([sets, pd.DataFrame(means)], ignore_index=True) if means else sets


def seed_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every numeric column, per entry × OOD row.

    Returns a frame with ``<col>`` (mean), ``<col>_std`` and ``seeds`` (count) columns, rows in
    first-appearance order.
    """
    keys = ["entry", "method", "score", "primary", "id", "ood", "group"]
    num = [*METRIC_NAMES, *COST_COLS, "n_id", "n_ood"]
    g = df.groupby(keys, sort=False, dropna=False)
    mean = g[num].mean()
    std = g[list(METRIC_NAMES) + list(COST_COLS)].std(ddof=1).add_suffix("_std")
    out = mean.join(std)
    out["seeds"] = g["seed"].nunique()
    return out.reset_index()


def finite_or_nan(x: float) -> float:
    return float(x) if x is not None and np.isfinite(x) else float("nan")


def artifacts_frame(results: list[MethodResult]) -> pd.DataFrame:
    """One row per shared artifact of a run (per seed): its kind and key, its build time — counted
    once, in the fit time of ``built_for`` (the method that got it first: trained or loaded) —
    how that method got it, and the methods that used the same object (``shared_with``)."""
    rows: dict[tuple[int, str], dict] = {}
    for r in results:
        for a in r.artifacts:
            row = rows.setdefault((r.seed, a.key), {
                "seed": r.seed, "kind": a.kind, "key": a.key, "build_s": a.seconds, "built_for": a.owner or r.method,
                "status": a.status, "shared_with": [], "folder": a.folder})
            if a.status == "shared":
                row["shared_with"].append(r.method)
    out = pd.DataFrame(list(rows.values()), columns=["seed", "kind", "key", "build_s", "built_for", "status",
                                                     "shared_with", "folder"])
    out["shared_with"] = out["shared_with"].map(lambda m: ", ".join(m) if m else "-")
    return out
