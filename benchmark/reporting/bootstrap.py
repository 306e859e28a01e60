"""Bootstrap confidence intervals and paired comparisons for AUROC and FPR@95.

Resampling is done by ``scipy.stats.bootstrap`` (percentile intervals): ID and OOD images are
resampled independently, with replacement. Scores of several seeds (same images) form a leading
axis that is resampled together, so the interval is that of the seed-averaged metric under image
sampling; the spread over seeds is reported separately as a std.

``scipy.stats.bootstrap`` is given the image *indices* ``0 … n-1`` instead of the scores: its
draws depend only on ``n`` (and the seed), so the resamples are the same images, drawn once per
``(n_id, n_ood, resamples, seed)`` and shared by every method scored on those sets
(:func:`_resample_counts`). One resample's statistic follows from how often it drew each image
(:class:`_SortedScores`) in ``O(n)`` integer work instead of ranking ``n`` floats: AUROC is the
Mann–Whitney ``U`` (an exact half-integer) over ``n_id · n_ood``, FPR@95 an integer count over
``n_ood``, the same values to the last bit as the reference statistics on resampled scores,
:func:`auroc_vec` (average ranks for ties, equal to ``sklearn.metrics.roc_auc_score``) and
:func:`fpr95_vec` (the papers' convention, equal to :func:`ood_bench.reporting.metrics.fpr95`).
Tests check these equalities. The intervals are scipy's percentiles of those values (its
``bootstrap_result`` argument). :func:`resample_metrics` computes one method's values once;
:func:`intervals` and :func:`p_values` (paired: the same resamples for both methods) read them.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from scipy.stats import bootstrap, rankdata

from ood_bench.reporting.metrics import TPR_LEVEL

CONFIDENCE = 0.95
METRICS = ("auroc", "fpr95")


def _fpr95_rank(n_id: int) -> int:
    """0-based rank of the FPR@95 threshold among ``n_id`` sorted ID scores."""
    return math.ceil(TPR_LEVEL * n_id - 1e-9) - 1


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
    thr = np.sort(id_s, axis=-1)[..., _fpr95_rank(id_s.shape[-1])]
    return (ood_s <= thr[..., None]).mean(-1)


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """``(R, n)`` int32: how often each of ``n`` images occurs in each resample; ``idx`` holds
    resampled image indices ``(..., n)`` (leading axes flattened into ``R``)."""
    idx = np.asarray(idx, dtype=np.int64).reshape(-1, n)
    r = idx.shape[0]
    flat = (idx + n * np.arange(r, dtype=np.int64)[:, None]).ravel()
    return np.bincount(flat, minlength=r * n).reshape(r, n).astype(np.int32)


def _bootstrap(n_id: int, n_ood: int, statistic, n_resamples: int, seed: int, bootstrap_result=None):
    """``scipy.stats.bootstrap`` (percentile) over the image indices of an ID and an OOD set."""
    return bootstrap((np.arange(n_id), np.arange(n_ood)), statistic, n_resamples=n_resamples,
                     confidence_level=CONFIDENCE, method="percentile", vectorized=True, paired=False, axis=-1,
                     rng=np.random.default_rng(seed), bootstrap_result=bootstrap_result)


@functools.lru_cache(maxsize=16)
def _resample_counts(n_id: int, n_ood: int, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image counts ``(R, n_id)``, ``(R, n_ood)`` (int32, read-only) of the resamples that
    ``scipy.stats.bootstrap`` draws for these sizes and seed. It resamples the indices
    ``0 … n-1``: its draws depend on ``n`` only, so they are those it draws for any scores."""
    drawn: list[tuple[np.ndarray, np.ndarray]] = []

    def record(i, o, axis=-1):  # i, o: (resamples, n) resampled indices; the statistic is not used
        drawn.append((_counts(i, n_id), _counts(o, n_ood)))
        return np.zeros(np.shape(i)[:-1])

    _bootstrap(n_id, n_ood, record, n_resamples, seed)
    c_id, c_ood = (np.concatenate(c) for c in zip(*drawn))
    c_id.flags.writeable = c_ood.flags.writeable = False
    return c_id, c_ood


