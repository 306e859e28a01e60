"""Leaderboards: the wide method × OOD-set table and its CSV / LaTeX / Markdown exports.

A leaderboard is built from one or more runs' long-form metrics (:mod:`ood_bench.reporting.tables`):
rows are method entries (``dlsr``, ``dlsr[mse]``, …), columns are AUROC (%) per OOD set, the
group means (``near avg``, ``far avg``) and the overall ``avg``, the mean FPR@95 (%), and cost
(images/s while scoring, network evaluations per image, fit seconds, peak memory, ID accuracy
where the method classifies). With several seeds every cell is mean ± std over seeds (no
``± 0`` for constants such as NFE). The best value of each column *among the canonical rows* is
bold: a sub-score never takes the bold from the methods' canonical scores. Every export carries
its provenance (commit, versions, device, date, metric conventions). The LaTeX export (display
names, Near/Far groups, accuracy and cost apart) lives in :mod:`ood_bench.reporting.latex`.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ood_bench.data.registry import dataset_title
from ood_bench.methods.registry import METHODS
from ood_bench.utils import atomic
from ood_bench.utils.errors import UserError
from ood_bench.reporting.formats import EXTENSIONS, FORMATS
from ood_bench.utils.naming import one_line
from ood_bench.reporting.latex import latex_tables
from ood_bench.reporting.metrics import CONVENTIONS
from ood_bench.reporting.tables import MEAN_GROUP, add_mean_rows, seed_summary

RUN_FORMATS = ("csv", "latex", "md")  # written into every run folder


@dataclass
class Leaderboard:
    """``mean``/``std``: index = entry, one column per leaderboard column (std NaN for one seed).
    ``better``: column → ``"max"``, ``"min"`` or ``None`` (not ranked). ``kind``: column →
    ``"set"`` (AUROC on one OOD set), ``"group"`` (AUROC mean of a group), ``"avg"`` (AUROC
    mean of all sets), ``"fpr"`` or ``"cost"``; ``group``: AUROC column → its OOD group
    (``near``, ``far``, ``ood`` when ungrouped). ``primary``: row → canonical score or not.
    ``row_titles`` / ``col_titles``: display names (``DLSR (mse)``, ``Digits 5–9``)."""

    mean: pd.DataFrame
    std: pd.DataFrame
    better: dict[str, str | None]
    decimals: dict[str, int]
    provenance: list[str] = field(default_factory=list)
    kind: dict[str, str] = field(default_factory=dict)
    group: dict[str, str] = field(default_factory=dict)
    primary: dict[str, bool] = field(default_factory=dict)
    row_titles: dict[str, str] = field(default_factory=dict)
    col_titles: dict[str, str] = field(default_factory=dict)

    @property
    def multi_seed(self) -> bool:
        return bool(self.std.notna().any().any())

    # ------------------------------------------------------------------ formatting
    def canonical_rows(self) -> list[str]:
        return [r for r in self.mean.index if self.primary.get(r, True)]

    def best(self, col: str) -> float | None:
        """Best value of ``col`` among the canonical rows (None: not ranked, or fewer than two)."""
        rule = self.better.get(col)
        vals = self.mean.loc[self.canonical_rows(), col].dropna()
        if rule is None or len(vals) < 2:
            return None
        return float(vals.max() if rule == "max" else vals.min())

    def is_best(self, row: str, col: str, decimals: int | None = None) -> bool:
        """Whether the cell shows the best value of its column (at the printed precision)."""
        return self.shows(self.best(col), row, col, decimals)

    def shows(self, best: float | None, row: str, col: str, decimals: int | None = None) -> bool:
        """:meth:`is_best` given the column's :meth:`best` (a table asks it once per column)."""
        v = self.mean.at[row, col]
        d = self.decimals.get(col, 2) if decimals is None else decimals
        return (best is not None and self.primary.get(row, True) and pd.notna(v)
                and round(float(v), d) == round(best, d))

    def spread(self, row: str, col: str, decimals: int | None = None) -> float | None:
        """The std over seeds when it shows at the printed precision (no ``± 0`` for constants)."""
        s = self.std.at[row, col]
        d = self.decimals.get(col, 2) if decimals is None else decimals
        if pd.isna(s) or round(float(s), d) == 0:
            return None
        return float(s)

    def cells(self, bold: str, pm: str) -> pd.DataFrame:
        """Formatted strings; ``bold``/``pm`` are format templates with ``{}``."""
        out = pd.DataFrame(index=self.mean.index, columns=self.mean.columns, dtype=object)
        for col in self.mean.columns:
            d, best = self.decimals.get(col, 2), self.best(col)
            for idx in self.mean.index:
                v, s = self.mean.at[idx, col], self.spread(idx, col)
                if pd.isna(v):
                    out.at[idx, col] = "–"
                    continue
                txt = f"{v:.{d}f}"
                if self.shows(best, idx, col):
                    txt = bold.format(txt)
                if s is not None:
                    txt += pm.format(f"{s:.{d}f}")
                out.at[idx, col] = txt
        out.index.name = "method"
        return out

    def to_markdown(self) -> str:
        table = self.cells("**{}**", " ± {}").to_markdown(stralign="right", disable_numparse=True)
        notes = "\n".join(f"<sub>{html.escape(one_line(line), quote=False)}</sub>  " for line in self.provenance)
        return f"{table}\n\n{notes}\n" if notes else table + "\n"

    def to_latex(self, sub_scores: bool = False, resize: bool = False) -> str:
        """Paper tables: accuracy and cost apart, canonical rows unless ``sub_scores``;
        ``resize`` wraps each in ``\\resizebox{\\textwidth}{!}{…}`` (for many OOD sets)."""
        return latex_tables(self, sub_scores=sub_scores, resize=resize)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    def to_dict(self) -> dict:
        """Machine-readable: per row its display name, canonical flag and ``{column: {mean, std}}``
        (AUROC/FPR95 in %, std None for one seed); per column its kind, group and ranking."""
        rows = []
        for r in self.mean.index:
            vals = {c: {"mean": _num(self.mean.at[r, c]), "std": _num(self.std.at[r, c])} for c in self.mean.columns}
            rows.append({"entry": r, "name": self.row_titles.get(r, r), "canonical": self.primary.get(r, True),
                         "values": vals})
        cols = [{"column": c, "name": self.col_titles.get(c, c), "kind": self.kind.get(c), "group": self.group.get(c),
                 "better": self.better.get(c)} for c in self.mean.columns]
        return {"columns": cols, "rows": rows, "provenance": self.provenance}

    def to_csv(self) -> str:
        frame = self.mean.copy()
        if self.multi_seed:
            for col in self.mean.columns:
                frame[f"{col} ±"] = self.std[col]
            frame = frame[[c for col in self.mean.columns for c in (col, f"{col} ±")]]
        frame.index.name = "method"
        head = "".join(f"# {one_line(line)}\n" for line in self.provenance)
        return head + frame.to_csv(float_format="%.6g")

    def export(self, fmt: str) -> str:
        return {"csv": self.to_csv, "latex": self.to_latex, "md": self.to_markdown, "json": self.to_json}[fmt]()

    def write_all(self, directory: Path, stem: str = "leaderboard") -> dict[str, Path]:
        return {fmt: atomic.write_text(directory / f"{stem}{EXTENSIONS[fmt]}", self.export(fmt)) for fmt in RUN_FORMATS}


