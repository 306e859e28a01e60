"""One run per folder, unfinished runs refused, merges that cannot mislead, bad inputs as one line."""
import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ood_bench.cli import main
from ood_bench.data.folder import FolderDataset
from ood_bench.engine.config import RunConfig, apply_mapping, build_dataclass, parse_set
from ood_bench.utils.errors import UnreadableImageError
import helpers  # noqa: F401  (registers the test methods)

RUN = ["run", "--method", "test-mean", "--id", "digits", "--ood", "noise", "--bootstrap", "0", "--quiet"]


def _err(capsys, argv):
    capsys.readouterr()  # only this command's output
    rc = main(argv)
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    return rc, err


def test_a_reused_out_folder_holds_only_the_new_run(tmp_path):
    assert main([*RUN, "--out", "r", "--limit", "30"]) == 0
    (tmp_path / "r" / "plots" / "hist_old_method_x.png").write_bytes(b"old")
    (tmp_path / "r" / ".metrics.csv.abc123.tmp").write_bytes(b"")  # left by a kill -9
    (tmp_path / "r" / "notes.txt").write_text("mine")
    assert main([*RUN, "--out", "r", "--limit", "20"]) == 0
    assert not (tmp_path / "r" / "plots" / "hist_old_method_x.png").exists()
    assert not list((tmp_path / "r").glob(".*"))
    assert (tmp_path / "r" / "notes.txt").read_text() == "mine"  # not the run's: kept
    assert set(pd.read_csv(tmp_path / "r" / "metrics.csv")["n_ood"]) == {20}


def test_leaderboard_refuses_unfinished_or_damaged_runs(tmp_path, capsys):
    assert main([*RUN, "--out", "r", "--limit", "30"]) == 0
    man = tmp_path / "r" / "manifest.json"
    good = man.read_text()
    man.write_text(json.dumps({**json.loads(good), "status": "running"}))  # as a kill -9 leaves it
    rc, err = _err(capsys, ["leaderboard", "r"])
    assert rc == 2 and len(err) == 1 and "unfinished run" in err[0]
    man.write_text(good[:50])
    rc, err = _err(capsys, ["leaderboard", "r"])
    assert rc == 2 and err == ["error: r/manifest.json is damaged (JSONDecodeError); re-run the command that wrote r"]
    man.write_text(good)
    (tmp_path / "r" / "metrics.csv").write_text("garbage\n\"unclosed")
    rc, err = _err(capsys, ["leaderboard", "r"])
    assert rc == 2 and len(err) == 1 and "metrics.csv is damaged" in err[0]


def test_merges_refuse_mixed_protocols_unless_allowed_and_then_label_rows(tmp_path, capsys):
    assert main([*RUN, "--out", "a", "--limit", "30"]) == 0
    assert main([*RUN, "--out", "b", "--limit", "20", "--seed", "1"]) == 0
    assert main([*RUN, "--out", "c", "--limit", "30", "--seed", "1", "--set", "test-mean.size=4"]) == 0
    capsys.readouterr()
    rc, err = _err(capsys, ["leaderboard", "a", "b"])
    assert rc == 2 and len(err) == 1 and "image count" in err[0] and "--allow-mixed" in err[0]
    rc, err = _err(capsys, ["leaderboard", "a", "c"])
    assert rc == 2 and "options of test-mean (size)" in err[0]
    rc, err = _err(capsys, ["leaderboard", "a", "a"])
    assert rc == 2 and "appear in several runs" in err[0]
    assert main(["leaderboard", "a", "c", "--format", "csv", "--allow-mixed"]) == 0
    df = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), comment="#", index_col=0)
    assert {"test-mean [a]", "test-mean [c]"} <= set(df.index)
    ra = pd.read_csv(tmp_path / "a" / "leaderboard.csv", comment="#", index_col=0)
    assert df.at["test-mean [a]", "noise"] == pytest.approx(ra.at["test-mean", "noise"])


