"""Fit workers (engine/fit_pool.py): independent fits and scoring side by side, the scores of a serial run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

import ood_bench
from ood_bench.cli import main
from ood_bench.engine import fit_pool
from ood_bench.engine.fit_pool import fit_workers, schedule
from ood_bench.engine.runner import FitPlan
from ood_bench.methods.base import BatchOutput, MethodConfig, OODMethod, fit_option, score_option
from ood_bench.methods.registry import register_method
from ood_bench.utils.errors import ConfigError
from test_distributed import COST_COLUMNS, RUN

# the four kinds of shared artifact, and methods sharing them, at toy sizes
METHODS = ["dlsr", "knn", "lmd", "ddpm-ood", "diffood", "msp"]
TOY = [a for a in RUN if a != "--quiet"]
TOY[TOY.index("--ood") + 1:TOY.index("--ood") + 3] = ["noise"]  # one OOD set is enough here


def _toy_run(tmp_path: Path, name: str, *extra: str) -> str:
    p = subprocess.run([sys.executable, *TOY, "--methods", *METHODS, "--out", name, "--cache-dir", f"cache-{name}",
                        *extra], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stderr


def test_fit_workers_give_the_scores_of_a_serial_run(tmp_path):
    serial_log = _toy_run(tmp_path, "serial", "--fit-workers", "1")
    pooled_log = _toy_run(tmp_path, "pooled", "--fit-workers", "2", "--score-in-workers")
    assert "worker processes" not in serial_log
    assert "fitting and scoring 6 methods in 2 worker processes" in pooled_log
    serial, pooled = (pd.read_csv(tmp_path / d / "scores.csv") for d in ("serial", "pooled"))
    pd.testing.assert_frame_equal(pooled, serial)  # every score, bit for bit
    ms, mp = (pd.read_csv(tmp_path / d / "metrics.csv").drop(columns=COST_COLUMNS) for d in ("serial", "pooled"))
    pd.testing.assert_frame_equal(mp, ms)
    # the example pictures the workers drew are the serial run's
    pictures = sorted(f.name for f in (tmp_path / "serial" / "examples").iterdir())
    assert pictures and pictures == sorted(f.name for f in (tmp_path / "pooled" / "examples").iterdir())
    for f in pictures:
        assert (tmp_path / "pooled" / "examples" / f).read_bytes() == (tmp_path / "serial" / "examples" / f).read_bytes()
    # the workers' models count as fitted and their scores as computed in this run, not loaded;
    # artifacts as trained once, then shared
    man = json.loads((tmp_path / "pooled" / "manifest.json").read_text())
    assert not any(t["fit_cached"] or t["scores_cached"] for t in man["timings"].values())
    assert len(re.findall(r"scored noise: [0-9]+ images in [0-9.]+s by a fit worker", pooled_log)) == len(METHODS)
    statuses = lambda d: sorted((u["status"] for a in json.loads((tmp_path / d / "manifest.json").read_text())[
        "artifacts"].values() for u in a["uses"]))
    assert statuses("pooled") == statuses("serial")
    assert len(re.findall(r"fitted in [0-9.]+s by a fit worker", pooled_log)) == len(METHODS)
    # a rerun finds everything cached: no workers start
    assert man["score_workers"] == 2 and "2 score workers (img/s: sets scored side by side" in \
        (tmp_path / "pooled" / "leaderboard.md").read_text()
    assert "worker processes" not in _toy_run(tmp_path, "pooled", "--fit-workers", "2", "--score-in-workers",
                                              "--cache-dir", "cache-pooled")
    # without --score-in-workers the workers only fit; the run scores each set itself
    fit_only = _toy_run(tmp_path, "fit-only", "--fit-workers", "2")
    assert "fitting 6 models in 2 worker processes" in fit_only and "by a fit worker (" not in fit_only
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "fit-only" / "scores.csv"), serial)
    assert json.loads((tmp_path / "fit-only" / "manifest.json").read_text())["score_workers"] == 0


def _plan(name: str, *arts: str, cached: bool = False) -> FitPlan:
    return FitPlan(name, 0, f"key-{name}", frozenset(("kind", a) for a in arts), cached)


def test_two_jobs_needing_one_uncached_model_never_run_together():
    """Sweep points of one method share its model: the second waits for the first's fit."""
    first, second = (FitPlan("m", 0, "k", frozenset(), False, ("noise",)) for _ in range(2))
    assert schedule([second], built=set(), building=set(first.builds())) is None
    assert schedule([second], built=set(first.builds()), building=set()) is second
    cached = FitPlan("m", 0, "k", frozenset(), True, ("noise",))
    assert cached.builds() == frozenset() and not cached.scored and FitPlan("m", 0, "k", frozenset(), True).scored