def _num(v) -> float | None:
    return None if pd.isna(v) else float(v)


# ---------------------------------------------------------------------- building
def build_leaderboard(metrics: pd.DataFrame, provenance: list[str] | None = None,
                      primary_only: bool = False) -> Leaderboard:
    """The wide leaderboard from long-form metrics (one or several runs, any seeds)."""
    s = seed_summary(metrics)
    if primary_only:
        s = s[s["primary"]]
    multi_id = s["id"].nunique() > 1
    s = s.assign(row=s["entry"] + (" @ " + s["id"] if multi_id else ""))
    rows = list(dict.fromkeys(s["row"]))
    first = s.drop_duplicates("row").set_index("row")
    primary = {r: bool(first.at[r, "primary"]) for r in rows}
    row_titles = {r: entry_title(first.at[r, "method"], first.at[r, "score"], primary[r])
                  + (f" @ {dataset_title(first.at[r, 'id'])}" if multi_id else "") for r in rows}
    mean = pd.DataFrame(index=rows, dtype=float)
    std = pd.DataFrame(index=rows, dtype=float)
    better: dict[str, str | None] = {}
    decimals: dict[str, int] = {}

    kind: dict[str, str] = {}
    group: dict[str, str] = {}
    titles: dict[str, str] = {}

    def put(col: str, part: pd.DataFrame, src: str, scale: float, rule: str | None, dec: int,
            what: str, title: str, grp: str | None = None) -> None:
        mean[col] = part.set_index("row")[src].reindex(rows) * scale
        std[col] = part.set_index("row")[f"{src}_std"].reindex(rows) * scale
        better[col], decimals[col], kind[col], titles[col] = rule, dec, what, title
        if grp is not None:
            group[col] = grp

    sets = s[s["group"] != MEAN_GROUP]
    means = s[s["group"] == MEAN_GROUP]
    for ood in dict.fromkeys(sets["ood"]):
        part = sets[sets["ood"] == ood]
        put(ood, part, "auroc", 100, "max", 2, "set", dataset_title(ood), str(part["group"].iloc[0]))
    set_titles = [titles[c] for c in titles if kind[c] == "set"]
    for c in [c for c in titles if kind[c] == "set" and set_titles.count(titles[c]) > 1]:
        titles[c] = c  # two sets with one display name (a/imgs, b/imgs): their names as given
    for label in dict.fromkeys(means["ood"]):
        if label == "mean":
            put("avg", means[means["ood"] == label], "auroc", 100, "max", 2, "avg", "Avg.")
        else:  # mean(near) → near avg
            put(f"{label[5:-1]} avg", means[means["ood"] == label], "auroc", 100, "max", 2, "group", "Avg.", label[5:-1])
    overall = means[means["ood"] == "mean"]
    put("FPR95 avg", overall, "fpr95", 100, "min", 2, "fpr", "FPR95")
    put("img/s", overall, "img_per_s", 1, "max", 1, "cost", "img/s")
    put("NFE/img", overall, "nfe", 1, None, 0, "cost", "NFE/img")
    put("steps", overall, "steps", 1, None, 0, "cost", "steps")
    put("reps", overall, "reps", 1, None, 0, "cost", "reps")
    put("fit s", overall, "fit_s", 1, None, 1, "cost", "fit (s)")
    put("peak MiB", overall, "peak_mem_mib", 1, None, 0, "cost", "peak MiB")
    if overall["id_acc"].notna().any():
        put("ID acc", overall, "id_acc", 100, None, 1, "cost", "ID acc. (%)")
    return Leaderboard(mean, std, better, decimals, provenance or [], kind, group, primary, row_titles, titles)


