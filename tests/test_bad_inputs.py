"""Bad-input catalogue: each is one ``error:`` line naming the problem and the fix, exit 2, before
any work (or a documented behaviour, tested as such).

See docs/cli.md ("Bad inputs") for the list with the messages.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from ood_bench.cli import main
from helpers import write_images

RUN = ["run", "--method", "test-mean", "--bootstrap", "0", "--quiet", "--cache-dir", "cache", "--limit", "20"]


def _err(capsys, argv):
    capsys.readouterr()
    rc = main(argv)
    return rc, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def _refused(capsys, argv, *expected):
    rc, err = _err(capsys, argv)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
    for e in expected:
        assert e in err[0], err[0]
    return err[0]


@pytest.fixture
def folders(tmp_path):
    """``idf/train``, ``idf/test``; ``trainonly/train``; ``a/imgs``, ``b/imgs``."""
    write_images(tmp_path / "idf" / "train", 12, seed=1)
    write_images(tmp_path / "idf" / "test", 8, seed=2)
    write_images(tmp_path / "trainonly" / "train", 20, seed=3)
    write_images(tmp_path / "a" / "imgs", 6, seed=4)
    write_images(tmp_path / "b" / "imgs", 6, seed=5)
    return tmp_path


# ------------------------------------------------------------------------------ datasets
def test_an_id_folder_without_test_is_refused_unless_split_explicitly(folders, capsys):
    _refused(capsys, [*RUN, "--id", "trainonly", "--ood", "noise", "--out", "r"],
             "trainonly has train/ but no test/", "training images included", "--id-test-fraction")
    assert not (folders / "r").exists()
    assert main([*RUN, "--id", "trainonly", "--ood", "noise", "--out", "r", "--id-test-fraction", "0.25"]) == 0
    ds = json.loads((folders / "r" / "manifest.json").read_text())["datasets"]
    assert (ds["id_train"]["n"], ds["id_test"]["n"]) == (15, 5)
    ids = set(pd.read_csv(folders / "r" / "scores.csv").query("role == 'id'")["item_id"])
    assert len(ids) == 5
    _refused(capsys, [*RUN, "--id", "trainonly", "--ood", "noise", "--id-test-fraction", "1.5"],
             "--id-test-fraction 1.5", "between 0 and 1")


@pytest.mark.parametrize("ood", ["digits-0-4", "DIGITS04"])
def test_the_id_set_under_an_alias_is_refused_as_ood(capsys, ood):
    _refused(capsys, [*RUN, "--id", "digits04", "--ood", "noise", ood],
             f"OOD set {ood} is the ID set digits04's test split", "drop it")


@pytest.mark.parametrize("ood", ["idf/test", "./idf/test/", "idf/train", "{root}/idf/test"])
def test_the_id_folders_own_splits_are_refused_as_ood(folders, capsys, ood):
    ood = ood.format(root=folders)
    _refused(capsys, [*RUN, "--id", "idf", "--ood", ood], f"OOD set {ood} is the ID set idf's")


def test_one_set_given_twice_is_refused(folders, capsys):
    _refused(capsys, [*RUN, "--ood", "noise", "noise"], "OOD set noise is given twice")
    _refused(capsys, [*RUN, "--ood", "a/imgs", "./a/imgs/"], "OOD sets a/imgs and ./a/imgs/ are the same set", "twice")


def test_near_and_far_must_not_share_a_set(capsys):
    _refused(capsys, [*RUN, "--near", "noise", "--far", "noise"], "OOD set noise is given twice", "near and far")
    _refused(capsys, [*RUN, "--id", "digits04", "--near", "digits59", "--far", "digits-5-9", "noise"],
             "OOD sets digits59 and digits-5-9 are the same set", "in both near and far")


def test_sets_sharing_a_display_name_keep_apart_in_every_table(folders):
    assert main([*RUN, "--ood", "a/imgs", "b/imgs", "--out", "r"]) == 0
    run = folders / "r"
    board = pd.read_csv(run / "leaderboard.csv", comment="#")
    assert {"a/imgs", "b/imgs"} <= set(board.columns)
    tex = (run / "leaderboard.tex").read_text()
    assert "a/imgs" in tex and "b/imgs" in tex
    assert set(pd.read_csv(run / "metrics.csv")["ood"]) >= {"a/imgs", "b/imgs"}
    assert {"a/imgs", "b/imgs"} <= set(pd.read_csv(run / "per_set.csv")["ood"])
    md = (run / "leaderboard.md").read_text()
    assert "a/imgs" in md and "b/imgs" in md


# ------------------------------------------------------------------------------ seeds, YAML
def test_duplicate_seeds_are_refused(tmp_path, capsys):
    _refused(capsys, [*RUN, "--ood", "noise", "--seeds", "0", "0"], "seed(s) 0 given twice", "give each seed once")
    (tmp_path / "p.yaml").write_text("id: digits\nood: [noise]\nmethods: [test-mean]\nseeds: [1, 2, 1]\n")
    _refused(capsys, ["run", "--config", "p.yaml", "--quiet"], "seed(s) 1 given twice")


def test_seed_with_seeds_is_refused(capsys):
    _refused(capsys, [*RUN, "--ood", "noise", "--seed", "1", "--seeds", "2", "3"],
             "--seed 1 and --seeds 2 3 both given")


@pytest.mark.parametrize("text, key", [
    ("id: digits\nood: [noise]\nid: digits04\n", "'id'"),
    ("id: digits\nood: [noise]\nmethods:\n  test-mean: {size: 8, size: 4}\n", "'size'"),
])
def test_a_duplicate_yaml_key_is_refused(tmp_path, capsys, text, key):
    (tmp_path / "p.yaml").write_text(text)
    _refused(capsys, ["run", "--config", "p.yaml", "--method", "test-mean", "--quiet"],
             "p.yaml: not valid YAML", f"key {key} is given twice", "keep one")


def test_a_config_that_is_not_utf8_is_one_line(tmp_path, capsys):
    (tmp_path / "p.yaml").write_bytes("id: digits\nood: [noise]  # caf\u00e9\n".encode("latin-1"))
    _refused(capsys, ["run", "--config", "p.yaml", "--method", "test-mean", "--quiet"], "p.yaml: not UTF-8",
             "save the config as UTF-8")


# ------------------------------------------------------------------------------ options
@pytest.mark.parametrize("option", ["msp.classifier_epochs=0", "msp.classifier_epochs=-1", "msp.classifier_batch_size=0",
                                    "dlsr.epochs=0", "lmd.epochs=0", "diffood.classifier_epochs=0"])
def test_epochs_and_batch_sizes_are_validated_with_the_other_options(tmp_path, capsys, option):
    method, rest = option.split(".", 1)
    name, value = rest.split("=")
    _refused(capsys, ["run", "--method", method, "--id", "digits04", "--ood", "noise", "--quiet", "--out", "r",
                      "--set", option], f"{method}.{name}={value}: must be at least 1")
    assert not (tmp_path / "r").exists()  # refused before any work


@pytest.mark.parametrize("flags, expected", [
    (["--floor", "nan"], "--floor nan"), (["--floor", "inf"], "--floor inf"), (["--k", "nan"], "--k nan"),
    (["--k", "inf"], "--k inf"), (["--k", "0"], "--k 0"), (["--floor", "-1"], "--floor -1"),
])
def test_non_finite_compare_thresholds_are_refused(tmp_path, capsys, flags, expected):
    _refused(capsys, ["compare", "a", "--reference", "b", *flags], expected)


# ------------------------------------------------------------------------------ plugins, logs
@pytest.mark.parametrize("content, expected", [
    ("import sys\nsys.exit(3)\n", "it called sys.exit(3) on import"),
    ("raise SystemExit('bye')\n", "it called sys.exit('bye') on import"),
    ("from ood_bench.utils.errors import ConfigError\nraise ConfigError('needs FOO set')\n", "needs FOO set"),
    ("raise ValueError('bad\\nthing')\n", "ValueError: bad thing"),
])
def test_plugin_import_failures_name_the_plugin(tmp_path, capsys, content, expected):
    (tmp_path / "myplug.py").write_text(content)
    _refused(capsys, [*RUN, "--ood", "noise", "--plugin", "myplug.py"], "plugin myplug.py failed to load", expected)


def test_a_log_file_that_is_a_folder_or_unwritable_is_one_line(tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    _refused(capsys, ["list", "--log-file", "logs"], "--log-file logs is a folder", "give a file path")
    (tmp_path / "afile").write_text("x")
    _refused(capsys, ["list", "--log-file", "afile/run.log"], "--log-file afile/run.log cannot be written")
