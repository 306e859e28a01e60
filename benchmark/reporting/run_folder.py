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

Every file is written atomically. A run folder holds exactly one run. Where it holds no complete
run, :func:`claim_run_dir` removes what an earlier, unfinished run wrote there (the files above,
and temporary files a killed run left) before the new run starts, and nothing else. Where it holds
a complete run, the new run is written beside it (:func:`stage_run_dir`, ``RUN_DIR/.next.XXXX/``)
and swapped in only once it has succeeded (:func:`publish_run`): a failed re-run leaves the
earlier run as it was, its own ``failed`` manifest in the stage folder. Symlinks among the run's
own names are removed or replaced, never followed. The manifest says ``running`` until the run ends
(then ``complete``, ``failed`` or ``interrupted``); a run killed outright stays ``running``, and
``ood-bench leaderboard`` refuses every folder whose run is not ``complete``.
"""
from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ood_bench.data.registry import dataset_title
from ood_bench.utils import atomic
from ood_bench.utils.atomic import write_json
from ood_bench.utils.errors import UserError
from ood_bench.utils.naming import safe_name
from ood_bench.reporting.statistics import Resampled, comparisons_frame, per_set_frame
from ood_bench.reporting.html import escape_frame, table_html, write_report
from ood_bench.reporting.plots import auroc_vs_throughput, roc_curves, score_histogram
from ood_bench.reporting.plot_pool import Pending, PlotPool
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
        if (run_dir / name).is_symlink():  # never followed: the link goes, whatever it points at stays
            (run_dir / name).unlink()
        elif (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)
    _remove_leftovers(run_dir)


def _remove_leftovers(run_dir: Path) -> None:
    for p in run_dir.iterdir():  # atomic writes' leftovers: .metrics.csv.abc123.tmp, .plots.xyz/
        if p.name.startswith(".") and any(p.name.startswith(f".{n}.") for n in (*OWNED_FILES, *OWNED_DIRS)):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


STAGE_PREFIX = ".next."  # a new run written beside a complete earlier one: RUN_DIR/.next.XXXX/


def holds_complete_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds the outputs of a finished run (its manifest says ``complete``)."""
    try:
        return json.loads((Path(run_dir) / MANIFEST_FILE).read_text()).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False


def stage_run_dir(run_dir: Path) -> Path:
    """A fresh folder inside ``run_dir`` where a new run writes while the complete earlier run in
    ``run_dir`` stays untouched; :func:`publish_run` swaps it in once the new run has succeeded."""
    check_writable_dir(run_dir, "--out")
    return Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=run_dir))


