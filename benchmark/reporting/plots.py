"""Score plots (matplotlib, Agg backend): ID-vs-OOD histograms with the FPR@95 threshold."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ood_bench.utils import atomic  # noqa: E402
from ood_bench.reporting.metrics import auroc, fpr95  # noqa: E402


def _save(fig, path: Path) -> Path:
    atomic.write_with(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def score_histogram(id_scores: np.ndarray, ood_scores: np.ndarray, path: Path, *, title: str,
                    id_label: str, ood_label: str, score_label: str, bins: int = 50) -> Path:
    """Overlaid density histograms of ID and OOD scores; the dashed line is the 95th percentile
    of ID scores (the papers' FPR@95 threshold: 95 % of ID lies at or below it)."""
    id_s, ood_s = np.asarray(id_scores, float), np.asarray(ood_scores, float)
    edges = np.histogram_bin_edges(np.concatenate([id_s, ood_s]), bins=bins)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(id_s, bins=edges, density=True, alpha=0.55, label=f"ID: {id_label} (n={len(id_s)})", color="tab:blue")
    ax.hist(ood_s, bins=edges, density=True, alpha=0.55, label=f"OOD: {ood_label} (n={len(ood_s)})", color="tab:red")
    thr = float(np.percentile(id_s, 95))
    ax.axvline(thr, color="k", ls="--", lw=1, label="95% of ID below")
    ax.set_xlabel(f"{score_label} (higher = more OOD)")
    ax.set_ylabel("density")
    ax.set_title(f"{title}\nAUROC {100 * auroc(id_s, ood_s):.2f}%  FPR@95 {100 * fpr95(id_s, ood_s):.2f}%", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, *, title: str) -> Path:
    """ROC curves (OOD positive) of several methods on one OOD set: ``name → (id, ood)`` scores."""
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for name, (id_s, ood_s) in curves.items():
        y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))]
        fpr, tpr, _ = roc_curve(y, np.r_[id_s, ood_s])
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} ({100 * auroc(id_s, ood_s):.1f})")
    ax.plot([0, 1], [0, 1], color="0.7", ls=":", lw=1)
    ax.set_xlabel("false positive rate (ID flagged as OOD)")
    ax.set_ylabel("true positive rate (OOD flagged)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, title="method (AUROC %)", title_fontsize=8, loc="lower right")
    return _save(fig, path)


def auroc_vs_throughput(points: dict[str, tuple[float, float, float]], path: Path, *, title: str) -> Path:
    """One point per method: ``name → (images/s, mean AUROC %, std over seeds or NaN)``; log x."""
    fig, ax = plt.subplots(figsize=(5.4, 4.0))
    for name, (speed, auc, std) in points.items():
        ax.errorbar([speed], [auc], yerr=None if np.isnan(std) else [std], fmt="o", capsize=3, ms=7)
        ax.annotate(name, (speed, auc), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("scoring throughput (images / s, log scale)")
    ax.set_ylabel("AUROC % (mean over OOD sets)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)
