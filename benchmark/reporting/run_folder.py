"""Writing a run folder: manifest, per-image scores, metrics, leaderboards, histograms.

::

    RUN_DIR/manifest.json          config, seeds, versions, git commit, device, timings, conventions
    RUN_DIR/scores.csv             one row per method × seed × image: dataset, role, index, id, label, scores
    RUN_DIR/metrics.csv            long-form metrics (ood_bench.reporting.tables)
    RUN_DIR/leaderboard.{csv,tex,md}   wide table: AUROC per set, group means, FPR95, cost
    RUN_DIR/per_set.{csv,md}           every metric per entry × OOD set, 95 % bootstrap intervals
    RUN_DIR/comparisons.{csv,md}       paired-bootstrap p-values between methods, per OOD set
    RUN_DIR/report.html                all of the above with every picture, in one file
    RUN_DIR/plots/hist_<method>_<ood>.{png,pdf}, roc_<ood>.{png,pdf}, auroc_vs_throughput.{png,pdf}
    RUN_DIR/examples/<method>_<dataset>.png   (methods that draw what they do)

Every file is written atomically. A run folder holds exactly one run: :func:`claim_run_dir`
removes what an earlier run wrote there (the files above, and temporary files a killed run left)
before the new run starts, and nothing else. The manifest says ``running`` until the run ends
(then ``complete``, ``failed`` or ``interrupted``); a run killed outright stays ``running``, and
``ood-bench leaderboard`` refuses every folder whose run is not ``complete``.
"""
from __future__ import annotations

import html
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ood_bench.data.registry import dataset_title
from ood_bench.utils import atomic
from ood_bench.utils.atomic import write_json
from ood_bench.utils.errors import UserError
from ood_bench.utils.naming import safe_name
from ood_bench.reporting.statistics import comparisons_frame, per_set_frame
from ood_bench.reporting.html import escape_frame, table_html, write_report
from ood_bench.reporting.plots import auroc_vs_throughput, roc_curves, score_histogram
from ood_bench.reporting.leaderboard import (Leaderboard, build_leaderboard, format_comparisons, format_per_set, markdown,
                                            P_VALUE_NOTE, method_title, provenance_lines)
from ood_bench.reporting.tables import MEAN_GROUP, artifacts_frame, metrics_frame, seed_summary

SCORES_FILE = "scores.csv"
METRICS_FILE = "metrics.csv"
MANIFEST_FILE = "manifest.json"
# everything a run writes at the top of its folder (see the module docstring)
OWNED_FILES = (SCORES_FILE, METRICS_FILE, MANIFEST_FILE, "leaderboard.csv", "leaderboard.tex", "leaderboard.md",
               "per_set.csv", "per_set.md", "comparisons.csv", "comparisons.md", "artifacts.csv", "artifacts.md",
               "report.html")
OWNED_DIRS = ("plots", "examples")


def check_writable_dir(path: Path, flag: str) -> None:
    """Refuse a folder ``path`` (given by ``flag``) that names a file or could not be created or
    written, before any work starts; creates nothing.

    Raises:
        UserError: one line naming the problem and the fix.
    """
    path = Path(path).expanduser()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the folder that would hold the new folders
    if not probe.is_dir():
        what = "is an existing file" if probe == path else f"lies under the file {probe}"
        raise UserError(f"{flag} {path} {what}, not a folder; give a folder path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path} cannot be written (no permission in {probe}); give a folder you can write to")


def claim_run_dir(run_dir: Path) -> None:
    """Make ``run_dir`` ready for a new run: remove every output of an earlier run and every
    temporary file (``.NAME.*``) an interrupted write left; other files are the user's and stay."""
    check_writable_dir(run_dir, "--out")
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in OWNED_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for name in OWNED_DIRS:
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)
    for p in run_dir.iterdir():  # atomic writes' leftovers: .metrics.csv.abc123.tmp, .plots.xyz/
        if p.name.startswith(".") and any(p.name.startswith(f".{n}.") for n in (*OWNED_FILES, *OWNED_DIRS)):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def scores_frame(results) -> pd.DataFrame:
    """Per-image scores of every result, in dataset order."""
    frames = []
    for r in results:
        for d in r.all_scored:
            n = len(d.batch)
            cols: dict[str, Any] = {
                "method": r.method, "seed": r.seed, "dataset": d.name, "role": d.role, "group": d.group,
                "index": np.arange(n), "item_id": d.dataset.item_ids(), "label": d.dataset.labels(),
            }
            if d.batch.predictions is not None:
                cols["prediction"] = d.batch.predictions
            cols["score"] = d.batch.canonical
            cols["score_name"] = d.batch.primary
            for k, v in d.batch.scores.items():
                cols[k] = v
            frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def write_histograms(results, id_name: str, plots_dir: Path) -> list[Path]:
    paths = []
    for r in results:
        for o in r.ood:
            suffix = f"_seed{r.seed}" if len({x.seed for x in results}) > 1 else ""
            paths.append(score_histogram(
                r.id.batch.canonical, o.batch.canonical,
                plots_dir / f"hist_{safe_name(r.method)}_{safe_name(o.name)}{suffix}.png",
                title=f"{method_title(r.method)}: {dataset_title(id_name)} vs {dataset_title(o.name)}",
                id_label=dataset_title(id_name), ood_label=dataset_title(o.name),
                score_label=f"{method_title(r.method)} score ({r.id.batch.primary})"))
    return paths


