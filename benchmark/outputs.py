"""Writing a run folder: manifest, per-image scores, metrics, leaderboards, histograms.

::

    RUN_DIR/manifest.json          config, seeds, versions, git commit, device, timings, conventions
    RUN_DIR/scores.csv             one row per method × seed × image: dataset, role, index, id, label, scores
    RUN_DIR/metrics.csv            long-form metrics (benchmark.tables)
    RUN_DIR/leaderboard.{csv,tex,md}
    RUN_DIR/plots/hist_<method>_<ood>.png
    RUN_DIR/examples/<method>_<dataset>.png   (methods that draw what they do)

Every file is written atomically.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark import atomic
from benchmark.plots import score_histogram
from benchmark.report import Leaderboard, build_leaderboard, provenance_lines
from benchmark.tables import metrics_frame

SCORES_FILE = "scores.csv"
METRICS_FILE = "metrics.csv"
MANIFEST_FILE = "manifest.json"


def write_json(path: Path, obj: Any) -> Path:
    return atomic.write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


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


def safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write_histograms(results, id_name: str, plots_dir: Path) -> list[Path]:
    paths = []
    for r in results:
        for o in r.ood:
            suffix = f"_seed{r.seed}" if len({x.seed for x in results}) > 1 else ""
            paths.append(score_histogram(
                r.id.batch.canonical, o.batch.canonical,
                plots_dir / f"hist_{safe_name(r.method)}_{safe_name(o.name)}{suffix}.png",
                title=f"{r.method}: {id_name} vs {o.name}", id_label=id_name, ood_label=o.name,
                score_label=f"{r.method} {r.id.batch.primary}"))
    return paths


def write_run(run_dir: Path, results, id_name: str, manifest: dict) -> tuple[pd.DataFrame, Leaderboard, dict[str, Path]]:
    """Write every output of a finished run; returns (metrics, leaderboard, written paths)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    scores = scores_frame(results)
    files["scores"] = atomic.write_with(run_dir / SCORES_FILE, lambda p: scores.to_csv(p, index=False))
    metrics = metrics_frame(results, id_name)
    files["metrics"] = atomic.write_with(run_dir / METRICS_FILE,
                                         lambda p: metrics.to_csv(p, index=False, float_format="%.6g"))
    board = build_leaderboard(metrics, provenance_lines([{**manifest, "run_dir": str(run_dir)}]))
    for fmt, path in board.write_all(run_dir).items():
        files[f"leaderboard_{fmt}"] = path
    hists = write_histograms(results, id_name, run_dir / "plots")
    files["plots"] = run_dir / "plots"
    manifest["outputs"] = {k: str(v) for k, v in files.items()}
    manifest["n_histograms"] = len(hists)
    files["manifest"] = write_json(run_dir / MANIFEST_FILE, manifest)
    return metrics, board, files