def _running(counts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``(R, n + 1)`` int32: column ``k`` = how many drawn images lie among the ``k``
    lowest-scored (images in ``order``, ascending score); column 0 is 0."""
    out = np.zeros((counts.shape[0], counts.shape[1] + 1), dtype=np.int32)
    np.cumsum(counts[:, order], axis=1, out=out[:, 1:])
    return out


class _SortedScores:
    """ID scores ``(seeds, n_id)`` and OOD scores ``(seeds, n_ood)`` of one method, sorted per
    seed once, giving each resample's AUROC and FPR@95 from its image counts (:func:`_counts`).

    Exactness: ``2U = Σ_o c_o (#ID drawn below o + #ID drawn at or below o)`` is an integer, so
    ``U`` and ``U / (n_id n_ood)`` are the values :func:`auroc_vec` computes from average ranks
    (a sum of exact half-integers); FPR@95's count of OOD at or below the threshold is the
    integer :func:`fpr95_vec` averages, over the same ``n_ood``.
    """

    def __init__(self, id_s: np.ndarray, ood_s: np.ndarray):
        if np.isnan(id_s).any() or np.isnan(ood_s).any():
            raise ValueError("scores contain NaN")
        self.seeds, self.n_id, self.n_ood = id_s.shape[0], id_s.shape[-1], ood_s.shape[-1]
        self.id_order = np.argsort(id_s, axis=-1, kind="stable")
        self.ood_order = np.argsort(ood_s, axis=-1, kind="stable")
        self.id_sorted = np.take_along_axis(id_s, self.id_order, axis=-1)
        self.ood_sorted = np.take_along_axis(ood_s, self.ood_order, axis=-1)
        # per OOD image: how many ID images score below it / at or below it
        self.below = np.stack([np.searchsorted(s, o, side="left") for s, o in zip(self.id_sorted, ood_s)])
        self.at_or_below = np.stack([np.searchsorted(s, o, side="right") for s, o in zip(self.id_sorted, ood_s)])

    def fill(self, c_id: np.ndarray, c_ood: np.ndarray, out: dict[str, np.ndarray]) -> None:
        """Each resample's metrics into ``out[metric]`` ``(seeds, R)``, from the resamples' image
        counts ``(R, n_id)``, ``(R, n_ood)``."""
        rows = np.arange(c_id.shape[0])
        k = _fpr95_rank(self.n_id)
        for s in range(self.seeds):
            run = _running(c_id, self.id_order[s])
            if "auroc" in out:
                two_u = np.einsum("ro,ro->r", run[:, self.below[s]] + run[:, self.at_or_below[s]], c_ood,
                                  dtype=np.int64)
                out["auroc"][s] = (two_u * 0.5) / (self.n_id * self.n_ood)
            if "fpr95" in out:
                # the (k+1)-th lowest drawn ID score: the first sorted ID image whose running count exceeds k
                thr = self.id_sorted[s][(run[:, 1:] <= k).sum(axis=1)]
                pos = np.searchsorted(self.ood_sorted[s], thr, side="right")
                out["fpr95"][s] = _running(c_ood, self.ood_order[s])[rows, pos] / self.n_ood


def _stat_array(metric: str, lead: tuple[int, ...], n_resamples: int) -> np.ndarray:
    """Empty ``(*lead, R)`` float64 array for one statistic, laid out in memory as the reference
    statistic's result on scipy's resampled scores: :func:`auroc_vec`'s in C order, :func:`fpr95_vec`'s
    resample-major (``R`` outermost, like the resampled scores). Why: numpy sums a mean over the
    seeds axis sequentially or pairwise depending on the layout, and only the same order of
    additions gives the same last bit."""
    if metric == "fpr95":
        return np.moveaxis(np.empty((n_resamples, *lead)), 0, -1)
    return np.empty((*lead, n_resamples))


@dataclass
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class ResampledMetrics:
    """One method's metrics on every bootstrap resample of one ID and one OOD set.

    ``values[metric]``: ``(seeds, R)``, the metric of each seed's scores on each resample (all
    seeds share the resample's images); empty when ``n_resamples`` is 0 (no bootstrap).
    ``id_shape``, ``ood_shape``: the scores' ``(seeds, n)`` as given (before seeds broadcast).
    """
    metrics: tuple[str, ...]
    n_resamples: int
    seed: int
    id_shape: tuple[int, int]
    ood_shape: tuple[int, int]
    values: dict[str, np.ndarray] = field(repr=False)


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[None] if x.ndim == 1 else x


def resample_metrics(id_scores: np.ndarray, ood_scores: np.ndarray, metrics: tuple[str, ...] = METRICS,
                     n_resamples: int = 1000, seed: int = 0) -> ResampledMetrics:
    """``metrics`` (of ``auroc``, ``fpr95``) on each of ``n_resamples`` resamples of the ID and
    OOD images (bootstrap ``seed``). Scores are ``(n,)`` or ``(seeds, n)``; one seed broadcasts
    against several. ``n_resamples=0`` (``--bootstrap 0``): no resamples."""
    id2, ood2 = _as_2d(id_scores), _as_2d(ood_scores)
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"no bootstrap for metric(s) {sorted(unknown)}; known: {', '.join(METRICS)}")
    values: dict[str, np.ndarray] = {}
    if n_resamples > 0:
        seeds = np.broadcast_shapes(id2.shape[:-1], ood2.shape[:-1])
        id_b, ood_b = np.broadcast_to(id2, (*seeds, id2.shape[-1])), np.broadcast_to(ood2, (*seeds, ood2.shape[-1]))
        scores = _SortedScores(id_b, ood_b)
        c_id, c_ood = _resample_counts(scores.n_id, scores.n_ood, n_resamples, seed)
        values = {m: _stat_array(m, seeds, len(c_id)) for m in metrics}
        scores.fill(c_id, c_ood, values)
    return ResampledMetrics(tuple(metrics), n_resamples, seed, id2.shape, ood2.shape, values)


def intervals(r: ResampledMetrics) -> dict[str, Interval]:
    """95 % percentile intervals of the seed-averaged metrics (scipy's percentile step on the
    resampled values); NaN without resamples."""
    if r.n_resamples <= 0:
        return {m: Interval(float("nan"), float("nan")) for m in r.metrics}
    theta = np.stack([r.values[m].mean(axis=0) for m in r.metrics])  # (metrics, R)
    ci = _bootstrap(r.id_shape[-1], r.ood_shape[-1], _unused_statistic, 0, r.seed,
                    bootstrap_result=SimpleNamespace(bootstrap_distribution=theta)).confidence_interval
    return {m: Interval(float(ci.low[k]), float(ci.high[k])) for k, m in enumerate(r.metrics)}


def _unused_statistic(*samples, axis=-1):
    raise AssertionError("the bootstrap distribution is given: no statistic to compute")


def p_values(a: ResampledMetrics, b: ResampledMetrics) -> dict[str, float]:
    """One-sided bootstrap p-values for "A is better than B" from their metrics on the same
    resamples (paired: same ID and OOD images for both).

    ``p`` is the fraction of resamples where A is not better (higher AUROC, lower FPR@95), ties
    counting one half (mid-p), so identical score sets give 0.5; NaN without resamples.
    """
    if a.id_shape != b.id_shape or a.ood_shape != b.ood_shape:
        raise ValueError("paired comparison needs scores of the same images (and seeds) for both methods")
    if (a.metrics, a.n_resamples, a.seed) != (b.metrics, b.n_resamples, b.seed):
        raise ValueError("paired comparison needs both methods' metrics on the same resamples")
    if a.n_resamples <= 0:
        return {m: float("nan") for m in a.metrics}
    out = {}
    for m in a.metrics:
        seeds, n_res = a.values[m].shape
        v = _stat_array(m, (2, seeds), n_res)  # A and B stacked as the reference stacked them
        v[0], v[1] = a.values[m], b.values[m]
        v = v.mean(axis=1)
        d = (1.0 if m == "auroc" else -1.0) * (v[0] - v[1])  # lower FPR is better
        out[m] = float(np.mean(d < 0) + 0.5 * np.mean(d == 0))
    return out


def confidence_intervals(id_scores: np.ndarray, ood_scores: np.ndarray, metrics: tuple[str, ...] = METRICS,
                         n_resamples: int = 1000, seed: int = 0) -> dict[str, Interval]:
    """95 % percentile intervals of ``metrics`` from one set of resamples.

    Scores are ``(n,)`` or ``(seeds, n)``; with seeds the interval is that of the seed-averaged metric.
    ``n_resamples=0`` (``--bootstrap 0``) skips the bootstrap: NaN intervals.
    """
    return intervals(resample_metrics(id_scores, ood_scores, metrics, n_resamples, seed))


def paired_p_values(id_a: np.ndarray, ood_a: np.ndarray, id_b: np.ndarray, ood_b: np.ndarray,
                    metrics: tuple[str, ...] = METRICS, n_resamples: int = 1000,
                    seed: int = 0) -> dict[str, float]:
    """One-sided bootstrap p-values for "A is better than B" on the same ID and OOD images
    (:func:`p_values`). Scores ``(n,)`` or ``(seeds, n)``; ``n_resamples=0``: NaN p-values."""
    if _as_2d(id_a).shape != _as_2d(id_b).shape or _as_2d(ood_a).shape != _as_2d(ood_b).shape:
        raise ValueError("paired comparison needs scores of the same images (and seeds) for both methods")
    return p_values(resample_metrics(id_a, ood_a, metrics, n_resamples, seed),
                    resample_metrics(id_b, ood_b, metrics, n_resamples, seed))
