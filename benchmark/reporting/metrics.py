"""OOD detection metrics from canonical scores (higher = more OOD; OOD is the positive class).

All curves come from scikit-learn. Conventions (written into every result's manifest):

- ``auroc``        ROC AUC with OOD as the positive class.
- ``fpr95``        papers' convention (DLSR, DiffOOD, ODIN): threshold where 95 % of ID samples
                   are kept as ID (ID is the positive class of that ROC), report the fraction of
                   OOD samples scored at or below it, i.e. wrongly kept as ID.
- ``fpr95_oodpos`` OpenOOD ≥ v1.5 / pytorch-ood convention: at the first threshold that flags
                   ≥ 95 % of OOD samples as OOD, the fraction of ID samples flagged.
- ``aupr_in``      area under the precision-recall curve (trapezoidal, ``sklearn.metrics.auc``)
                   with ID positive and ``-score`` as its score.
- ``aupr_out``     the same with OOD positive and ``score``.

All values are fractions in ``[0, 1]`` (tables may show them ×100).
"""
from __future__ import annotations

import numpy as np
import sklearn
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve

TPR_LEVEL = 0.95
METRIC_NAMES = ("auroc", "fpr95", "fpr95_oodpos", "aupr_in", "aupr_out")
HIGHER_IS_BETTER = {"auroc": True, "fpr95": False, "fpr95_oodpos": False, "aupr_in": True, "aupr_out": True}
CONVENTIONS = {
    "score": "higher = more OOD; OOD is the positive class",
    "auroc": "ROC AUC, OOD positive (sklearn.metrics.roc_auc_score)",
    "fpr95": "papers' FPR@95: threshold keeping 95% of ID as ID; fraction of OOD at or below it",
    "fpr95_oodpos": "OpenOOD>=1.5 FPR@95: first threshold flagging >=95% of OOD; fraction of ID flagged",
    "aupr_in": "trapezoidal PR-AUC, ID positive, score negated",
    "aupr_out": "trapezoidal PR-AUC, OOD positive",
}


def _validate(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    id_s = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_s = np.asarray(ood_scores, dtype=np.float64).ravel()
    if id_s.size == 0 or ood_s.size == 0:
        raise ValueError("metrics need at least one ID and one OOD score")
    if not (np.isfinite(id_s).all() and np.isfinite(ood_s).all()):
        raise ValueError("scores contain NaN or inf")
    return id_s, ood_s


def _labels_scores(id_s: np.ndarray, ood_s: np.ndarray, ood_positive: bool) -> tuple[np.ndarray, np.ndarray]:
    y = np.concatenate([np.zeros(id_s.size), np.ones(ood_s.size)])
    s = np.concatenate([id_s, ood_s])
    return (y, s) if ood_positive else (1 - y, -s)


def _fpr_at_tpr(y: np.ndarray, s: np.ndarray, level: float = TPR_LEVEL) -> float:
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    # first operating point with TPR ≥ level (tolerance for 19/20-style float ratios)
    return float(fpr[np.argmax(tpr >= level - 1e-12)])


def auroc(id_scores, ood_scores) -> float:
    id_s, ood_s = _validate(id_scores, ood_scores)
    return float(roc_auc_score(*_labels_scores(id_s, ood_s, ood_positive=True)))


def fpr95(id_scores, ood_scores) -> float:
    """Papers' convention: fraction of OOD kept as ID when 95 % of ID is kept as ID."""
    id_s, ood_s = _validate(id_scores, ood_scores)
    return _fpr_at_tpr(*_labels_scores(id_s, ood_s, ood_positive=False))


def fpr95_oodpos(id_scores, ood_scores) -> float:
    """OpenOOD ≥ 1.5 convention: fraction of ID flagged when 95 % of OOD is flagged."""
    id_s, ood_s = _validate(id_scores, ood_scores)
    return _fpr_at_tpr(*_labels_scores(id_s, ood_s, ood_positive=True))


def _aupr(y: np.ndarray, s: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(y, s)
    return float(auc(recall, precision))


def aupr_in(id_scores, ood_scores) -> float:
    id_s, ood_s = _validate(id_scores, ood_scores)
    return _aupr(*_labels_scores(id_s, ood_s, ood_positive=False))


def aupr_out(id_scores, ood_scores) -> float:
    id_s, ood_s = _validate(id_scores, ood_scores)
    return _aupr(*_labels_scores(id_s, ood_s, ood_positive=True))


def all_metrics(id_scores, ood_scores) -> dict[str, float]:
    """Every metric of :data:`METRIC_NAMES` for one ID/OOD score pair."""
    fns = {"auroc": auroc, "fpr95": fpr95, "fpr95_oodpos": fpr95_oodpos, "aupr_in": aupr_in, "aupr_out": aupr_out}
    id_s, ood_s = _validate(id_scores, ood_scores)  # checked here once: the curves' own checks are skipped
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
        return {k: fns[k](id_s, ood_s) for k in METRIC_NAMES}
