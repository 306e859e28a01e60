"""Uncertainty on top of the metrics: per-set bootstrap intervals and paired method comparisons.

``per_set_frame``: one row per entry × OOD set with every metric as mean (± std over seeds)
and 95 % bootstrap intervals for AUROC and FPR@95 (:mod:`ood_bench.reporting.bootstrap`).
``comparisons_frame``: for every OOD set and every pair of methods (canonical scores), the
p-value of "the better-looking method beats the other" under a paired bootstrap. Each entry's
metrics on the resamples are computed once and read by every pair it is in.
"""
from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ood_bench.reporting.bootstrap import ResampledMetrics, intervals, p_values, resample_metrics
from ood_bench.reporting.tables import MEAN_GROUP, entry_name, seed_summary

if TYPE_CHECKING:
    from ood_bench.outcomes import MethodResult


def entry_scores(results: list[MethodResult]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """``(entry, ood) → (ID scores (seeds, n), OOD scores (seeds, m))``, seeds in run order."""
    out: dict[tuple[str, str], tuple[list, list]] = {}
    for r in results:
        primary = r.id.batch.primary
        for sub in r.id.batch.scores:
            e = entry_name(r.method, sub, primary)
            for o in r.ood:
                ids, oods = out.setdefault((e, o.name), ([], []))
                ids.append(r.id.batch.scores[sub])
                oods.append(o.batch.scores[sub])
    return {k: (np.stack(v[0]), np.stack(v[1])) for k, v in out.items()}


class Resampled:
    """``(entry, ood)`` → that entry's metrics on the bootstrap resamples
    (:func:`~ood_bench.reporting.bootstrap.resample_metrics`), computed on first use and kept, so
    that :func:`per_set_frame` and :func:`comparisons_frame` of one run share them."""

    def __init__(self, results: list[MethodResult], n_resamples: int = 1000) -> None:
        self.scores = entry_scores(results)
        self.n_resamples = n_resamples
        self._memo: dict[tuple[str, str], ResampledMetrics] = {}

    def __getitem__(self, key: tuple[str, str]) -> ResampledMetrics:
        if key not in self._memo:
            self._memo[key] = resample_metrics(*self.scores[key], n_resamples=self.n_resamples)
        return self._memo[key]


def per_set_frame(results: list[MethodResult], metrics: pd.DataFrame, n_resamples: int = 1000,
                  resampled: Resampled | None = None) -> pd.DataFrame:
    """Seed-summarised per-set metrics with ``auroc_low/high`` and ``fpr95_low/high`` columns
    (``resampled``: the run's shared :class:`Resampled`, else one of its own)."""
    s = seed_summary(metrics)
    s = s[s["group"] != MEAN_GROUP].reset_index(drop=True)
    resampled = resampled or Resampled(results, n_resamples)
    lows = {m: [] for m in ("auroc", "fpr95")}
    highs = {m: [] for m in ("auroc", "fpr95")}
    for e, ood in zip(s["entry"], s["ood"]):
        ci = intervals(resampled[(e, ood)])
        for m in lows:
            lows[m].append(ci[m].low)
            highs[m].append(ci[m].high)
    for m in lows:
        s.insert(s.columns.get_loc(m) + 1, f"{m}_low", lows[m])
        s.insert(s.columns.get_loc(m) + 2, f"{m}_high", highs[m])
    return s


def comparisons_frame(results: list[MethodResult], metrics: pd.DataFrame, n_resamples: int = 1000,
                      resampled: Resampled | None = None) -> pd.DataFrame:
    """Pairwise paired-bootstrap tests between methods' canonical scores, per OOD set.

    Columns: ``ood, better, worse, auroc_better, auroc_worse, p_auroc, p_fpr95``; ``better`` has
    the higher mean AUROC and ``p_*`` is the one-sided p-value of "better beats worse". Each
    entry's resampled metrics are computed once (``resampled``) and read by all its pairs.
    """
    s = seed_summary(metrics)
    s = s[(s["group"] != MEAN_GROUP) & s["primary"]]
    resampled = resampled or Resampled(results, n_resamples)
    rows = []
    for ood, part in s.groupby("ood", sort=False):
        auc = dict(zip(part["entry"], part["auroc"]))
        for a, b in itertools.combinations(part["entry"], 2):
            better, worse = (a, b) if auc[a] >= auc[b] else (b, a)
            p = p_values(resampled[(better, ood)], resampled[(worse, ood)])
            rows.append({"ood": ood, "better": better, "worse": worse, "auroc_better": auc[better],
                         "auroc_worse": auc[worse], "p_auroc": p["auroc"], "p_fpr95": p["fpr95"]})
    return pd.DataFrame(rows, columns=["ood", "better", "worse", "auroc_better", "auroc_worse", "p_auroc", "p_fpr95"])
