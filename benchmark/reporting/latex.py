"""LaTeX leaderboards that drop into a paper unchanged (pandas ``Styler.to_latex``).

Two tables, accuracy and cost apart, so that each fits ``\\textwidth`` of a one-column article
(345 pt at 10 pt) with the usual five to eight OOD sets:

* **accuracy**: AUROC (%) ↑ per OOD set under ``\\multicolumn`` Near-OOD / Far-OOD headers
  (a group of one set has no separate average), the group averages, the average over all
  sets, and the mean FPR@95 (%) ↓;
* **cost**: images/s ↑, network evaluations per image, steps, repetitions, fit seconds, peak
  memory, ID accuracy.

Rows are the methods' canonical scores under their display names (``DLSR``, ``Pixel
Mahalanobis``); sub-scores (``DLSR (mse)``) only on request, and then never bold. The best value
of each ranked column among the canonical rows is bold. Several seeds: ``mean$_{\\pm std}$``
(a subscript keeps the column narrow), and no ``± 0`` for constants. Needs ``booktabs``.

Fitting the width: with many OOD sets and several seeds, the per-set stds are left out first
(the averages keep theirs; every std stays in ``leaderboard.csv``). Then each table takes the
first of ``\\normalsize``, ``\\small``,
``\\footnotesize`` (the latter with ``\\tabcolsep`` 4 then 3 pt) whose estimated width
(:func:`estimate_width_pt`) is within :data:`TEXTWIDTH_PT`; a table too wide even then (many OOD
sets) is wrapped in ``\\resizebox{\\textwidth}{!}{…}`` (needs ``graphicx``), as it is
always with ``resize=True``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ood_bench.utils.naming import one_line

if TYPE_CHECKING:
    from ood_bench.reporting.leaderboard import Leaderboard

GROUP_TITLES = {"near": "Near-OOD", "far": "Far-OOD"}
UP, DOWN = r"$\uparrow$", r"$\downarrow$"
COST_ARROWS = {"max": UP, "min": DOWN}
# Decimals in the paper table: one for AUROC/FPR in %, as the papers print them (two decimals
# would add ~ 5 pt per column for digits that are noise at these test-set sizes).
PAPER_DECIMALS = {"set": 1, "group": 1, "avg": 1, "fpr": 1}
NA = "--"
TEXTWIDTH_PT = 345.0  # \textwidth of a one-column article at 10 pt (letter or A4 paper)
# (size command, glyph-width scale vs 10 pt, \tabcolsep in pt); the first whose estimate fits
# is used. The scales are those of the optical sizes, not 9/10 and 8/10: a cmr9 digit is
# 4.70 pt wide and a cmr8 digit 4.32 pt, against 5.00 pt in cmr10.
SIZES = ((r"\normalsize", 1.0, 6.0), (r"\small", 0.94, 4.0), (r"\footnotesize", 0.865, 4.0),
         (r"\footnotesize", 0.865, 3.0))


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in a name (``dlsr[mse]``, ``digits_5``)."""
    out = []
    for ch in one_line(text):  # a newline in a name must not end a line (or a comment)
        out.append({"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#",
                    "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                    "^": r"\textasciicircum{}"}.get(ch, ch))
    return "".join(out)


def _cell(board: Leaderboard, row: str, col: str, decimals: int, with_std: bool = True) -> str:
    v = board.mean.at[row, col]
    if pd.isna(v):
        return NA
    spread = board.spread(row, col, decimals) if with_std else None
    return f"{v:.{decimals}f}" + ("" if spread is None else f"$_{{\\pm {spread:.{decimals}f}}}$")


def _styled(board: Leaderboard, rows: list[str], cols: list[str], header: list[tuple[str, ...]],
            decimals: dict[str, int], std_cols: set[str] | None = None) -> str:
    """A ``tabular`` of ``cols`` with a MultiIndex header, through ``Styler.to_latex``; the std
    over seeds shows in ``std_cols`` (default: all)."""
    cells = pd.DataFrame({c: [_cell(board, r, c, decimals[c], std_cols is None or c in std_cols) for r in rows]
                          for c in cols},
                         index=[latex_escape(board.row_titles.get(r, r)) for r in rows])
    cells.columns = pd.MultiIndex.from_tuples(header) if len(header[0]) > 1 else [h[0] for h in header]
    cells.index.name = "Method"
    styler = cells.style
    # bold via the Styler (``--rwrap`` wraps the cell in \textbf{…}), decided on the numbers
    best = {c: board.best(c) for c in cols}
    bold = pd.DataFrame([[("textbf:--rwrap;" if board.shows(best[c], r, c, decimals[c]) else "") for c in cols]
                         for r in rows], index=cells.index, columns=cells.columns)
    styler = styler.apply(lambda _: bold, axis=None)
    ncols = len(cols)
    return styler.to_latex(column_format="l" + "r" * ncols, hrules=True, multicol_align="c",
                           siunitx=False, convert_css=False)


def _tidy(tex: str) -> str:
    """Styler writes the index name on its own header row below the column headers, which
    costs a line; put ``Method`` into the last header row instead."""
    lines = tex.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Method &") and set(line[len("Method"):].replace("&", "").replace("\\", "").strip()) == set():
            head = i - 1
            lines[head] = "Method" + lines[head][lines[head].index(" &"):] if lines[head].startswith(" &") else lines[head]
            del lines[i]
            break
    return "\n".join(lines) + "\n"


def accuracy_table(board: Leaderboard, sub_scores: bool = False, set_std: bool = True) -> str:
    """The accuracy tabular; ``set_std=False`` keeps the std over seeds on the averages only."""
    rows = [r for r in board.mean.index if sub_scores or board.primary.get(r, True)]
    sets = [c for c in board.mean.columns if board.kind.get(c) == "set"]
    groups = list(dict.fromkeys(board.group[c] for c in sets))
    grouped = groups != ["ood"]
    cols: list[str] = []
    header: list[tuple[str, ...]] = []
    for g in groups:
        members = [c for c in sets if board.group[c] == g]
        top = GROUP_TITLES.get(g, g.capitalize()) if grouped else "OOD sets"
        cols += members
        header += [(f"AUROC {UP}", top, latex_escape(board.col_titles.get(c, c))) for c in members]
        avg = [c for c in board.mean.columns if board.kind.get(c) == "group" and board.group.get(c) == g]
        if avg and len(members) > 1:  # a group of one set: its average is that set
            cols += avg
            header.append((f"AUROC {UP}", top, "Avg."))
    cols.append("avg")
    header.append((f"AUROC {UP}", "All", "Avg."))
    if "FPR95 avg" in board.mean.columns:
        cols.append("FPR95 avg")
        header.append((f"FPR95 {DOWN}", "All", "Avg."))
    decimals = {c: PAPER_DECIMALS.get(board.kind.get(c, ""), board.decimals.get(c, 2)) for c in cols}
    std_cols = None if set_std else {c for c in cols if board.kind.get(c) != "set"}
    return _tidy(_styled(board, rows, cols, header, decimals, std_cols))


def cost_table(board: Leaderboard, sub_scores: bool = False) -> str:
    rows = [r for r in board.mean.index if sub_scores or board.primary.get(r, True)]
    cols = [c for c in board.mean.columns if board.kind.get(c) == "cost"]
    header = [(latex_escape(board.col_titles.get(c, c)) + (f" {COST_ARROWS[board.better[c]]}" if board.better.get(c) else ""),)
              for c in cols]
    decimals = {c: board.decimals.get(c, 2) for c in cols}
    return _tidy(_styled(board, rows, cols, header, decimals))


# ---------------------------------------------------------------------- fitting the width
# Glyph widths of Computer Modern Roman at 10 pt (from cmr10.tfm / cmbx10.tfm, rounded): every
# digit is 5.0 pt (bold 5.75), '.' 2.78, space 3.33, upper case ~7.2 on average, lower case
# ~5.0. Summing them per cell, taking each column's widest cell and adding 2 \tabcolsep gives
# the tabular's width to within a few percent (the LaTeX test checks it against pdflatex),
# which is what lets CI check the width where no LaTeX is installed.
_W = {"digit": 5.0, "bold_digit": 5.75, ".": 2.78, " ": 3.33, "upper": 7.2, "lower": 5.0, "other": 5.0}
_TOKENS = ((r"$\uparrow$", 5.0), (r"$\downarrow$", 5.0), (r"$\pm$", 7.8), ("--", 5.0), ("–", 5.0))


def _text_width(text: str, bold: bool = False, scale: float = 1.0) -> float:
    w = 0.0
    for token, tw in _TOKENS:
        w += text.count(token) * tw * scale
        text = text.replace(token, "")
    for ch in text:
        if ch.isdigit():
            w += (_W["bold_digit"] if bold else _W["digit"]) * scale
        elif ch in ".  ":
            w += _W[ch] * scale
        elif ch.isupper():
            w += _W["upper"] * scale * (1.1 if bold else 1.0)
        elif ch.isalpha():
            w += _W["lower"] * scale * (1.1 if bold else 1.0)
        elif ch not in "{}\\$_^":
            w += _W["other"] * scale
    return w


def _cell_width(cell: str) -> float:
    cell = cell.strip()
    bold = cell.startswith("\\textbf{")
    if bold:
        cell = cell[len("\\textbf{"):].removesuffix("}")
    main, _, sub = cell.partition("$_{")
    return _text_width(main, bold) + _text_width(sub.replace(r"\pm", "$\\pm$"), scale=0.7)


def estimate_width_pt(tabular: str, scale: float = 1.0, tabcolsep_pt: float = 6.0) -> float:
    """Estimated natural width (pt) of a ``tabular`` with glyphs ``scale`` times their 10 pt
    widths (:data:`SIZES`) and ``tabcolsep_pt``:
    per column its widest cell (``\\multicolumn`` cells excluded: they span) plus 2 \\tabcolsep."""
    widths: dict[int, float] = {}
    for line in tabular.splitlines():
        if "&" not in line:
            continue
        for j, cell in enumerate(line.rstrip().removesuffix("\\\\").split("&")):
            if "\\multicolumn" in cell:
                continue
            widths[j] = max(widths.get(j, 0.0), _cell_width(cell) * scale)
    return sum(w + 2 * tabcolsep_pt for w in widths.values())


def fits(tabular: str, textwidth_pt: float = TEXTWIDTH_PT) -> bool:
    return any(estimate_width_pt(tabular, scale, sep) <= textwidth_pt for _, scale, sep in SIZES)


def fit_width(tabular: str, resize: bool = False, textwidth_pt: float = TEXTWIDTH_PT) -> str:
    """The tabular at the largest size that fits ``textwidth_pt`` (see the module docstring)."""
    if not resize:
        for command, scale, sep in SIZES:
            if estimate_width_pt(tabular, scale, sep) <= textwidth_pt:
                if command == SIZES[0][0]:
                    return tabular
                return f"{{{command}\\setlength{{\\tabcolsep}}{{{sep:g}pt}}%\n{tabular}}}\n"
    return "\\resizebox{\\textwidth}{!}{%\n" + tabular + "}\n"


def latex_tables(board: Leaderboard, sub_scores: bool = False, resize: bool = False) -> str:
    """Both tables, each fitted to ``\\textwidth``, with provenance comments."""
    acc = accuracy_table(board, sub_scores)
    note = ""
    if not resize and not fits(acc):  # many sets and seeds: per-set stds go (they stay in the CSV)
        acc = accuracy_table(board, sub_scores, set_std=False)
        note = "% std over seeds on the averages only; per-set stds: leaderboard.csv\n"
    acc = fit_width(acc, resize)
    cost = fit_width(cost_table(board, sub_scores), resize)
    head = "".join(f"% {one_line(line)}\n" for line in board.provenance)  # one comment line each
    graphicx = " and \\usepackage{graphicx}" if "\\resizebox" in acc + cost else ""
    return (head + f"% requires \\usepackage{{booktabs}}{graphicx}\n"
            + "% accuracy: AUROC (%) per OOD set, group and overall averages, mean FPR@95 (%)\n"
            + note + acc + "\n% cost of scoring and fitting\n" + cost)
