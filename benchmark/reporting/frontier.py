"""The cost–accuracy frontier of a sweep: table, Pareto set, each method's knee, plots, report.

::

    SWEEP_DIR/frontier.csv     one row per method × grid point × OOD set (and mean rows)
    SWEEP_DIR/frontier.md      the mean-over-OOD-sets rows, Pareto points marked
    SWEEP_DIR/knees.yaml       the sweep's preset with every method at its knee (a --config)
    SWEEP_DIR/plots/frontier_nfe.{png,pdf}, frontier_seconds.{png,pdf}
    SWEEP_DIR/report.html      the tables and both plots
    SWEEP_DIR/manifest.json    ``kind: sweep``; ``leaderboard``/``compare`` refuse such folders

Conventions: AUROC of each method's canonical score (OOD positive), as fractions in the CSV;
``nfe`` = network evaluations per scored image (all networks); ``s_per_img`` = measured scoring
seconds per image on the sweep's device (ID test and OOD sets together, mean over seeds). A point
is **Pareto** (per OOD row) when no other point has a cost (NFE) at most as high and an AUROC at
least as high, one of them strictly. A method's **knee** is its cheapest point whose mean AUROC
is within ``tolerance`` points of the AUROC of its most expensive point.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import yaml

from ood_bench.reporting.bootstrap import confidence_intervals
from ood_bench.reporting.html import escape_frame, table_html, write_report
from ood_bench.reporting.leaderboard import method_title, provenance_lines
from ood_bench.reporting.plots import frontier_plot
from ood_bench.reporting.tables import MEAN_GROUP, metrics_frame
from ood_bench.utils import atomic
from ood_bench.utils.atomic import write_json

DEFAULT_TOLERANCE = 0.5  # AUROC points
FRONTIER_FILE = "frontier.csv"


def pareto_mask(cost: Iterable[float], auroc: Iterable[float]) -> np.ndarray:
    """``True`` where no other point has cost ≤ and AUROC ≥ with one of them strict."""
    c, a = np.asarray(list(cost), float), np.asarray(list(auroc), float)
    keep = np.ones(len(c), bool)
    for i in range(len(c)):
        dominated = (c <= c[i]) & (a >= a[i]) & ((c < c[i]) | (a > a[i]))
        keep[i] = not dominated.any()
    return keep


def knee_index(cost: Iterable[float], auroc: Iterable[float], tolerance: float = DEFAULT_TOLERANCE / 100) -> int:
    """Index of the cheapest point whose AUROC ≥ (AUROC of the most expensive point) − ``tolerance``.

    Ties in cost are broken by the higher AUROC, then by order. ``tolerance`` is in AUROC units
    (0.005 = half a point when AUROC is a fraction)."""
    c, a = np.asarray(list(cost), float), np.asarray(list(auroc), float)
    if not len(c):
        raise ValueError("no points")
    top = max(range(len(c)), key=lambda i: (c[i], a[i]))
    ok = [i for i in range(len(c)) if a[i] >= a[top] - tolerance - 1e-12]
    return min(ok, key=lambda i: (c[i], -a[i], i))


def frontier_frame(pairs: list, id_name: str, n_resamples: int = 0) -> pd.DataFrame:
    """One row per method × point × OOD set (plus the per-group and overall mean rows), seeds
    averaged. ``pairs``: ``(SweepPoint, MethodResult)`` as :func:`ood_bench.engine.sweep.run_sweep` returns."""
    rows = []
    for (method, label), group in _by_point(pairs).items():
        point, results = group[0][0], [r for _, r in group]
        m = metrics_frame(results, id_name)
        m = m[m["primary"]]
        per_ood = m.groupby(["ood", "group"], sort=False)
        n_img = sum(len(d.batch) for r in results for d in r.all_scored)
        secs = sum(d.seconds for r in results for d in r.all_scored)
        cost = results[0].cost
        base = {"method": method, "point": label, **{f"knob.{k}": v for k, v in point.knobs},
                "nfe": float(sum(cost.values())),
                "nfe_by_network": " ".join(f"{k}={v:g}" for k, v in cost.items()),
                "img_per_s": n_img / secs if secs > 0 else np.nan,
                "s_per_img": secs / n_img if n_img else np.nan,
                "seeds": len(results), "fitted_once": all(r.fit_key == results[0].fit_key for r in results)}
        for (ood, grp), part in per_ood:
            row = {**base, "ood": ood, "group": grp, "auroc": part["auroc"].mean(),
                   "auroc_std": part["auroc"].std(ddof=1) if len(part) > 1 else np.nan,
                   "fpr95": part["fpr95"].mean()}
            row.update(_intervals(results, ood, grp, n_resamples))
            rows.append(row)
    df = pd.DataFrame(rows)
    df["pareto"] = False
    for _, idx in df.groupby("ood", sort=False).groups.items():
        part = df.loc[idx]
        df.loc[idx, "pareto"] = pareto_mask(part["nfe"], part["auroc"])
    return df


def _by_point(pairs: list) -> dict[tuple[str, str], list]:
    out: dict[tuple[str, str], list] = {}
    for p, r in pairs:
        out.setdefault((p.method, p.label), []).append((p, r))
    return out


def _intervals(results: list, ood: str, group: str, n_resamples: int) -> dict[str, float]:
    """Bootstrap interval of AUROC and FPR95 for one OOD set (seeds together); NaN for mean rows
    or without resamples."""
    nan = {"auroc_lo": np.nan, "auroc_hi": np.nan, "fpr95_lo": np.nan, "fpr95_hi": np.nan}
    if group == MEAN_GROUP or n_resamples <= 0:
        return nan
    id_s = np.stack([r.id.batch.canonical for r in results])
    ood_s = np.stack([next(o for o in r.ood if o.name == ood).batch.canonical for r in results])
    ci = confidence_intervals(id_s, ood_s, ("auroc", "fpr95"), n_resamples)
    return {"auroc_lo": ci["auroc"].low, "auroc_hi": ci["auroc"].high,
            "fpr95_lo": ci["fpr95"].low, "fpr95_hi": ci["fpr95"].high}


def knees_frame(frontier: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """Per method (on the mean-over-OOD-sets rows): its most expensive point, its knee, and the
    AUROC/cost of both; ``tolerance`` in AUROC points."""
    mean = frontier[frontier["ood"] == "mean"]
    rows = []
    for method, part in mean.groupby("method", sort=False):
        part = part.reset_index(drop=True)
        k = knee_index(part["nfe"], part["auroc"], tolerance / 100)
        top = max(range(len(part)), key=lambda i: (part["nfe"][i], part["auroc"][i]))
        rows.append({"method": method, "knee": part["point"][k], "knee_nfe": part["nfe"][k],
                     "knee_auroc": part["auroc"][k], "knee_s_per_img": part["s_per_img"][k],
                     "top": part["point"][top], "top_nfe": part["nfe"][top], "top_auroc": part["auroc"][top],
                     "saving": part["nfe"][top] / part["nfe"][k] if part["nfe"][k] > 0 else np.nan})
    return pd.DataFrame(rows)


def knee_options(frontier: pd.DataFrame, knees: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``method → {option: value}`` of each knee (the grid values, typed as the sweep used them)."""
    out = {}
    for r in knees.itertuples():
        row = frontier[(frontier["method"] == r.method) & (frontier["point"] == r.knee)].iloc[0]
        knobs = {c.removeprefix("knob."): _plain(row[c]) for c in frontier.columns
                 if c.startswith("knob.") and not _missing(row[c])}
        out[r.method] = knobs
    return out


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    return int(v) if isinstance(v, float) and v.is_integer() else v


