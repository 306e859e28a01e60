"""The fast path end to end on a CPU (issue 21): every method fits and scores with bf16 autocast,
uint8 native-size batches resized on the device, channels_last networks and compiled networks
(``aot_eager``: the graphs inductor would compile, without a C compiler), and one fitted model
per method is scored with it and with true fp32 on the plain path (the drift)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import TINY_LIMITS, TINY_METHODS, TINY_SETS
from ood_bench.cli import main
from ood_bench.engine.drift import auroc, relative_difference

FAST = ["--precision", "bf16", "--fast-path", "on", "--compile", "on", "--compile-backend", "aot_eager"]


def test_every_method_runs_the_fast_path_end_to_end_and_drifts_little(tmp_path, capsys):
    out = tmp_path / "drift"
    assert main(["run", "--drift", "--method", *TINY_METHODS, "--device", "cpu", *TINY_LIMITS, *FAST,
                 "--ood", "digits59", "noise", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                 "--quiet", "--set", *TINY_SETS]) == 0
    text = capsys.readouterr().out
    assert "fast = precision bf16, fast path on, compile on (backend aot_eager)" in text
    df = pd.read_csv(out / "drift.csv")
    assert (out / "drift.md").read_text() == text
    assert sorted(df.method.unique()) == sorted(TINY_METHODS)
    assert len(df) == 3 * len(TINY_METHODS) and set(df.images) == {16}
    ood = df[df.role == "ood"]
    assert np.isfinite(ood[["auroc_fp32", "auroc_fast", "diff_points"]].to_numpy()).all()
    # tiny models on 16 images: one swapped ID/OOD pair moves an AUROC by 0.4 points
    assert ood.diff_points.abs().max() <= 10.0, ood
    # bf16 really ran wherever a network computes the score, and stayed close to fp32
    networks = df[df.method != "pixel-mahalanobis"]
    assert (networks.groupby("method").max_rel.max() > 0).all()
    assert (df.median_rel < 0.1).all(), df


def test_a_run_through_the_fast_path_caches_apart_from_the_default_run(tmp_path):
    base = ["run", "--method", "mahalanobis", "--device", "cpu", *TINY_LIMITS, "--ood", "noise",
            "--cache-dir", str(tmp_path / "cache"), "--quiet", "--set", "mahalanobis.image_size=32"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, *FAST, "--out", str(tmp_path / "fast")]) == 0
    runs = [pd.read_csv(tmp_path / d / "metrics.csv") for d in ("plain", "fast")]
    fits = list((tmp_path / "cache" / "mahalanobis").iterdir())
    assert len(fits) == 2  # its own fitted model: bf16, fast path and compile are in the key
    assert runs[0].shape == runs[1].shape


def test_relative_difference_and_auroc():
    ref = np.array([1.0, -2.0, 0.0, 4.0])
    rel = relative_difference(np.array([1.1, -2.0, 0.001, 4.0]), ref)
    # the floor: 1 % of the median |ref| (1.5) keeps the score that is 0 from dividing by 0
    np.testing.assert_allclose(rel, [0.1, 0.0, 0.001 / 0.015, 0.0])
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
