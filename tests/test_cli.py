"""End-to-end CLI runs on tiny settings, and the one-line errors."""
import json
import warnings

import pandas as pd
import pytest
from PIL import Image

from ood_bench.cli import main
from helpers import write_images

TINY_DLSR = ["--set", "dlsr.image_size=32", "dlsr.width=32", "dlsr.blocks=1", "dlsr.epochs=2"]


def test_dlsr_end_to_end_with_registry_and_folder_ood(tmp_path, capsys):
    write_images(tmp_path / "myood" / "a", 6, size=20)
    write_images(tmp_path / "myood" / "b" / "deeper", 4, size=20, ext="jpg")
    out = tmp_path / "run"
    rc = main(["run", "--method", "dlsr", "--id", "digits", "--ood", "noise", str(tmp_path / "myood"),
               "--out", str(out), "--device", "cpu", "--limit", "40", "--train-limit", "40", "--quiet", *TINY_DLSR])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "dlsr" in printed and "noise" in printed and "myood" in printed and "leaderboard.tex" in printed
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and man["methods"]["dlsr"]["config"]["epochs"] == 2
    assert man["versions"]["torch"] and man["device"]["type"] == "cpu" and "fpr95" in man["conventions"]
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 40 + 40 + 10
    assert {"mse", "mfsim", "lr", "score", "item_id", "label"} <= set(scores.columns)
    folder_ids = scores[scores["dataset"] == "myood"]["item_id"].tolist()
    assert "b/deeper/img_000.jpg" in folder_ids
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["ood"]) >= {"noise", "myood", "mean"}
    assert (metrics["img_per_s"] > 0).all() and (metrics["nfe"] == 9).all()
    for f in ("leaderboard.csv", "leaderboard.tex", "leaderboard.md", "plots/hist_dlsr_noise.png",
              "plots/hist_dlsr_myood.png"):
        assert (out / f).stat().st_size > 0, f
    assert Image.open(out / "plots" / "hist_dlsr_noise.png").size[0] > 300
    tex = (out / "leaderboard.tex").read_text()
    assert "\\toprule" in tex and "DLSR" in tex and "\\textbf{" not in tex  # one canonical row: nothing to rank

    # the same command again: everything from the cache, identical scores
    rc = main(["run", "--method", "dlsr", "--id", "digits", "--ood", "noise", str(tmp_path / "myood"),
               "--out", str(tmp_path / "run2"), "--device", "cpu", "--limit", "40", "--train-limit", "40", "--quiet", *TINY_DLSR])
    assert rc == 0
    again = pd.read_csv(tmp_path / "run2" / "scores.csv")
    pd.testing.assert_series_equal(scores["score"], again["score"])
    man2 = json.loads((tmp_path / "run2" / "manifest.json").read_text())
    assert man2["timings"]["dlsr/seed0"]["fit_cached"] and man2["timings"]["dlsr/seed0"]["scores_cached"]


