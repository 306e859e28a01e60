"""Paper-ready outputs: LaTeX tables (and their width), figures, HTML p-values, example grids."""
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ood_bench.methods.examples import save_grid
from ood_bench.reporting.latex import accuracy_table, cost_table, estimate_width_pt, fits
from ood_bench.reporting.leaderboard import build_leaderboard, format_p
from ood_bench.reporting.plots import auroc_vs_throughput, histogram_bins, score_histogram
from ood_bench.reporting.tables import add_mean_rows

NEAR, FAR = ["cifar100", "tinyimagenet"], ["svhn", "dtd", "places365", "lsun_c", "isun"]
ENTRIES = [("dlsr", "mfsim", True), ("dlsr", "mse", False), ("lmd", "lpips", True),
           ("diffood", "logit@240", True), ("pixel-mahalanobis", "mahalanobis", True), ("knn", "knn", True)]


def _metrics(seeds=(0, 1)) -> pd.DataFrame:
    """A CIFAR-10-like long-form metrics table: 6 entries × 7 OOD sets × 2 seeds. The sub-score
    ``dlsr[mse]`` is the best on every set; among canonical rows ``lmd`` is."""
    rows = []
    for k, (method, score, primary) in enumerate(ENTRIES):
        for seed in seeds:
            for j, ood in enumerate(NEAR + FAR):
                auc = 0.999 if not primary else 0.95 if method == "lmd" else 0.80 + 0.01 * k + 0.003 * seed
                rows.append({"entry": method if primary else f"{method}[{score}]", "method": method, "score": score,
                             "primary": primary, "seed": seed, "id": "cifar10", "ood": ood,
                             "group": "near" if ood in NEAR else "far", "n_id": 100, "n_ood": 100,
                             "auroc": auc - 0.001 * j, "fpr95": 1 - auc, "fpr95_oodpos": 0.5, "aupr_in": 0.9,
                             "aupr_out": 0.9, "fit_s": 100.0 + seed, "img_per_s": 12.5 * (k + 1), "nfe": 20.0 * (k + 1),
                             "steps": 10.0, "reps": 2.0, "peak_mem_mib": 2048.0, "id_acc": np.nan})
    return add_mean_rows(pd.DataFrame(rows))


def test_latex_has_display_names_groups_arrows_and_canonical_bold():
    board = build_leaderboard(_metrics())
    acc, cost = accuracy_table(board), cost_table(board)
    assert "\\multicolumn{3}{c}{Near-OOD}" in acc and "\\multicolumn{6}{c}{Far-OOD}" in acc  # sets + avg
    assert "$\\uparrow$" in acc and "FPR95 $\\downarrow$" in acc and "img/s $\\uparrow$" in cost
    for name in ("DLSR", "LMD", "DiffOOD", "Pixel Mahalanobis", "kNN", "CIFAR-100", "Tiny ImageNet", "SVHN",
                 "Textures (DTD)", "LSUN-C"):
        assert name in acc, name
    assert "dlsr" not in acc and "mse" not in acc and "cifar100" not in acc  # no internal names, no sub-scores
    lmd = next(line for line in acc.splitlines() if line.startswith("LMD &"))
    assert lmd.count("\\textbf{") == 11  # best in all 11 AUROC and FPR columns: the sub-score does not steal it
    assert "img/s" not in acc and "AUROC" not in cost  # accuracy and cost apart
    assert "\\pm 0.0}" not in acc + cost and "\\pm" in acc  # std where it varies, never ± 0 (NFE, steps)
    assert "NFE" in cost and not re.search(r"NFE.*\\pm", cost)

    with_subs = accuracy_table(board, sub_scores=True)
    sub = next(line for line in with_subs.splitlines() if line.startswith("DLSR (mse) &"))
    assert "\\textbf" not in sub  # shown on request, never bold


