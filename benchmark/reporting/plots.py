"""Figures (matplotlib, Agg backend): score histograms, ROC curves, AUROC vs throughput.

Every figure is written twice, ``<name>.png`` (200 dpi, for the HTML report and slides) and
``<name>.pdf`` (vector, for papers), at one width (:data:`WIDTH_IN`, a one-column figure) with
one font size, and with ``bbox_inches="tight"`` so no label is clipped. The PDF carries no
creation date, so the same figure gives the same bytes on every run.
"""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from ood_bench.utils import atomic  # noqa: E402
from ood_bench.reporting.metrics import auroc, fpr95  # noqa: E402

DPI = 200
WIDTH_IN = 5.0
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
         "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.dpi": 100}
# A set whose 1–99 % spread is under this fraction of the plotted range would get fewer than
# bins × fraction bins on a linear axis (one or two when OOD is far): the histogram then
# switches to an asinh axis centred on that set (see histogram_bins).
MIN_SPREAD = 0.2


def _styled(fn):
    """Draw inside one rc context, so every figure has the same fonts."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def _figure(height_in: float):
    return plt.subplots(figsize=(WIDTH_IN, height_in))


def _save(fig, path: Path) -> Path:
    """``path`` (``.png``) and its ``.pdf`` sibling; returns the PNG path."""
    path = Path(path).with_suffix(".png")
    atomic.write_with(path, lambda p: fig.savefig(p, format="png", dpi=DPI, bbox_inches="tight"))
    atomic.write_with(path.with_suffix(".pdf"), lambda p: fig.savefig(p, format="pdf", bbox_inches="tight",
                                                                      metadata={"CreationDate": None}))
    plt.close(fig)
    return path


def histogram_bins(id_s: np.ndarray, ood_s: np.ndarray,
                   bins: int = 50) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Bin edges that show both distributions, and the asinh axis ``(centre, width)`` or None.

    The range is the pooled 0.5–99.5 % quantiles (one outlier does not squeeze everything into
    a few bins). When one set is far narrower than that range (typically ID, with OOD far
    away), the edges are spaced evenly in ``asinh((x - c) / w)``, ``c`` its median and ``w``
    half its 1–99 % spread: linear over that set, logarithmic away from it, so both sets get
    many bins.
    """
    pooled = np.concatenate([id_s, ood_s])
    lo, hi = np.quantile(pooled, [0.005, 0.995])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    spreads = [(float(np.subtract(*np.quantile(s, [0.99, 0.01]))), s) for s in (id_s, ood_s)]
    spread, narrow = min(spreads, key=lambda t: t[0])
    if spread >= MIN_SPREAD * (hi - lo):
        return np.linspace(lo, hi, bins + 1), None
    w = max(spread / 2, (hi - lo) * 1e-4)
    c = float(np.median(narrow))
    t = np.linspace(np.arcsinh((lo - c) / w), np.arcsinh((hi - c) / w), bins + 1)
    return c + w * np.sinh(t), (c, float(w))


@_styled
def score_histogram(id_scores: np.ndarray, ood_scores: np.ndarray, path: Path, *, title: str,
                    id_label: str, ood_label: str, score_label: str, bins: int = 50) -> Path:
    """ID and OOD scores as fractions of each set per bin (:func:`histogram_bins`); scores
    beyond the plotted range count in the end bins. The dashed line is the 95th percentile of
    ID scores (the papers' FPR@95 threshold: 95 % of ID lies at or below it)."""
    id_s, ood_s = np.asarray(id_scores, float), np.asarray(ood_scores, float)
    edges, far = histogram_bins(id_s, ood_s, bins)
    fig, ax = _figure(3.0)
    for s, label, color in ((id_s, f"ID: {id_label} (n={len(id_s)})", "tab:blue"),
                            (ood_s, f"OOD: {ood_label} (n={len(ood_s)})", "tab:red")):
        ax.hist(np.clip(s, edges[0], edges[-1]), bins=edges, weights=np.full(len(s), 1 / len(s)),
                alpha=0.55, label=label, color=color)
    thr = float(np.percentile(id_s, 95))
    ax.axvline(thr, color="k", ls="--", lw=1, label="95% of ID below")
    if far is not None:
        c, w = far
        ax.set_xscale("function", functions=(lambda x: np.arcsinh((x - c) / w), lambda t: c + w * np.sinh(t)))
        ticks = c + w * np.sinh(np.linspace(np.arcsinh((edges[0] - c) / w), np.arcsinh((edges[-1] - c) / w), 7))
        ax.set_xticks(ticks, [f"{v:.3g}" for v in ticks])
        ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(f"{score_label} (higher = more OOD)" + (", asinh axis" if far is not None else ""))
    ax.set_ylabel("fraction of images per bin")
    ax.set_title(f"{title}\nAUROC {100 * auroc(id_s, ood_s):.2f}%  FPR@95 {100 * fpr95(id_s, ood_s):.2f}%")
    ax.legend(frameon=False)
    return _save(fig, path)


@_styled
def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, *, title: str) -> Path:
    """ROC curves (OOD positive) of several methods on one OOD set: ``name → (id, ood)`` scores."""
    from sklearn.metrics import roc_curve

    fig, ax = _figure(4.2)
    for name, (id_s, ood_s) in curves.items():
        y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))]
        fpr, tpr, _ = roc_curve(y, np.r_[id_s, ood_s])
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} ({100 * auroc(id_s, ood_s):.1f})")
    ax.plot([0, 1], [0, 1], color="0.7", ls=":", lw=1)
    ax.set_xlabel("false positive rate (ID flagged as OOD)")
    ax.set_ylabel("true positive rate (OOD flagged)")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.legend(title="method (AUROC %)", loc="lower right")
    return _save(fig, path)


