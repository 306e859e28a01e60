"""Golden tests for the metrics on hand-made score sets with known answers."""
import numpy as np
import pytest

from ood_bench.reporting.metrics import all_metrics, aupr_in, aupr_out, auroc, fpr95, fpr95_oodpos


def test_perfect_separation():
    m = all_metrics([0.0, 1.0, 2.0], [3.0, 4.0, 5.0])
    assert m == {"auroc": 1.0, "fpr95": 0.0, "fpr95_oodpos": 0.0, "aupr_in": 1.0, "aupr_out": 1.0}


def test_perfectly_inverted():
    m = all_metrics([3.0, 4.0, 5.0], [0.0, 1.0, 2.0])
    assert m["auroc"] == 0.0
    assert m["fpr95"] == 1.0 and m["fpr95_oodpos"] == 1.0
    assert m["aupr_in"] < 0.6 and m["aupr_out"] < 0.6


def test_all_tied_scores():
    m = all_metrics([1.0] * 4, [1.0] * 4)
    assert m["auroc"] == 0.5
    # a threshold keeping ≥95 % of ID keeps every tied OOD sample too
    assert m["fpr95"] == 1.0 and m["fpr95_oodpos"] == 1.0
    assert m["aupr_in"] == pytest.approx(0.75) and m["aupr_out"] == pytest.approx(0.75)


def test_auroc_counts_pairs_with_half_ties():
    # pairs (id, ood): 0<1 ✓, 0<2 ✓, 1=1 ½, 1<2 ✓ → 3.5 / 4
    assert auroc([0.0, 1.0], [1.0, 2.0]) == pytest.approx(0.875)


def test_fpr95_papers_convention_counts_ood_at_or_below_id_threshold():
    id_s = np.arange(20, dtype=float)             # 95 % of ID kept at threshold 18
    ood = np.array([0.5, 18.0, 18.5, 30.0])      # 0.5 and 18.0 are at or below 18
    assert fpr95(id_s, ood) == pytest.approx(0.5)


def test_fpr95_oodpos_is_the_fraction_of_id_flagged_at_95_tpr():
    ood = np.arange(100, 120, dtype=float)        # 20 OOD: flagging 19 needs threshold 101
    id_s = np.array([0.0, 100.5, 101.0, 150.0])   # 101 and 150 are flagged
    assert fpr95_oodpos(id_s, ood) == pytest.approx(0.5)


def test_conventions_differ_on_the_same_scores():
    id_s = np.array([*range(19), 100.0])         # 20 ID scores
    ood = np.array([17.5, 200.0])
    # papers: keep 19/20 ID → threshold 18; OOD at or below it: 17.5 → 1/2
    assert fpr95(id_s, ood) == 0.5
    # OpenOOD: flag ≥ 95 % of 2 OOD → both → threshold 17.5; ID flagged: 18 and 100 → 2/20
    assert fpr95_oodpos(id_s, ood) == pytest.approx(0.1)


def test_hand_computed_aupr_values():
    # ID [0, 2], OOD [1]. OOD positive: PR points (r, p) = (0, 1), (0, 0) at t=2, (1, 1/2) at t=1;
    # trapezoids in recall order: 0 + (0 + 1/2) / 2 = 1/4.
    assert aupr_out([0.0, 2.0], [1.0]) == pytest.approx(0.25)
    # ID positive on negated scores: (0, 1), (1/2, 1) at 0, (1/2, 1/2) at -1, (1, 2/3) at -2;
    # area = 1/2 + 0 + (1/2 + 2/3) / 4 = 19/24.
    assert aupr_in([0.0, 2.0], [1.0]) == pytest.approx(19 / 24)


def test_aupr_in_is_aupr_out_with_roles_and_sign_swapped():
    id_s = np.array([0.1, 0.2, 0.3, 0.9])
    ood = np.array([0.35, 0.8, 0.95])
    assert aupr_in(id_s, ood) == pytest.approx(aupr_out(-ood, -id_s))
    assert aupr_in(id_s, ood) != pytest.approx(aupr_out(id_s, ood))


def test_rejects_nan_and_empty():
    with pytest.raises(ValueError):
        auroc([np.nan, 1.0], [2.0])
    with pytest.raises(ValueError):
        auroc([], [1.0])