def test_latex_width_rule_fits_textwidth_without_latex():
    # The CI rule (no LaTeX needed): the glyph-width estimate (checked against pdflatex's own
    # measure in the LaTeX test below) picks the size, so every table fits \textwidth.
    few = build_leaderboard(_metrics(seeds=(0,)).query("ood in ['cifar100', 'svhn', 'dtd', 'mean', 'mean(far)', 'mean(near)']"))
    tex = few.to_latex()
    assert "\\resizebox" not in tex and fits(accuracy_table(few)) and fits(cost_table(few))
    many = build_leaderboard(_metrics())  # 7 sets, 2 seeds: 12 columns cannot fit at any font size
    tex = many.to_latex()
    assert not fits(accuracy_table(many, set_std=False)) and fits(cost_table(many))
    assert "averages only" in tex and tex.count("\\resizebox{\\textwidth}{!}") == 1  # accuracy only
    assert "graphicx" in tex
    assert many.to_latex(resize=True).count("\\resizebox{\\textwidth}{!}") == 2


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX installed")
def test_latex_compiles_and_fits_an_article(tmp_path):
    board = build_leaderboard(_metrics(seeds=(0,)).query("ood not in ['places365', 'isun', 'lsun_c']"))
    (tmp_path / "tables.tex").write_text(board.to_latex() + build_leaderboard(_metrics()).to_latex())
    (tmp_path / "acc.tex").write_text(accuracy_table(board))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\begin{document}\n"
        "\\newsavebox{\\tb}\\sbox{\\tb}{\\input{acc.tex}}\\typeout{NATURAL=\\the\\wd\\tb}\n"
        "\\begin{table}\\centering\n\\input{tables.tex}\\end{table}\n\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = proc.stdout
    assert proc.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log  # every table within \textwidth
    natural = float(re.search(r"NATURAL=([\d.]+)pt", log).group(1))
    estimate = estimate_width_pt(accuracy_table(board))  # \normalsize, default \tabcolsep
    assert abs(estimate - natural) / natural < 0.05, (estimate, natural)  # the CI rule's model holds


def test_p_values_below_the_bootstrap_resolution_read_less_than():
    assert format_p(0.0, 1000) == "< 0.001" and format_p(0.0004, 1000) == "< 0.001"
    assert format_p(0.0123, 1000) == "0.0123" and format_p(float("nan"), 1000) == "–"


def test_histogram_bins_show_both_sets_when_ood_is_far(tmp_path):
    rng = np.random.default_rng(0)
    id_s, ood_s = rng.normal(0, 0.01, 300), rng.normal(5, 1, 300)
    edges, axis = histogram_bins(id_s, ood_s)
    assert axis is not None  # asinh axis
    for s in (id_s, ood_s):
        assert np.count_nonzero(np.histogram(s, edges)[0]) >= 8  # many bins each, not one spike
    edges, axis = histogram_bins(rng.normal(0, 1, 300), rng.normal(0.5, 1, 300))
    assert axis is None and np.allclose(np.diff(edges), np.diff(edges)[0])  # overlapping: linear

    png = score_histogram(id_s, ood_s, tmp_path / "h.png", title="t", id_label="ID", ood_label="OOD", score_label="s")
    assert png.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    assert Image.open(png).info["dpi"][0] >= 199.5


def test_throughput_plot_has_enough_log_ticks(tmp_path):
    import matplotlib.pyplot as plt

    created = []
    orig = plt.subplots
    plt.subplots = lambda *a, **k: created.append(orig(*a, **k)) or created[-1]
    try:
        auroc_vs_throughput({"A": (30.0, 90.0, np.nan), "B": (120.0, 95.0, 1.0)}, tmp_path / "c.png", title="t")
    finally:
        plt.subplots = orig
    ax = created[0][1]
    lo, hi = ax.get_xlim()
    labels = [t.get_text() for t, v in zip(ax.get_xticklabels(), ax.get_xticks()) if lo <= v <= hi]
    assert len(labels) >= 3 and all(labels), labels  # was two ticks over a narrow range
    assert (tmp_path / "c.pdf").is_file()


def test_example_grid_rows_are_labelled(tmp_path):
    rows = [torch.rand(4, 1, 8, 8) for _ in range(3)]
    plain = Image.open(save_grid(rows, tmp_path / "a.png"))
    labelled = Image.open(save_grid(rows, tmp_path / "b.png", ("original", "masked", "inpainted")))
    assert labelled.height == plain.height and labelled.width > plain.width + 40  # a label margin
    margin = np.asarray(labelled.convert("L"))[:, : labelled.width - plain.width]
    assert (margin < 128).sum() > 50  # dark text drawn in it