def write_roc_plots(results, id_name: str, plots_dir: Path) -> list[Path]:
    """One ROC figure per OOD set with every method's canonical score (first seed)."""
    first_seed = results[0].seed
    per_ood: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for r in results:
        if r.seed != first_seed:
            continue
        for o in r.ood:
            per_ood.setdefault(o.name, {})[method_title(r.method)] = (r.id.batch.canonical, o.batch.canonical)
    return [roc_curves(curves, plots_dir / f"roc_{safe_name(ood)}.png",
                       title=f"ROC: {dataset_title(id_name)} vs {dataset_title(ood)} (seed {first_seed})")
            for ood, curves in per_ood.items()]


def write_cost_plot(metrics: pd.DataFrame, id_name: str, plots_dir: Path) -> Path:
    s = seed_summary(metrics)
    overall = s[(s["group"] == MEAN_GROUP) & (s["ood"] == "mean") & s["primary"]]
    points = {method_title(r.method): (r.img_per_s, 100 * r.auroc, 100 * r.auroc_std) for r in overall.itertuples()}
    return auroc_vs_throughput(points, plots_dir / "auroc_vs_throughput.png",
                               title=f"Mean AUROC vs scoring throughput, ID {dataset_title(id_name)}")


def write_run(run_dir: Path, results, id_name: str, manifest: dict,
              n_resamples: int = 1000) -> tuple[pd.DataFrame, Leaderboard, dict[str, Path]]:
    """Write every output of a finished run; returns (metrics, leaderboard, written paths)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    plots_dir = run_dir / "plots"
    files: dict[str, Path] = {}
    scores = scores_frame(results)
    files["scores"] = atomic.write_with(run_dir / SCORES_FILE, lambda p: scores.to_csv(p, index=False))
    metrics = metrics_frame(results, id_name)
    files["metrics"] = atomic.write_with(run_dir / METRICS_FILE,
                                         lambda p: metrics.to_csv(p, index=False, float_format="%.6g"))
    prov = provenance_lines([{**manifest, "run_dir": str(run_dir)}])
    board = build_leaderboard(metrics, prov)
    for fmt, path in board.write_all(run_dir).items():
        files[f"leaderboard_{fmt}"] = path

    arts = artifacts_frame(results)
    arts_note = ("shared networks and feature sets: each built once; its build time counts in the fit time of "
                 "the method it was built (or loaded) for, not again for the methods that shared it")
    if len(arts):
        files["artifacts_csv"] = atomic.write_with(run_dir / "artifacts.csv",
                                                   lambda p: arts.to_csv(p, index=False, float_format="%.6g"))
        arts_txt = arts.drop(columns=["folder"]).assign(build_s=arts["build_s"].map(lambda v: f"{v:.1f}"))
        files["artifacts_md"] = atomic.write_text(run_dir / "artifacts.md", markdown(arts_txt, [arts_note]))

    per_set = per_set_frame(results, metrics, n_resamples)
    files["per_set_csv"] = atomic.write_with(run_dir / "per_set.csv",
                                             lambda p: per_set.to_csv(p, index=False, float_format="%.6g"))
    per_set_txt = format_per_set(per_set)
    ci_note = f"95% percentile bootstrap intervals over {n_resamples} resamples of ID and OOD images"
    files["per_set_md"] = atomic.write_text(run_dir / "per_set.md", markdown(per_set_txt, [ci_note, *prov]))
    comps = comparisons_frame(results, metrics, n_resamples)
    comps_txt = format_comparisons(comps, n_resamples)
    p_note = P_VALUE_NOTE.format(n=n_resamples, rows=max(len(comps), 1))
    if len(comps):
        files["comparisons_csv"] = atomic.write_with(run_dir / "comparisons.csv",
                                                     lambda p: comps.to_csv(p, index=False, float_format="%.6g"))
        files["comparisons_md"] = atomic.write_text(run_dir / "comparisons.md", markdown(comps_txt, [p_note]))

    hists = write_histograms(results, id_name, plots_dir)
    rocs = write_roc_plots(results, id_name, plots_dir)
    cost_plot = write_cost_plot(metrics, id_name, plots_dir)
    files["plots"] = plots_dir
    examples = sorted({d.example for r in results for d in r.all_scored if d.example is not None})

    board_html = table_html(_bold_best(board), index=True)
    sections = [("Leaderboard (AUROC %, cost)", board_html),
                ("Per OOD set (%, 95% bootstrap intervals)", table_html(escape_frame(per_set_txt)))]
    if len(comps):
        sections.append(("Paired comparisons", table_html(escape_frame(comps_txt))
                         + f"<p class='note'>{html.escape(p_note)}</p>"))
    if len(arts):
        sections.append(("Shared artifacts (built once)", table_html(escape_frame(arts_txt))
                         + f"<p class='note'>{html.escape(arts_note)}</p>"))
    sections.append(("Metric conventions", "<ul>" + "".join(
        f"<li><b>{k}</b>: {v}</li>" for k, v in manifest.get("conventions", {}).items()) + "</ul>"))
    figures = [("Accuracy vs cost", [(cost_plot, "mean AUROC over OOD sets vs scoring throughput")]),
               ("ROC curves", [(p, p.stem) for p in rocs]),
               ("Score histograms", [(p, p.stem) for p in hists]),
               ("What the methods do (examples)", [(p, p.stem) for p in examples])]
    files["report"] = write_report(run_dir / "report.html", f"ood-bench run: {id_name}", prov, sections, figures)
    manifest["outputs"] = {k: str(v) for k, v in files.items()}
    files["manifest"] = write_json(run_dir / MANIFEST_FILE, manifest)
    return metrics, board, files


def _bold_best(board: Leaderboard) -> pd.DataFrame:
    """Leaderboard cells with the best values in <b>; names escaped (the cells are numbers)."""
    cells = board.cells("<b>{}</b>", " ± {}")
    escaped = escape_frame(cells)
    cells.index, cells.columns = escaped.index, escaped.columns
    return cells