def method_title(method: str) -> str:
    """Display name of a method (``DLSR``); one not registered in this process (a plugin not
    loaded) keeps its registry name."""
    return (METHODS.get(method).display_name or method) if method in METHODS else method


def entry_title(method: str, score: str, primary: bool) -> str:
    """Display name of a leaderboard entry: ``DLSR``, or ``DLSR (mse)`` for a sub-score."""
    return method_title(method) if primary else f"{method_title(method)} ({score})"


def provenance_lines(manifests: list[dict]) -> list[str]:
    """Short provenance for exports: per run its date, commit, device and key versions."""
    lines = []
    for m in manifests:
        v = m.get("versions", {})
        git = m.get("git", {}) or {}
        commit = (git.get("commit") or "unknown")[:10] + ("+dirty" if git.get("dirty") else "")
        dev = m.get("device", {})
        lines.append(
            f"run {m.get('run_dir', '?')}: {m.get('finished') or m.get('started', '?')}, ood-bench "
            f"{v.get('ood-bench', '?')} @ {commit}, device {dev.get('type', '?')} ({dev.get('name', '?')}), "
            f"torch {v.get('torch', '?')}, diffusers {v.get('diffusers', '?')}, seeds {m.get('seeds', '?')}"
            + (f", {w} score workers (img/s: sets scored side by side, sharing the cores; a run without "
               f"--score-in-workers, or `ood-bench speed`, times each alone)" if (w := m.get("score_workers") or 0) > 1 else "")
        )
    lines.append("AUROC/FPR95 in %; " + "; ".join(f"{k}: {v}" for k, v in CONVENTIONS.items()
                                                   if k in ("score", "auroc", "fpr95")))
    return lines