def publish_run(stage: Path, run_dir: Path) -> None:
    """Replace the earlier run's outputs in ``run_dir`` by the staged run's, one atomic rename
    each (a symlink in their place is replaced, never followed), then remove ``stage`` and the
    stage folders of earlier failed attempts. The manifest goes last: until it is swapped in,
    ``run_dir`` reads as the earlier complete run."""
    for name in (*OWNED_FILES, *OWNED_DIRS):
        if name == MANIFEST_FILE:
            continue
        new, old = stage / name, run_dir / name
        if old.is_symlink():
            old.unlink()
        if new.is_dir():
            atomic.replace_dir(new, old)
        elif new.exists():
            os.replace(new, old)
        elif old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)
    if (run_dir / MANIFEST_FILE).is_symlink():
        (run_dir / MANIFEST_FILE).unlink()
    os.replace(stage / MANIFEST_FILE, run_dir / MANIFEST_FILE)
    shutil.rmtree(stage, ignore_errors=True)
    _remove_leftovers(run_dir)
    for other in run_dir.glob(f"{STAGE_PREFIX}*"):  # failed attempts (their manifests say so)
        try:
            status = json.loads((other / MANIFEST_FILE).read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            continue  # a run still starting, or not ours: left alone
        if other.is_dir() and not other.is_symlink() and status in ("failed", "interrupted"):
            shutil.rmtree(other, ignore_errors=True)


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


def write_histograms(results, id_name: str, plots_dir: Path, pool: PlotPool | None = None) -> list[Pending]:
    """One score histogram per result × OOD set (canonical score), drawn by ``pool`` (inline
    without one); returns the pending figures, whose ``result()`` is the PNG path."""
    pool = pool or PlotPool(0)
    pending = []
    for r in results:
        for o in r.ood:
            suffix = f"_seed{r.seed}" if len({x.seed for x in results}) > 1 else ""
            pending.append(pool.submit(
                score_histogram, r.id.batch.canonical, o.batch.canonical,
                plots_dir / f"hist_{safe_name(r.method)}_{safe_name(o.name)}{suffix}.png",
                title=f"{method_title(r.method)}: {dataset_title(id_name)} vs {dataset_title(o.name)}",
                id_label=dataset_title(id_name), ood_label=dataset_title(o.name),
                score_label=f"{method_title(r.method)} score ({r.id.batch.primary})"))
    return pending


def write_roc_plots(results, id_name: str, plots_dir: Path, pool: PlotPool | None = None) -> list[Pending]:
    """One ROC figure per OOD set with every method's canonical score (first seed), drawn by
    ``pool`` (inline without one); returns the pending figures."""
    pool = pool or PlotPool(0)
    first_seed = results[0].seed
    per_ood: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for r in results:
        if r.seed != first_seed:
            continue
        for o in r.ood:
            per_ood.setdefault(o.name, {})[method_title(r.method)] = (r.id.batch.canonical, o.batch.canonical)
    return [pool.submit(roc_curves, curves, plots_dir / f"roc_{safe_name(ood)}.png",
                        title=f"ROC: {dataset_title(id_name)} vs {dataset_title(ood)} (seed {first_seed})")
            for ood, curves in per_ood.items()]


def write_cost_plot(metrics: pd.DataFrame, id_name: str, plots_dir: Path, pool: PlotPool | None = None) -> Pending:
    s = seed_summary(metrics)
    overall = s[(s["group"] == MEAN_GROUP) & (s["ood"] == "mean") & s["primary"]]
    points = {method_title(r.method): (r.img_per_s, 100 * r.auroc, 100 * r.auroc_std) for r in overall.itertuples()}
    return (pool or PlotPool(0)).submit(auroc_vs_throughput, points, plots_dir / "auroc_vs_throughput.png",
                                        title=f"Mean AUROC vs scoring throughput, ID {dataset_title(id_name)}")


def figure_count(histograms: int, oods: int) -> int:
    """Figures :func:`write_run` draws: the histograms (one per result × OOD set), a ROC figure
    per OOD set and the cost plot."""
    return histograms + oods + 1


def write_run(run_dir: Path, results, id_name: str, manifest: dict, n_resamples: int = 1000,
              final_dir: Path | None = None,
              pool: PlotPool | None = None) -> tuple[pd.DataFrame, Leaderboard, dict[str, Path]]:
    """Write every output of a finished run; returns (metrics, leaderboard, written paths).

    ``final_dir``: where the outputs will live once published (:func:`publish_run`) when
    ``run_dir`` is a stage folder; the manifest and provenance name the final paths.
    ``pool``: the caller's figure pool (already started); without one, this call starts its own."""
    if pool is None:  # no caller's pool: one for this call
        n_hist, oods = sum(len(r.ood) for r in results), {o.name for r in results for o in r.ood}
        with PlotPool(figure_count(n_hist, len(oods))) as own:
            return write_run(run_dir, results, id_name, manifest, n_resamples, final_dir, own)
    run_dir.mkdir(parents=True, exist_ok=True)
    plots_dir = run_dir / "plots"
    files: dict[str, Path] = {}
    # the figures are submitted first: the worker draws them while the tables are written
    hist_jobs = write_histograms(results, id_name, plots_dir, pool)
    roc_jobs = write_roc_plots(results, id_name, plots_dir, pool)
    scores = scores_frame(results)
    files["scores"] = atomic.write_with(run_dir / SCORES_FILE, lambda p: scores.to_csv(p, index=False))
    metrics = metrics_frame(results, id_name)
    files["metrics"] = atomic.write_with(run_dir / METRICS_FILE,
                                         lambda p: metrics.to_csv(p, index=False, float_format="%.6g"))
    cost_job = write_cost_plot(metrics, id_name, plots_dir, pool)
    prov = provenance_lines([{**manifest, "run_dir": str(final_dir or run_dir)}])
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

    resampled = Resampled(results, n_resamples)  # per-set intervals and paired tests read the same resamples
    per_set = per_set_frame(results, metrics, n_resamples, resampled)
    files["per_set_csv"] = atomic.write_with(run_dir / "per_set.csv",
                                             lambda p: per_set.to_csv(p, index=False, float_format="%.6g"))
    per_set_txt = format_per_set(per_set)
    ci_note = f"95% percentile bootstrap intervals over {n_resamples} resamples of ID and OOD images"
    files["per_set_md"] = atomic.write_text(run_dir / "per_set.md", markdown(per_set_txt, [ci_note, *prov]))
    comps = comparisons_frame(results, metrics, n_resamples, resampled)
    comps_txt = format_comparisons(comps, n_resamples)
    p_note = P_VALUE_NOTE.format(n=n_resamples, rows=max(len(comps), 1))
    if len(comps):
        files["comparisons_csv"] = atomic.write_with(run_dir / "comparisons.csv",
                                                     lambda p: comps.to_csv(p, index=False, float_format="%.6g"))
        files["comparisons_md"] = atomic.write_text(run_dir / "comparisons.md", markdown(comps_txt, [p_note]))

    hists = [j.result() for j in hist_jobs]
    rocs = [j.result() for j in roc_jobs]
    cost_plot = cost_job.result()
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
    if final_dir is not None:
        files = {k: Path(final_dir) / Path(v).relative_to(run_dir) for k, v in files.items()}
    manifest["outputs"] = {k: str(v) for k, v in files.items()}
    write_json(run_dir / MANIFEST_FILE, manifest)
    files["manifest"] = Path(final_dir or run_dir) / MANIFEST_FILE
    return metrics, board, files


def _bold_best(board: Leaderboard) -> pd.DataFrame:
    """Leaderboard cells with the best values in <b>; names escaped (the cells are numbers)."""
    cells = board.cells("<b>{}</b>", " ± {}")
    escaped = escape_frame(cells)
    cells.index, cells.columns = escaped.index, escaped.columns
    return cells
