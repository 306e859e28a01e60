"""Bootstrap confidence intervals and paired comparisons for AUROC and FPR@95.

Resampling is done by ``scipy.stats.bootstrap`` (percentile intervals): ID and OOD images are
resampled independently, with replacement. Scores of several seeds (same images) form a leading
axis that is resampled together, so the interval is that of the seed-averaged metric under image
sampling; the spread over seeds is reported separately as a std.

The statistics are vectorised over resamples: AUROC as the Mann–Whitney U statistic with
average ranks for ties (equal to ``sklearn.metrics.roc_auc_score``), FPR@95 in the papers'
convention (equal to :func:`ood_bench.reporting.metrics.fpr95`). Tests check both equalities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap, rankdata

from ood_bench.reporting.metrics import TPR_LEVEL

CONFIDENCE = 0.95


def auroc_vec(id_s: np.ndarray, ood_s: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUROC (OOD positive) along ``axis``; leading axes are batch axes."""
    id_s, ood_s = np.moveaxis(id_s, axis, -1), np.moveaxis(ood_s, axis, -1)
    n_i, n_o = id_s.shape[-1], ood_s.shape[-1]
    ranks = rankdata(np.concatenate([id_s, ood_s], axis=-1), axis=-1)
    u = ranks[..., n_i:].sum(-1) - n_o * (n_o + 1) / 2
    return u / (n_i * n_o)


def fpr95_vec(id_s: np.ndarray, ood_s: np.ndarray, axis: int = -1) -> np.ndarray:
    """Papers' FPR@95 along ``axis``: fraction of OOD ≤ the score keeping 95 % of ID."""
    id_s, ood_s = np.moveaxis(id_s, axis, -1), np.moveaxis(ood_s, axis, -1)
    k = math.ceil(TPR_LEVEL * id_s.shape[-1] - 1e-9) - 1
    thr = np.sort(id_s, axis=-1)[..., k]
    return (ood_s <= thr[..., None]).mean(-1)


STATISTICS = {"auroc": auroc_vec, "fpr95": fpr95_vec}


@dataclass
class Interval:
    low: float
    high: float


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[None] if x.ndim == 1 else x


def _bootstrap(data: tuple[np.ndarray, np.ndarray], stat, n_resamples: int, seed: int):
    return bootstrap(data, stat, n_resamples=n_resamples, confidence_level=CONFIDENCE, method="percentile",
                     vectorized=True, paired=False, axis=-1, rng=np.random.default_rng(seed))


def confidence_intervals(id_scores: np.ndarray, ood_scores: np.ndarray, metrics: tuple[str, ...] = ("auroc", "fpr95"),
                         n_resamples: int = 1000, seed: int = 0) -> dict[str, Interval]:
    """95 % percentile intervals of ``metrics`` from one set of resamples.

    Scores are ``(n,)`` or ``(seeds, n)``; with seeds the interval is that of the seed-averaged metric.
    ``n_resamples=0`` (``--bootstrap 0``) skips the bootstrap: NaN intervals.
    """
    if n_resamples <= 0:
        return {m: Interval(float("nan"), float("nan")) for m in metrics}
    id2, ood2 = _as_2d(id_scores), _as_2d(ood_scores)

    def stat(i, o, axis=-1):  # i, o: (seeds, [resamples,] n) → (metrics, [resamples]) seed means
        return np.stack([STATISTICS[m](i, o, axis=axis).mean(axis=0) for m in metrics])

    ci = _bootstrap((id2, ood2), stat, n_resamples, seed).confidence_interval
    return {m: Interval(float(ci.low[k]), float(ci.high[k])) for k, m in enumerate(metrics)}


def paired_p_values(id_a: np.ndarray, ood_a: np.ndarray, id_b: np.ndarray, ood_b: np.ndarray,
                    metrics: tuple[str, ...] = ("auroc", "fpr95"), n_resamples: int = 1000,
                    seed: int = 0) -> dict[str, float]:
    """One-sided bootstrap p-values for "A is better than B" on the same ID and OOD images.

    Each resample draws the same ID and OOD images for both methods (paired); ``p`` is the
    fraction of resamples where A is not better (higher AUROC, lower FPR@95), ties counting one
    half (mid-p), so identical score sets give 0.5. Scores ``(n,)`` or ``(seeds, n)``.
    ``n_resamples=0`` skips the bootstrap: NaN p-values.
    """
    ida, oda, idb, odb = map(_as_2d, (id_a, ood_a, id_b, ood_b))
    if ida.shape != idb.shape or oda.shape != odb.shape:
        raise ValueError("paired comparison needs scores of the same images (and seeds) for both methods")
    if n_resamples <= 0:
        return {m: float("nan") for m in metrics}
    sign = np.array([1.0 if m == "auroc" else -1.0 for m in metrics])  # lower FPR is better

    def diff(i, o, axis=-1):  # i, o: (2, seeds, [resamples,] n) → A − B of the seed means, per metric
        out = []
        for m, sg in zip(metrics, sign):
            v = STATISTICS[m](i, o, axis=axis).mean(axis=1)
            out.append(sg * (v[0] - v[1]))
        return np.stack(out)

    d = _bootstrap((np.stack([ida, idb]), np.stack([oda, odb])), diff, n_resamples, seed).bootstrap_distribution
    return {m: float(np.mean(d[k] < 0) + 0.5 * np.mean(d[k] == 0)) for k, m in enumerate(metrics)}
