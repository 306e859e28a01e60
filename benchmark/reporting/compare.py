"""``ood-bench compare RUN --reference DIR``: does a run reproduce reference results?

The reference is a finished run folder (``metrics.csv`` + ``manifest.json``) of the same
protocol, ideally over several seeds. For every entry (method or sub-score) × OOD set present in
both, the run's mean AUROC over its seeds is compared with the reference's mean:

    tolerance = max(k · σ_ref · sqrt(1/n_ref + 1/n_run), floor)

σ_ref is the reference's seed standard deviation of that AUROC (the spread a re-run on the same
protocol can show), ``k`` defaults to 3 (a 3-σ band of the difference of two means), and
``floor`` (default 0.1 AUROC points) absorbs the 6 significant digits ``metrics.csv`` keeps and
entries whose seeds agree exactly. A reference with a single seed has no spread: its tolerance
is the floor. A difference beyond the tolerance is drift.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ood_bench.reporting.leaderboard import load_run, protocol_differences
from ood_bench.reporting.tables import MEAN_GROUP
from ood_bench.utils.errors import UserError

DEFAULT_K = 3.0
DEFAULT_FLOOR = 0.001  # AUROC as a fraction: 0.1 points


@dataclass
class Comparison:
    """``table``: one row per entry × OOD set (AUROC in %); ``notes``: what the reader should
    know (machines differ, entries skipped)."""

    table: pd.DataFrame
    notes: list[str]

    @property
    def drifted(self) -> pd.DataFrame:
        return self.table[~self.table["ok"]]

    def to_text(self) -> str:
        shown = self.table.assign(ok=self.table["ok"].map({True: "ok", False: "DRIFT"}))
        body = shown.to_markdown(index=False, floatfmt=".2f", tablefmt="simple")
        verdict = (f"{len(self.drifted)} of {len(self.table)} AUROCs drifted beyond their tolerance"
                   if len(self.drifted) else f"all {len(self.table)} AUROCs within their tolerance")
        return "\n".join([body, "", *self.notes, verdict]) + "\n"


def _per_set(metrics: pd.DataFrame) -> pd.DataFrame:
    sets = metrics[metrics["group"] != MEAN_GROUP]
    return sets.groupby(["entry", "ood"], sort=False)["auroc"].agg(["mean", "std", "count"]).reset_index()


def compare_runs(run_dir: Path, reference_dir: Path, k: float = DEFAULT_K,
                 floor: float = DEFAULT_FLOOR) -> Comparison:
    """Compare the run in ``run_dir`` with the reference run in ``reference_dir``.

    Raises:
        UserError: either folder is not a finished run, the protocols differ (ID set, image
            counts, options of a shared method), or the two share no entry × OOD set.
    """
    if not (math.isfinite(k) and k > 0):  # NaN compares False both ways: tested explicitly
        raise UserError(f"--k {k}: must be a positive finite number of standard errors, e.g. --k 3")
    if not (math.isfinite(floor) and floor >= 0):
        raise UserError(f"--floor {floor * 100:g}: must be a finite number of AUROC points, 0 or more, e.g. --floor 0.1")
    run_m, run_man = load_run(run_dir)
    ref_m, ref_man = load_run(reference_dir)
    diff = protocol_differences(ref_man, run_man)
    if diff:
        raise UserError(f"{run_dir} does not follow the reference's protocol ({'; '.join(diff)}); "
                        f"re-run with the reference's command ({ref_man.get('command', '?')})")
    ref, run = _per_set(ref_m), _per_set(run_m)
    both = ref.merge(run, on=["entry", "ood"], suffixes=("_ref", "_run"))
    if both.empty:
        raise UserError(f"{run_dir} and {reference_dir} share no method × OOD set; run the reference's methods")
    rows = []
    for r in both.itertuples():
        sd = 0.0 if pd.isna(r.std_ref) else float(r.std_ref)
        tol = max(k * sd * math.sqrt(1 / r.count_ref + 1 / r.count_run), floor)
        delta = float(r.mean_run - r.mean_ref)
        rows.append({"entry": r.entry, "ood": r.ood, "reference": 100 * r.mean_ref, "ref std": 100 * sd,
                     "ref seeds": int(r.count_ref), "run": 100 * r.mean_run, "run seeds": int(r.count_run),
                     "diff": 100 * delta, "tolerance": 100 * tol, "ok": abs(delta) <= tol})
    notes = []
    skipped = len(ref) - len(both)
    if skipped:
        notes.append(f"{skipped} reference AUROCs not in the run (methods or sets not run) were not checked")
    if (both["count_ref"] < 2).any():
        notes.append("the reference has a single seed for some entries: their tolerance is the floor only")
    fa = (ref_man.get("machine") or {}).get("fingerprint")
    fb = (run_man.get("machine") or {}).get("fingerprint")
    if fa != fb:
        m = ref_man.get("machine") or {}
        notes.append(f"the reference comes from another machine type ({m.get('cpu', 'unknown')}, "
                     f"{m.get('isa', '?')}, {m.get('device', '?')}): trained models can differ in their last bits")
    return Comparison(pd.DataFrame(rows), notes)