def _err(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err[-1] if err else ""


def test_missing_dataset_is_one_line_and_exit_2(tmp_path, capsys):
    rc, line = _err(capsys, ["run", "--method", "test-mean", "--id", "cifar10", "--ood", "svhn",
                             "--data-root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 2 and line.startswith("error: cifar10 not found under") and "--download" in line
    assert not (tmp_path / "o").exists()  # nothing started


def test_unreadable_image_in_ood_folder(tmp_path, capsys):
    write_images(tmp_path / "f", 2)
    (tmp_path / "f" / "x.jpg").write_bytes(b"garbage")
    rc, line = _err(capsys, ["run", "--method", "test-mean", "--id", "digits", "--ood", str(tmp_path / "f"),
                             "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and "x.jpg" in line and "--skip-unreadable" in line
    rc = main(["run", "--method", "test-mean", "--id", "digits", "--ood", str(tmp_path / "f"),
               "--out", str(tmp_path / "o"), "--quiet", "--skip-unreadable", "--limit", "20"])
    assert rc == 0


@pytest.mark.parametrize("argv,needle", [
    (["--method", "test-labelled", "--id", "textures", "--ood", "noise"], "needs class labels"),
    (["--method", "dlsr", "--ood", "noise", "--set", "dlsr.nope=1"], "unknown option(s) dlsr.nope"),
    (["--method", "dlsr", "--ood", "noise", "--set", "dlsr.backbone=tf_efficientnet_b4"], "efficientnet-b4-6ed6700e.pth not found"),
    (["--method", "dlsr", "--ood", "noise", "--device", "cuda:7"], "--device cuda:7"),
    (["--method", "nope", "--ood", "noise"], "unknown method 'nope'"),
])
def test_bad_input_errors(tmp_path, capsys, monkeypatch, argv, needle):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, line = _err(capsys, ["run", *argv, "--out", str(tmp_path / "o"), "--quiet", "--limit", "10"])
    assert rc == 2 and line.startswith("error: ") and needle in line


def test_list_shows_methods_datasets_and_options(capsys):
    assert main(["list", "--options"]) == 0
    out = capsys.readouterr().out
    assert "dlsr" in out and "digits59" in out and "cifar10" in out
    # an option line: name=default, its stage, and for a cost knob its sweep ladder
    assert "dlsr.timesteps=100  (fit) diffusion steps T" in out
    assert "dlsr.t=3  (score; cost knob, sweep ladder [1, 3, 5, 10]) distortion timestep" in out


def test_leaderboard_reexport_merges_runs(tmp_path, capsys):
    for name, ood in (("r1", "noise"), ("r2", "textures")):
        assert main(["run", "--method", "test-mean", "--id", "digits", "--ood", ood, "--out",
                     str(tmp_path / name), "--quiet", "--limit", "30"]) == 0
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # disjoint runs: no duplicate rows
        assert main(["leaderboard", str(tmp_path / "r1"), str(tmp_path / "r2"), "--format", "csv"]) == 0
    df = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), comment="#", index_col=0)
    assert {"noise", "textures", "avg"} <= set(df.columns)
    r1 = pd.read_csv(tmp_path / "r1" / "leaderboard.csv", comment="#", index_col=0)
    assert df.at["test-mean", "noise"] == pytest.approx(r1.at["test-mean", "noise"])
    assert main(["leaderboard", str(tmp_path / "nothing")]) == 2


def test_suite_outputs_intervals_comparisons_plots_and_html(tmp_path):
    out = tmp_path / "suite"
    assert main(["run", "--method", "test-mean", "test-labelled", "--id", "digits", "--ood", "noise", "digits59",
                 "--out", str(out), "--quiet", "--limit", "50", "--seeds", "0", "1", "--bootstrap", "200"]) == 0
    per_set = pd.read_csv(out / "per_set.csv")
    row = per_set[(per_set["entry"] == "test-mean") & (per_set["ood"] == "noise")].iloc[0]
    assert row["auroc_low"] <= row["auroc"] <= row["auroc_high"] and row["seeds"] == 2
    comps = pd.read_csv(out / "comparisons.csv")
    assert set(comps["ood"]) == {"noise", "digits59"}
    assert (comps["p_auroc"] == 0.5).all()  # the two test methods score identically
    lb = (out / "leaderboard.md").read_text()
    assert " ± " in lb  # two seeds: mean ± std
    for f in ("roc_noise.png", "roc_digits59.png", "auroc_vs_throughput.png", "hist_test-mean_noise_seed1.png"):
        assert (out / "plots" / f).stat().st_size > 0, f
    html = (out / "report.html").read_text()
    pngs = list((out / "plots").glob("*.png")) + list((out / "examples").glob("*.png"))
    assert html.count("<img ") == len(pngs) and "data:image/png;base64," in html
    for heading in ("Leaderboard", "Per OOD set", "Paired comparisons", "Metric conventions"):
        assert heading in html
    assert "test-mean[neg]" in html and "src=\"http" not in html  # self-contained


def test_budget_flags_are_applied_and_recorded(tmp_path):
    out = tmp_path / "b"
    assert main(["run", "--method", "dlsr", "--id", "digits", "--ood", "noise", "--out", str(out), "--quiet",
                 "--limit", "20", "--train-limit", "40", "--steps", "2", "--bootstrap", "0", *TINY_DLSR]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["methods"]["dlsr"]["config"]["t"] == 1 and man["timings"]["dlsr/seed0"]["budget"]["steps"] == 2
    metrics = pd.read_csv(out / "metrics.csv")
    assert (metrics["steps"] == 2).all() and (metrics["nfe"] == 1 + 2 * 2).all()
    assert main(["run", "--method", "diffood", "--id", "digits", "--ood", "noise", "--steps", "7",
                 "--out", str(tmp_path / "c"), "--quiet"]) == 2  # 7 does not divide t = 240


def test_merged_leaderboard_is_the_union_of_its_parts(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", "--method", "test-mean", "--id", "digits", "--ood", "noise", "--out", str(a),
                 "--quiet", "--limit", "30", "--bootstrap", "0"]) == 0
    assert main(["run", "--method", "test-labelled", "--id", "digits", "--ood", "textures", "--out", str(b),
                 "--quiet", "--limit", "30", "--bootstrap", "0"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", str(a), str(b), "--format", "csv"]) == 0
    merged = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), comment="#", index_col=0)
    pa = pd.read_csv(a / "leaderboard.csv", comment="#", index_col=0)
    pb = pd.read_csv(b / "leaderboard.csv", comment="#", index_col=0)
    assert set(merged.index) == set(pa.index) | set(pb.index)
    assert merged.at["test-mean", "noise"] == pytest.approx(pa.at["test-mean", "noise"])
    assert merged.at["test-labelled", "textures"] == pytest.approx(pb.at["test-labelled", "textures"])
    assert pd.isna(merged.at["test-mean", "textures"])  # not run: no value invented


def test_speed_command_times_untrained_methods_and_extrapolates(capsys):
    assert main(["speed", "--method", "dlsr", "lmd", "diffood", "--images", "2", "--timing-steps", "2",
                 "--min-time", "0.001", "--set", "dlsr.image_size=32", "dlsr.width=32", "dlsr.blocks=1"]) == 0
    out = capsys.readouterr().out
    assert "embedded settings" in out and "model only" in out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.split() and ln.split()[0] in ("dlsr", "lmd", "diffood")}
    assert set(lines) == {"dlsr", "lmd", "diffood"}
    lmd = lines["lmd"].split()
    assert lmd[1] == "85" and lmd[2] == "13"  # 4 reps x 20 steps + 5 Lite0 passes; timed at 2 steps
    assert "(extrapolated)" in lines["lmd"] and "unet 80 + features 5" in lines["lmd"]
    dlsr = lines["dlsr"].split()
    assert dlsr[1] == "9" and dlsr[2] == "5"  # steps = t + 1 = 2 → backbone + 2 models x 2 LFDN passes
    assert "backbone 1 + lfdn 8" in lines["dlsr"]


def test_speed_timing_steps_never_lengthen_a_chain(capsys):
    # DLSR's chain has 4 steps: --timing-steps 10 times it as it is (9 evaluations, not 21)
    assert main(["speed", "--method", "dlsr", "--images", "2", "--timing-steps", "10", "--min-time", "0.001",
                 "--set", "dlsr.image_size=32", "dlsr.width=32", "dlsr.blocks=1"]) == 0
    row = next(ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith("dlsr"))
    assert row[1] == row[2] == "9" and "(extrapolated)" not in " ".join(row)


def test_bootstrap_zero_with_several_methods(tmp_path):
    out = tmp_path / "nb"
    assert main(["run", "--method", "test-mean", "test-labelled", "--id", "digits", "--ood", "noise",
                 "--out", str(out), "--quiet", "--limit", "20", "--bootstrap", "0"]) == 0
    comps = pd.read_csv(out / "comparisons.csv")
    assert len(comps) == 1 and comps["p_auroc"].isna().all()
    assert pd.read_csv(out / "per_set.csv")["auroc_low"].isna().all()


@pytest.mark.parametrize("method,steps", [("diffood", "7"), ("dlsr", "0")])
def test_speed_with_an_impossible_timing_budget_is_a_one_line_error(capsys, method, steps):
    rc, line = _err(capsys, ["speed", "--method", method, "--images", "2", "--timing-steps", steps])
    assert rc == 2 and line.startswith("error: ")
