"""`ood-bench sweep`: AUROC against cost on one fitted model per method, the Pareto set, knees."""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import ood_bench
from ood_bench.cli import main
from ood_bench.methods.base import BatchOutput, fit_option, score_option
from ood_bench.methods.registry import METHODS, register_method
from ood_bench.reporting.frontier import knee_index, knees_frame, pareto_mask
from helpers import MeanConfig, MeanImage


@dataclass
class PassesConfig(MeanConfig):
    passes: int = score_option(1, "noisy passes averaged per image (more = cheaper noise, dearer score)")

    def __post_init__(self):
        if self.passes < 1:
            raise ValueError("passes must be ≥ 1")


class NoisyMean(MeanImage):
    """Distance to the mean ID image plus noise averaged over ``passes`` draws: a detector whose
    AUROC rises with its cost, like a sampler's steps."""

    config_cls = PassesConfig
    cost_knobs = {"passes": (1, 2, 8)}
    fits = 0

    def score_batch(self, x, generator):
        d = ((x - self.mean) ** 2).flatten(1).mean(1)
        noise = torch.randn((self.config.passes, len(x)), generator=generator).mean(0)
        return BatchOutput({"dist": d + 0.05 * noise, "neg": -d})

    def cost(self):
        return {"net": float(self.config.passes)}


@dataclass
class BinsConfig(MeanConfig):
    bins: int = fit_option(4, "levels of the fitted summary (a post-hoc fit: more = dearer)")


class BinnedMean(MeanImage):
    """A detector whose cost knob is a fit option (as MSMA's levels): declared, so a sweep refits
    its cheap summary per point."""

    config_cls = BinsConfig
    cost_knobs = {"bins": (2, 4)}
    fits = 0  # MeanImage.fit counts on the class

    def cost(self):
        return {"net": float(self.config.bins)}


if "test-passes" not in METHODS:
    register_method("test-passes")(NoisyMean)
    register_method("test-bins")(BinnedMean)

BASE = ["--id", "digits", "--ood", "noise", "textures", "--limit", "40", "--device", "cpu", "--quiet", "--bootstrap", "0"]


def _sweep(tmp_path, *extra, out="sweep"):
    argv = ["sweep", "--method", "test-passes", "test-mean", *BASE, "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / out), *extra]
    return main(argv)


# ------------------------------------------------------------------ Pareto and knee, by hand
def test_pareto_marks_points_no_other_beats_on_both_cost_and_auroc():
    cost = [1, 2, 4, 8, 8, 16]
    auroc = [0.70, 0.80, 0.78, 0.90, 0.85, 0.90]
    # (4, .78) is beaten by (2, .80); (8, .85) by (8, .90); (16, .90) by (8, .90) (cheaper, equal AUROC)
    assert pareto_mask(cost, auroc).tolist() == [True, True, False, True, False, False]


def test_knee_is_the_cheapest_point_within_tolerance_of_the_most_expensive():
    cost = [10, 20, 50, 100, 1000]
    auroc = [0.80, 0.893, 0.897, 0.90, 0.901]
    assert knee_index(cost, auroc, 0.005) == 2      # 0.897 ≥ 0.901 − 0.005; 0.893 is not
    assert knee_index(cost, auroc, 0.01) == 1
    assert knee_index(cost, auroc, 0.0) == 4
    assert knee_index([5], [0.5], 0.005) == 0
    frontier = pd.DataFrame({"method": ["a"] * 5, "point": [f"steps={c}" for c in cost], "ood": ["mean"] * 5,
                             "nfe": cost, "auroc": auroc, "s_per_img": np.ones(5)})
    k = knees_frame(frontier, tolerance=0.5).iloc[0]
    assert k["knee"] == "steps=50" and k["top"] == "steps=1000" and k["saving"] == 20


# ------------------------------------------------------------------ end to end
def test_sweep_scores_every_point_on_one_fit_and_writes_its_folder(tmp_path, capsys):
    NoisyMean.fits = 0
    assert _sweep(tmp_path) == 0
    out = capsys.readouterr().out
    assert NoisyMean.fits == 1  # three points, one model
    sweep = tmp_path / "sweep"
    f = pd.read_csv(sweep / "frontier.csv")
    mean = f[f["ood"] == "mean"]
    assert sorted(mean[mean["method"] == "test-passes"]["nfe"]) == [1, 2, 8]
    assert set(f["ood"]) == {"noise", "textures", "mean"} and f["pareto"].any()
    assert (f["s_per_img"] > 0).all() and f["fitted_once"].all()
    assert len(mean[mean["method"] == "test-mean"]) == 1  # no cost knob: one point, the preset's
    for name in ("frontier_nfe", "frontier_seconds"):
        assert (sweep / "plots" / f"{name}.png").stat().st_size > 1000 and (sweep / "plots" / f"{name}.pdf").is_file()
    report = (sweep / "report.html").read_text()
    assert "Cost–accuracy frontier" in report and "Knees" in report and report.count("data:image/png") == 2
    manifest = json.loads((sweep / "manifest.json").read_text())
    assert manifest["kind"] == "sweep" and manifest["status"] == "complete"
    assert "test-passes: --set test-passes.passes=" in out
    # knees.yaml is a preset: every method at its knee
    knees = yaml.safe_load((sweep / "knees.yaml").read_text())
    assert knees["methods"]["test-passes"]["passes"] in (1, 2, 8)
    assert main(["run", "--config", str(sweep / "knees.yaml"), "--device", "cpu", "--quiet", "--bootstrap", "0",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "knee-run")]) == 0
    # a sweep folder is not a run: leaderboard and compare say so
    assert main(["leaderboard", str(sweep)]) == 2
    assert "is a sweep folder" in capsys.readouterr().err