def test_schedule_starts_new_work_first_and_never_waits_on_a_running_build():
    a, b, c, d = _plan("a", "x"), _plan("b", "x", "y"), _plan("c", "z"), _plan("d")
    plans = [a, b, c, d]
    assert schedule(plans, built=set(), building=set()) is b  # builds two new artifacts
    assert schedule(plans, built=set(), building={("kind", "x"), ("kind", "y")}) is c  # a and b wait on x
    assert schedule([a, d], built=set(), building={("kind", "x")}) is d
    assert schedule([a], built=set(), building={("kind", "x")}) is None
    assert schedule([a, c], built={("kind", "x")}, building=set()) is c  # x is built: c is new work
    assert schedule([d, a], built={("kind", "x")}, building=set()) is d  # a tie: run order


def test_fit_workers_setting(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(fit_pool, "AUTO_MAX", 8)
    monkeypatch.setattr(fit_pool.os, "sched_getaffinity", lambda _: set(range(16)), raising=False)
    assert fit_workers("auto", cpu, jobs=13) == 8 and fit_workers("auto", cpu, jobs=3) == 3
    assert fit_workers("auto", cuda, jobs=13) == 1  # one process keeps a GPU busy
    assert fit_workers(4, cpu, jobs=13) == 4 and fit_workers(4, cpu, jobs=1) == 1
    assert fit_workers("2", cpu, jobs=13) == 2  # a preset's or API's digits, as --fit-workers 2
    for bad in (0, -1, True, "two", 1.5):
        with pytest.raises(ConfigError, match="positive number or auto"):
            fit_workers(bad, cpu, jobs=3)


def test_bad_fit_workers_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--fit-workers", "0", "--method", "knn"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--fit-workers" in err[-1] and "positive number or auto" in err[-1]


# ------------------------------------------------------------------ a worker's error
@dataclass
class FailingConfig(MethodConfig):
    score: str = score_option("s", "s")
    tag: int = fit_option(0, "makes each model its own")


@register_method("test-failing-fit")
class FailingFit(OODMethod):
    """Fails its fit with a user error (a bad file found only when training starts)."""

    config_cls = FailingConfig

    def fit(self, train):
        raise ConfigError(f"test-failing-fit: the weights for tag {self.config.tag} are damaged; fetch them again")

    def score_batch(self, x, generator):
        return BatchOutput({"s": x.flatten(1).mean(1)})

    def save(self, directory):
        pass

    def load(self, directory):
        pass

    def cost(self):
        return {}


def test_an_error_in_a_worker_is_raised_as_a_serial_run_raises_it(tmp_path):
    with pytest.raises(ConfigError, match="weights for tag 0 are damaged"):
        ood_bench.run(config=None, id="digits", ood=["noise"], methods=["test-failing-fit", "pixel-mahalanobis"],
                      device="cpu", limit=10, train_limit=40, bootstrap=0, progress=False, fit_workers=2,
                      cache_dir=str(tmp_path / "cache"))


def test_fit_workers_load_a_plugin_file_and_fit_its_models(tmp_path):
    """A method from a --plugin file: each worker loads the plugin (same module name as here)
    and fits one seed's model; the scores equal a serial run's."""
    from readme_examples import readme_example

    (tmp_path / "my_detector.py").write_text(readme_example("plugin"))
    args = [sys.executable, "-m", "ood_bench", "run", "--plugin", "my_detector.py", "--method", "pixel-nn",
            "--id", "digits04", "--ood", "noise", "--limit", "30", "--bootstrap", "0", "--seeds", "0", "1"]
    for name, workers in (("serial", "1"), ("pooled", "2")):
        p = subprocess.run([*args, "--fit-workers", workers, "--out", name, "--cache-dir", f"cache-{name}"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
    assert len(re.findall(r"pixel-nn: fitted in [0-9.]+s by a fit worker", p.stderr)) == 2  # the pooled run
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "pooled" / "scores.csv"),
                                  pd.read_csv(tmp_path / "serial" / "scores.csv"))
    man = json.loads((tmp_path / "pooled" / "manifest.json").read_text())
    assert not man["timings"]["pixel-nn/seed0"]["fit_cached"] and not man["timings"]["pixel-nn/seed1"]["fit_cached"]