def set_lines(options: dict[str, dict[str, Any]]) -> list[str]:
    """``--set lmd.steps=20 lmd.reps=4`` per method with knobs (what `run` takes)."""
    return [f"{m}: --set " + " ".join(f"{m}.{k}={json.dumps(v)}" for k, v in kn.items())
            for m, kn in options.items() if kn]


def format_mean_table(frontier: pd.DataFrame) -> pd.DataFrame:
    """The mean rows as display strings: method, point, NFE/img, s/img, AUROC %, FPR95 %, Pareto."""
    mean = frontier[frontier["ood"] == "mean"]
    return pd.DataFrame({
        "method": [method_title(m) for m in mean["method"]], "point": mean["point"],
        "NFE/img": [f"{v:,.0f}" for v in mean["nfe"]], "ms/img": [f"{1e3 * v:.2f}" for v in mean["s_per_img"]],
        "AUROC (%)": [f"{100 * v:.2f}" for v in mean["auroc"]], "FPR95 (%)": [f"{100 * v:.2f}" for v in mean["fpr95"]],
        "Pareto": ["★" if p else "" for p in mean["pareto"]],
    }).reset_index(drop=True)


def write_sweep(run_dir: Path, frontier: pd.DataFrame, knees: pd.DataFrame, preset: dict[str, Any],
                manifest: dict, tolerance: float) -> dict[str, Path]:
    """Write every output of a finished sweep into ``run_dir``; returns the paths."""
    run_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["frontier"] = atomic.write_with(run_dir / FRONTIER_FILE,
                                          lambda p: frontier.to_csv(p, index=False, float_format="%.6g"))
    table = format_mean_table(frontier)
    knee_txt = _knee_display(knees, tolerance)
    prov = provenance_lines([{**manifest, "run_dir": str(run_dir)}])
    md = "\n\n".join([table.to_markdown(index=False), knee_txt.to_markdown(index=False),
                      "\n".join(f"<!-- {p} -->" for p in prov)])
    files["frontier_md"] = atomic.write_text(run_dir / "frontier.md", md + "\n")
    options = knee_options(frontier, knees)
    knee_preset = {**preset, "methods": {m: {**(preset.get("methods", {}).get(m) or {}), **options.get(m, {})}
                                         for m in preset.get("methods", {})}}
    knee_preset.pop("sweep", None)
    header = f"# every method at its knee (AUROC within {tolerance:g} points of its most expensive point)\n"
    files["knees"] = atomic.write_text(run_dir / "knees.yaml", header + yaml.safe_dump(knee_preset, sort_keys=False))
    mean = frontier[frontier["ood"] == "mean"].assign(title=lambda d: [method_title(m) for m in d["method"]])
    plots = run_dir / "plots"
    id_name = manifest.get("datasets", {}).get("id", {}).get("name") or preset.get("id", "")
    files["plot_nfe"] = frontier_plot(mean, "nfe", plots / "frontier_nfe.png",
                                      title=f"Mean AUROC vs network evaluations, ID {id_name}")
    files["plot_seconds"] = frontier_plot(mean, "s_per_img", plots / "frontier_seconds.png",
                                          title=f"Mean AUROC vs measured seconds per image, ID {id_name}")
    sections = [("Cost–accuracy frontier (mean over OOD sets; ★ = Pareto)", table_html(escape_frame(table))),
                (f"Knees (cheapest point within {tolerance:g} AUROC points of the most expensive)",
                 table_html(escape_frame(knee_txt)))]
    figures = [("AUROC against cost", [(files["plot_nfe"], "AUROC vs network evaluations per image"),
                                       (files["plot_seconds"], "AUROC vs measured seconds per image")])]
    files["report"] = write_report(run_dir / "report.html", "ood-bench sweep", prov, sections, figures)
    manifest["outputs"] = {k: str(v) for k, v in files.items()}
    files["manifest"] = write_json(run_dir / "manifest.json", manifest)
    return files


def _knee_display(knees: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    return pd.DataFrame({
        "method": [method_title(m) for m in knees["method"]], "knee": knees["knee"],
        "NFE/img": [f"{v:,.0f}" for v in knees["knee_nfe"]], "AUROC (%)": [f"{100 * v:.2f}" for v in knees["knee_auroc"]],
        "most expensive": knees["top"], "its NFE/img": [f"{v:,.0f}" for v in knees["top_nfe"]],
        "its AUROC (%)": [f"{100 * v:.2f}" for v in knees["top_auroc"]],
        "NFE saved": [f"{v:.1f}×" if np.isfinite(v) else "–" for v in knees["saving"]],
    })