@pytest.mark.parametrize("argv, expect", [
    (["--batch-size", "0"], "--batch-size 0: must be a positive number"),
    (["--batch-size", "-1"], "--batch-size -1: must be a positive number"),
    (["--bootstrap", "-5"], "--bootstrap -5: must be 0 or more"),
    (["--out", "afile"], "is an existing file, not a folder"),
    (["--out", "afile/sub"], "lies under the file"),
    (["--cache-dir", "afile"], "--cache-dir afile is an existing file"),
])
def test_bad_run_inputs_are_one_line_and_leave_nothing(tmp_path, capsys, argv, expect):
    (tmp_path / "afile").write_text("x")
    full = [*RUN, "--limit", "10", *argv]
    if "--out" not in argv:
        full += ["--out", "never"]
    rc, err = _err(capsys, full)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not (tmp_path / "never").exists() and not (tmp_path / "results").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_out_is_one_line(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    rc, err = _err(capsys, [*RUN, "--limit", "10", "--out", str(ro / "r")])
    assert rc == 2 and "cannot be written" in err[0]


def test_leaderboard_to_an_unwritable_path_is_one_line(tmp_path, capsys):
    assert main([*RUN, "--out", "r", "--limit", "10"]) == 0
    (tmp_path / "afile").write_text("x")
    rc, err = _err(capsys, ["leaderboard", "r", "--out", "afile/board.md"])
    assert rc == 2 and len(err) == 1 and "cannot be written" in err[0]


def test_set_parses_exponents_as_numbers():
    from ood_bench.methods.dlsr.config import DLSRConfig

    opts = parse_set(["dlsr.lr=1e-4", "dlsr.weight_decay=5E-2"])["dlsr"]
    cfg = build_dataclass(DLSRConfig, opts, "dlsr")
    assert cfg.lr == 1e-4 and cfg.weight_decay == 0.05
    assert apply_mapping(RunConfig(), {"bootstrap": 0}, "x").bootstrap == 0


def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    ramp16 = np.linspace(0, 65535, 64, dtype=np.float64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(ramp16).save(tmp_path / "a16.png")
    ramp_f = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(ramp_f, mode="F").save(tmp_path / "b_float.tif")
    ds = FolderDataset(tmp_path)
    a = np.asarray(ds.load_image(0))
    b = np.asarray(ds.load_image(1))
    assert ds.load_image(0).mode == "L" and a.min() == 0 and a.max() == 255
    np.testing.assert_allclose(a, np.rint(ramp16 / 257), atol=0)
    np.testing.assert_allclose(b, np.rint(ramp_f.astype(np.float64) * 255), atol=1)
    assert (a > 250).mean() < 0.05  # a clipped conversion turns almost everything white


def test_a_truncated_jpeg_is_caught_up_front_and_skippable(tmp_path):
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.jpg", quality=95)
    data = (tmp_path / "1.jpg").read_bytes()
    (tmp_path / "1.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match="1.jpg"):
        FolderDataset(tmp_path)
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        ds = FolderDataset(tmp_path, skip_unreadable=True)
    assert ds.item_ids() == ["0.jpg", "2.jpg"]


def test_non_finite_scores_and_diverged_training_are_one_line_and_cache_nothing(tmp_path, capsys):
    rc, err = _err(capsys, [*RUN, "--limit", "10", "--out", "r", "--cache-dir", "c", "--set", "test-mean.shift=.nan"])
    assert rc == 2 and err[-1].startswith("error: test-mean produced 10 non-finite dist scores on digits")
    assert not list((tmp_path / "c").rglob("*.npz"))
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "failed"
    rc, err = _err(capsys, ["run", "--method", "msp", "--id", "digits04", "--ood", "noise", "--limit", "10",
                            "--train-limit", "40", "--bootstrap", "0", "--quiet", "--cache-dir", "c", "--out", "m",
                            "--set", "msp.classifier_width=4", "msp.classifier_epochs=2", "msp.image_size=8",
                            "msp.channels=1", "msp.classifier_size=8", "msp.classifier_lr=1e30",
                            "msp.classifier_backbone="])
    assert rc == 2 and "training loss became" in err[-1] and "nothing was cached" in err[-1] and err[-1].startswith("error: ")
    assert not list((tmp_path / "c" / "artifacts").rglob("artifact.json")) and not (tmp_path / "c" / "msp").exists()
