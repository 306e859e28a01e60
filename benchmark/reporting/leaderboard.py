"""Leaderboards: the wide method × OOD-set table and its CSV / LaTeX / Markdown exports.

A leaderboard is built from one or more runs' long-form metrics (:mod:`ood_bench.reporting.tables`):
rows are method entries (``dlsr``, ``dlsr[mse]``, …), columns are AUROC (%) per OOD set, the
group means (``near avg``, ``far avg``) and the overall ``avg``, the mean FPR@95 (%), and cost
(images/s while scoring, network evaluations per image, fit seconds, peak memory, ID accuracy
where the method classifies). With several seeds every cell is mean ± std over seeds. The best
value of each column is bold. Every export carries its provenance (commit, versions, device,
date, metric conventions).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ood_bench.utils import atomic
from ood_bench.utils.errors import UserError
from ood_bench.reporting.metrics import CONVENTIONS
from ood_bench.reporting.tables import MEAN_GROUP, add_mean_rows, seed_summary

FORMATS = ("csv", "latex", "md")
EXTENSIONS = {"csv": ".csv", "latex": ".tex", "md": ".md"}


@dataclass
class Leaderboard:
    """``mean``/``std``: index = entry, one column per leaderboard column (std NaN for one seed).
    ``better``: column → ``"max"``, ``"min"`` or ``None`` (not ranked)."""

    mean: pd.DataFrame
    std: pd.DataFrame
    better: dict[str, str | None]
    decimals: dict[str, int]
    provenance: list[str] = field(default_factory=list)

    @property
    def multi_seed(self) -> bool:
        return bool(self.std.notna().any().any())

    # ------------------------------------------------------------------ formatting
    def _best(self, col: str) -> float | None:
        rule = self.better.get(col)
        vals = self.mean[col].dropna()
        if rule is None or vals.empty or len(self.mean) < 2:
            return None
        return float(vals.max() if rule == "max" else vals.min())

    def cells(self, bold: str, pm: str) -> pd.DataFrame:
        """Formatted strings; ``bold``/``pm`` are format templates with ``{}``."""
        out = pd.DataFrame(index=self.mean.index, columns=self.mean.columns, dtype=object)
        for col in self.mean.columns:
            d = self.decimals.get(col, 2)
            best = self._best(col)
            for idx in self.mean.index:
                v, s = self.mean.at[idx, col], self.std.at[idx, col]
                if pd.isna(v):
                    out.at[idx, col] = "–"
                    continue
                txt = f"{v:.{d}f}"
                if best is not None and round(v, d) == round(best, d):
                    txt = bold.format(txt)
                if pd.notna(s):
                    txt += pm.format(f"{s:.{d}f}")
                out.at[idx, col] = txt
        out.index.name = "method"
        return out

    def to_markdown(self) -> str:
        table = self.cells("**{}**", " ± {}").to_markdown(stralign="right", disable_numparse=True)
        notes = "\n".join(f"<sub>{line}</sub>  " for line in self.provenance)
        return f"{table}\n\n{notes}\n" if notes else table + "\n"

    def to_latex(self) -> str:
        cells = self.cells(r"\textbf{{{}}}", r"{{\scriptsize$\pm${}}}")
        cells.index = [_latex_escape(str(i)) for i in cells.index]
        cells.columns = [_latex_escape(str(c)) for c in cells.columns]
        cells = cells.rename_axis("Method").reset_index()
        body = cells.to_latex(escape=False, index=False, column_format="l" + "r" * (len(cells.columns) - 1))
        head = "\n".join(f"% {line}" for line in self.provenance)
        return (head + "\n" if head else "") + "% requires \\usepackage{booktabs}\n" + body

    def to_csv(self) -> str:
        frame = self.mean.copy()
        if self.multi_seed:
            for col in self.mean.columns:
                frame[f"{col} ±"] = self.std[col]
            frame = frame[[c for col in self.mean.columns for c in (col, f"{col} ±")]]
        frame.index.name = "method"
        head = "".join(f"# {line}\n" for line in self.provenance)
        return head + frame.to_csv(float_format="%.6g")

    def export(self, fmt: str) -> str:
        return {"csv": self.to_csv, "latex": self.to_latex, "md": self.to_markdown}[fmt]()

    def write_all(self, directory: Path, stem: str = "leaderboard") -> dict[str, Path]:
        return {fmt: atomic.write_text(directory / f"{stem}{EXTENSIONS[fmt]}", self.export(fmt)) for fmt in FORMATS}


def _latex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        s = s.replace(a, b)
    return s


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
    mean = pd.DataFrame(index=rows, dtype=float)
    std = pd.DataFrame(index=rows, dtype=float)
    better: dict[str, str | None] = {}
    decimals: dict[str, int] = {}

    def put(col: str, part: pd.DataFrame, src: str, scale: float, rule: str | None, dec: int) -> None:
        mean[col] = part.set_index("row")[src].reindex(rows) * scale
        std[col] = part.set_index("row")[f"{src}_std"].reindex(rows) * scale
        better[col], decimals[col] = rule, dec

    sets = s[s["group"] != MEAN_GROUP]
    means = s[s["group"] == MEAN_GROUP]
    for ood in dict.fromkeys(sets["ood"]):
        put(ood, sets[sets["ood"] == ood], "auroc", 100, "max", 2)
    for label in dict.fromkeys(means["ood"]):
        col = "avg" if label == "mean" else f"{label[5:-1]} avg"  # mean(near) → near avg
        put(col, means[means["ood"] == label], "auroc", 100, "max", 2)
    overall = means[means["ood"] == "mean"]
    put("FPR95 avg", overall, "fpr95", 100, "min", 2)
    put("img/s", overall, "img_per_s", 1, "max", 1)
    put("NFE/img", overall, "nfe", 1, None, 0)
    put("steps", overall, "steps", 1, None, 0)
    put("reps", overall, "reps", 1, None, 0)
    put("fit s", overall, "fit_s", 1, None, 1)
    put("peak MiB", overall, "peak_mem_mib", 1, None, 0)
    if overall["id_acc"].notna().any():
        put("ID acc", overall, "id_acc", 100, None, 1)
    return Leaderboard(mean, std, better, decimals, provenance or [])


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


def format_comparisons(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "OOD": df["ood"], "better": df["better"], "worse": df["worse"],
        "AUROC better / worse": [f"{_pct(a)} / {_pct(b)}" for a, b in zip(df["auroc_better"], df["auroc_worse"])],
        "p (AUROC)": ["–" if pd.isna(p) else f"{p:.3g}" for p in df["p_auroc"]],
        "p (FPR95)": ["–" if pd.isna(p) else f"{p:.3g}" for p in df["p_fpr95"]],
    })
    return out


def markdown(df: pd.DataFrame, notes: list[str] | None = None) -> str:
    table = df.to_markdown(index=False, disable_numparse=True)
    extra = "\n".join(f"<sub>{n}</sub>  " for n in notes or [])
    return f"{table}\n\n{extra}\n" if extra else table + "\n"