# ---------------------------------------------------------------------- runs on disk
def load_run(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    """``(metrics, manifest)`` of a finished run folder.

    Raises:
        UserError: not a run folder, an unfinished run (its manifest does not say ``complete``:
            it failed, was interrupted or killed, or is still going), or a damaged file.
    """
    run_dir = Path(run_dir)
    mfile, jfile = run_dir / "metrics.csv", run_dir / "manifest.json"
    if not jfile.is_file():
        raise UserError(f"{run_dir} is not a run folder (no manifest.json); give the --out folder of a run")
    try:
        manifest = json.loads(jfile.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as e:
        raise UserError(f"{jfile} is damaged ({type(e).__name__}); re-run the command that wrote {run_dir}") from None
    if manifest.get("kind") == "sweep":
        raise UserError(f"{run_dir} is a sweep folder (ood-bench sweep), not a run: its results are "
                        f"{run_dir / 'frontier.csv'}; give leaderboard/compare the --out folder of `ood-bench run`")
    status = manifest.get("status")
    if status != "complete":
        raise UserError(f"{run_dir} holds an unfinished run (status {status!r}: it failed, was interrupted or "
                        f"killed, or is still running); re-run its command to finish it")
    if not mfile.is_file():
        raise UserError(f"{run_dir} has no metrics.csv; re-run the command that wrote it")
    try:
        metrics = pd.read_csv(mfile, comment="#")
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise UserError(f"{mfile} is damaged ({type(e).__name__}); re-run the command that wrote {run_dir}") from None
    missing = {"entry", "id", "ood", "seed", "group", "auroc"} - set(metrics.columns)
    if missing:
        raise UserError(f"{mfile} is damaged (no column {', '.join(sorted(missing))}); re-run the command that wrote it")
    manifest.setdefault("run_dir", str(run_dir))
    return metrics, manifest


def protocol(manifest: dict) -> dict[str, Any]:
    """What must agree for two runs' numbers to share a table: the ID set (train and test, with
    their image counts and limits), each OOD set's content and count, and each method's options."""
    ds = manifest.get("datasets", {})
    return {"id": {k: (ds.get(k) or {}).get("fingerprint") for k in ("id_train", "id_test")},
            "n": {k: (v or {}).get("n") for k, v in ds.items()},
            "ood": {k: (v or {}).get("fingerprint") for k, v in ds.items() if k.startswith("ood:")},
            "methods": {k: (v or {}).get("config") for k, v in manifest.get("methods", {}).items()}}


def protocol_differences(a: dict, b: dict) -> list[str]:
    """How two runs' protocols (:func:`protocol`) differ, as short phrases (empty: compatible)."""
    pa, pb = protocol(a), protocol(b)
    out = []
    if pa["id"] != pb["id"]:
        out.append("ID set")
    for k in sorted(set(pa["n"]) & set(pb["n"])):
        if pa["n"][k] != pb["n"][k]:
            out.append(f"image count of {k.removeprefix('ood:')} ({pa['n'][k]} vs {pb['n'][k]})")
    for k in sorted(set(pa["ood"]) & set(pb["ood"])):
        if pa["ood"][k] != pb["ood"][k] and pa["n"].get(k) == pb["n"].get(k):
            out.append(f"content of {k.removeprefix('ood:')}")
    for m in sorted(set(pa["methods"]) & set(pb["methods"])):
        ca, cb = pa["methods"][m] or {}, pb["methods"][m] or {}
        diff = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
        if diff:
            out.append(f"options of {m} ({', '.join(diff)})")
    return out


def merge_runs(run_dirs: list[Path], allow_mixed: bool = False) -> tuple[pd.DataFrame, list[dict]]:
    """Union of several finished runs' metrics.

    Runs must share their protocol (:func:`protocol_differences`) and not repeat a row (same
    entry, ID, OOD set and seed): otherwise one table would mix numbers that are not comparable,
    or silently drop some. ``allow_mixed=True`` merges them anyway, each row labelled with its
    run (``entry [run]``), so nothing is replaced and nothing pretends to be the same.

    Raises:
        UserError: the runs differ (without ``allow_mixed``), or a folder is not a finished run.
    """
    frames, manifests = [], []
    for d in run_dirs:
        df, man = load_run(d)
        frames.append(df.assign(run=str(d)))
        manifests.append(man)
    labels = _run_labels(run_dirs)
    problems = []
    for i in range(1, len(manifests)):
        diff = protocol_differences(manifests[0], manifests[i])
        if diff:
            problems.append(f"{run_dirs[0]} and {run_dirs[i]} differ in {'; '.join(diff)}")
    merged = pd.concat(frames, ignore_index=True)
    # mean rows are recomputed over the union: a merge can add OOD sets to an entry
    sets = merged[merged["group"] != MEAN_GROUP]
    dup = sets.duplicated(["entry", "id", "ood", "seed"], keep=False)
    if dup.any() and not problems:
        first = sets[dup].iloc[0]
        problems.append(f"{int(dup.sum())} rows appear in several runs (e.g. {first['entry']} on {first['ood']}, "
                        f"seed {first['seed']})")
    if problems and not allow_mixed:
        raise UserError(f"cannot merge: {problems[0]}; merge runs of one protocol, or pass --allow-mixed "
                        f"to show them side by side, labelled by run")
    if problems:
        sets = sets.assign(entry=sets["entry"] + " [" + sets["run"].map(labels) + "]")
    return add_mean_rows(sets.drop(columns=["run"]).reset_index(drop=True)), manifests


def _run_labels(run_dirs: list[Path]) -> dict[str, str]:
    """Short, distinct run labels: folder names (full paths when two share a name)."""
    names = [Path(d).name for d in run_dirs]
    unique = len(set(names)) == len(names)
    return {str(d): (n if unique else str(d)) for d, n in zip(run_dirs, names)}


# ---------------------------------------------------------------------- per-set and comparisons
def _pct(v: float, d: int = 2) -> str:
    return "–" if pd.isna(v) else f"{100 * v:.{d}f}"


def format_per_set(df: pd.DataFrame) -> pd.DataFrame:
    """Readable per-set table (%): ``mean [± std] [95 % CI]`` for AUROC and FPR@95."""
    def cell(row, m: str, ci: bool) -> str:
        txt = _pct(row[m])
        if row.get("seeds", 1) > 1 and pd.notna(row.get(f"{m}_std")):
            txt += f" ± {_pct(row[f'{m}_std'])}"
        if ci and pd.notna(row.get(f"{m}_low")):
            txt += f" [{_pct(row[f'{m}_low'])}, {_pct(row[f'{m}_high'])}]"
        return txt

    out = pd.DataFrame({
        "method": df["entry"], "OOD": df["ood"], "group": df["group"],
        "AUROC [95% CI]": [cell(r, "auroc", True) for _, r in df.iterrows()],
        "FPR95 [95% CI]": [cell(r, "fpr95", True) for _, r in df.iterrows()],
        "FPR95 (OOD pos.)": [cell(r, "fpr95_oodpos", False) for _, r in df.iterrows()],
        "AUPR-In": [cell(r, "aupr_in", False) for _, r in df.iterrows()],
        "AUPR-Out": [cell(r, "aupr_out", False) for _, r in df.iterrows()],
        "n ID / OOD": [f"{int(a)} / {int(b)}" for a, b in zip(df["n_id"], df["n_ood"])],
    })
    return out


def format_p(p: float, n_resamples: int) -> str:
    """A bootstrap p-value as text: below the resolution ``1 / n_resamples`` it is not 0 but
    ``< 0.001`` (no resample went the other way among 1000)."""
    if pd.isna(p):
        return "–"
    floor = 1 / n_resamples if n_resamples else 0.0
    return f"< {floor:g}" if p < floor else f"{p:.3g}"


P_VALUE_NOTE = ("p: one-sided paired bootstrap p-value (the same ID and OOD images resampled for both "
                "methods; mid-p for ties) that 'better' beats 'worse' on this OOD set: the fraction of "
                "{n} resamples in which it did not. Each row is one test; with many rows, some small "
                "p-values arise by chance: compare against a threshold corrected for the number of rows "
                "(Bonferroni: 0.05 / {rows} here) before calling a difference significant.")


def format_comparisons(df: pd.DataFrame, n_resamples: int = 1000) -> pd.DataFrame:
    out = pd.DataFrame({
        "OOD": df["ood"], "better": df["better"], "worse": df["worse"],
        "AUROC better / worse": [f"{_pct(a)} / {_pct(b)}" for a, b in zip(df["auroc_better"], df["auroc_worse"])],
        "p (AUROC)": [format_p(p, n_resamples) for p in df["p_auroc"]],
        "p (FPR95)": [format_p(p, n_resamples) for p in df["p_fpr95"]],
    })
    return out


def markdown(df: pd.DataFrame, notes: list[str] | None = None) -> str:
    table = df.to_markdown(index=False, disable_numparse=True)
    extra = "\n".join(f"<sub>{html.escape(one_line(n), quote=False)}</sub>  " for n in notes or [])
    return f"{table}\n\n{extra}\n" if extra else table + "\n"