def test_second_sweep_scores_nothing_anew_and_a_wider_grid_only_the_new_points(tmp_path):
    assert _sweep(tmp_path, "--grid", "test-passes.passes=1,2", out="a") == 0
    NoisyMean.fits = 0
    assert _sweep(tmp_path, "--grid", "test-passes.passes=1,2", out="b") == 0
    timings = json.loads((tmp_path / "b" / "manifest.json").read_text())["timings"]
    assert NoisyMean.fits == 0 and all(t["fit_cached"] and t["scores_cached"] for t in timings.values())
    assert _sweep(tmp_path, "--grid", "test-passes.passes=1,2,4", out="c") == 0
    timings = json.loads((tmp_path / "c" / "manifest.json").read_text())["timings"]
    fresh = [k for k, t in timings.items() if not t["scores_cached"]]
    assert NoisyMean.fits == 0 and fresh == ["test-passes[passes=4]/seed0"]


def test_a_sweep_point_equals_a_plain_run_with_the_same_options(tmp_path):
    common = dict(id="digits", ood=["noise"], limit=40, device="cpu", bootstrap=0, progress=False,
                  cache_dir=str(tmp_path / "cache"))
    s = ood_bench.sweep(methods=["test-passes"], grid={"test-passes": {"passes": [2, 8]}}, **common)
    r = ood_bench.run(methods={"test-passes": {"passes": 8}}, cache_dir=str(tmp_path / "cache2"),
                      **{k: v for k, v in common.items() if k != "cache_dir"})
    (point, res), = [(p, r_) for p, r_ in s.pairs if p.label == "passes=8"]
    for got, want in zip(res.all_scored, r.results[0].all_scored):
        np.testing.assert_array_equal(got.batch.canonical, want.batch.canonical)


@pytest.mark.parametrize("grid, needle", [
    ("nosuch.passes=1,2", "--grid names method 'nosuch', which this sweep does not run"),
    ("test-passes.bogus=1,2", "test-passes has no option 'bogus'"),
    ("test-passes.size=4,8", "test-passes.size is a fit option"),
    ("test-passes.passes=0,2", "passes must be ≥ 1"),
    ("test-passes.passes=2,2", "lists a value twice"),
    ("test-passes.passes", "expected METHOD.OPTION=V1,V2"),
])
def test_bad_grids_fail_with_one_error_line_before_anything_runs(tmp_path, capsys, grid, needle):
    NoisyMean.fits = 0
    assert _sweep(tmp_path, "--grid", grid) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0]
    assert NoisyMean.fits == 0 and not (tmp_path / "cache").exists()


def test_sweep_refuses_equal_budgets_and_no_cache(tmp_path, capsys):
    assert _sweep(tmp_path, "--steps", "3") == 2
    assert "drop --steps/--reps" in capsys.readouterr().err
    assert _sweep(tmp_path, "--no-cache") == 2
    assert "--no-cache" in capsys.readouterr().err


def test_a_declared_fit_stage_knob_refits_the_method_at_each_point_and_an_undeclared_one_is_refused(tmp_path, capsys):
    BinnedMean.fits = 0
    argv = ["sweep", "--method", "test-bins", *BASE, "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "s")]
    assert main(argv) == 0
    assert BinnedMean.fits == 2  # one post-hoc fit per point
    f = pd.read_csv(tmp_path / "s" / "frontier.csv")
    assert sorted(f[f["ood"] == "mean"]["nfe"]) == [2, 4]
    assert main([*argv[:-1], str(tmp_path / "s2"), "--grid", "test-bins.size=4,8"]) == 2
    assert "test-bins.size is a fit option" in capsys.readouterr().err
