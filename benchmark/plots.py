"""Score plots (matplotlib, Agg backend): ID-vs-OOD histograms with the FPR@95 threshold."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmark import atomic  # noqa: E402
from benchmark.metrics import auroc, fpr95  # noqa: E402


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