def _compact(v: float, _pos=None) -> str:
    """Tick label: 20, 500, 2k, 10k, 1.5M."""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def _label_offsets(points: list[tuple[str, float, float]], xlim: tuple[float, float],
                   ylim: tuple[float, float]) -> list[tuple[float, float, str]]:
    """Per point the label offset (points) and alignment: right-above, right-below, left-above
    or left-below, the first whose box (estimated from the name's length at 8 pt) covers
    neither another marker nor an earlier label. Axes are 5 × 3.6 in; x is log."""
    def frac(x: float, y: float) -> tuple[float, float]:
        fx = (np.log10(x) - np.log10(xlim[0])) / (np.log10(xlim[1]) - np.log10(xlim[0]))
        return fx * WIDTH_IN * 72, (y - ylim[0]) / (ylim[1] - ylim[0]) * 3.6 * 72

    pos = [frac(x, y) for _, x, y in points]
    boxes: list[tuple[float, float, float, float]] = []
    out = []
    for i, (name, _, _) in enumerate(points):
        w, h = 4.6 * len(name), 9.0
        px, py = pos[i]
        for dx, dy, ha in ((5, 4, "left"), (5, -12, "left"), (-5, 4, "right"), (-5, -12, "right")):
            x0 = px + dx - (w if ha == "right" else 0)
            box = (x0, py + dy, x0 + w, py + dy + h)
            hits_marker = any(j != i and box[0] - 4 < qx < box[2] + 4 and box[1] - 4 < qy < box[3] + 4
                              for j, (qx, qy) in enumerate(pos))
            hits_label = any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes)
            if not (hits_marker or hits_label):
                break
        else:
            dx, dy, ha = 5, 4, "left"
            box = (px + 5, py + 4, px + 5 + w, py + 13)
        boxes.append(box)
        out.append((dx, dy, ha))
    return out


@_styled
def auroc_vs_throughput(points: dict[str, tuple[float, float, float]], path: Path, *, title: str) -> Path:
    """One point per method: ``name → (images/s, mean AUROC %, std over seeds or NaN)``; log x
    with ticks at 1, 2 and 5 per decade (1 and 3 beyond three decades) labelled 20, 500, 2k, …;
    labels placed so that none covers another or a marker (:func:`_label_offsets`)."""
    fig, ax = _figure(3.6)
    for name, (speed, auc, std) in points.items():
        ax.errorbar([speed], [auc], yerr=None if np.isnan(std) else [std], fmt="o", capsize=3, ms=6)
    ax.set_xscale("log")
    speeds = [p[0] for p in points.values() if np.isfinite(p[0]) and p[0] > 0]
    if speeds:  # pad on both sides so end labels are not cut by the frame
        ax.set_xlim(min(speeds) / 2, max(speeds) * 3)
        decades = np.log10(max(speeds) * 3) - np.log10(min(speeds) / 2)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0, 3.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(_compact))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("scoring throughput (images/s, log scale)")
    ax.set_ylabel("AUROC (%), mean over OOD sets")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(y=0.12)
    named = [(n, p[0], p[1]) for n, p in points.items()]
    for (name, speed, auc), (dx, dy, ha) in zip(named, _label_offsets(named, ax.get_xlim(), ax.get_ylim())):
        ax.annotate(name, (speed, auc), textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=8)
    return _save(fig, path)


@_styled
def frontier_plot(points, x: str, path: Path, *, title: str) -> Path:
    """AUROC (%) against cost, one line per method through its grid points (sorted by cost),
    Pareto points ringed. ``points``: a frame with ``method``, ``x``, ``auroc`` (fraction) and
    ``pareto`` columns; ``x`` is ``"nfe"`` (network evaluations per image) or ``"s_per_img"``
    (measured seconds per image). Log x; a method with no cost (≤ 0) cannot sit on a log axis: it
    is a dashed horizontal line at its AUROC, ``(no network)`` in the legend. Each method has its
    own colour and marker (13 methods outnumber any colour cycle); the legend sits outside."""
    fig, ax = _figure(3.6)
    colours = plt.get_cmap("tab10").colors
    xs_all = []
    for i, (name, part) in enumerate(points.groupby("title", sort=False)):
        style = {"color": colours[i % len(colours)], "marker": "osD^v"[i // len(colours) % 5]}
        part = part.sort_values(x)
        pos = part[part[x] > 0]
        if pos.empty:
            ax.axhline(100 * part["auroc"].max(), ls="--", lw=1, color=style["color"], label=f"{name} (no network)")
            continue
        xs_all += list(pos[x])
        ax.plot(pos[x], 100 * pos["auroc"], "-", ms=4, lw=1.2, label=name, **style)
        front = pos[pos["pareto"].astype(bool)]
        ax.plot(front[x], 100 * front["auroc"], "o", ms=9, mfc="none", mec="black", mew=1.2)
    ax.plot([], [], "o", ms=9, mfc="none", mec="black", mew=1.2, label="Pareto")
    ax.set_xscale("log")
    if xs_all:
        ax.set_xlim(min(xs_all) / 1.6, max(xs_all) * 1.6)
    ax.xaxis.set_major_formatter(FuncFormatter(_compact))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("network evaluations per image (log scale)" if x == "nfe"
                  else "measured seconds per image (log scale)")
    ax.set_ylabel("AUROC (%), mean over OOD sets")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    return _save(fig, path)
