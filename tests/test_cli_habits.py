"""CLI habits: --version, logging flags, --json, pipes, list --options, OOD grouping, --reps, mps."""
import json
import logging
import subprocess
import sys

import pytest

import helpers  # noqa: F401  (registers test-mean)
from ood_bench.cli import main
from ood_bench.utils import logs
from ood_bench.utils.device import resolve_device
from ood_bench.utils.errors import ConfigError

RUN = ["run", "--method", "test-mean", "--id", "digits04", "--limit", "30", "--bootstrap", "0"]


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    logs.configure(logging.INFO)


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("ood-bench 0.")


def test_json_summary_ungrouped_ood_and_leaderboard_json(tmp_path, capsys):
    assert main([*RUN, "--ood", "digits59", "noise", "--out", "a", "--json", "-q"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)  # stdout is only the JSON
    assert summary["status"] == "complete" and summary["run_dir"] == "a" and "report" in summary["outputs"]
    cols = {c["column"]: c for c in summary["leaderboard"]["columns"]}
    assert cols["noise"]["group"] == "ood" and not any(c.endswith(" avg") and c != "FPR95 avg" for c in cols)
    row = summary["leaderboard"]["rows"][0]
    assert row["entry"] == "test-mean" and row["canonical"] and 0 <= row["values"]["noise"]["mean"] <= 100
    assert "fitting" not in err  # -q: warnings only
    assert "white-space:nowrap" in (tmp_path / "a" / "report.html").read_text()  # "89.13 ± 0.32" stays on one line

    assert main([*RUN, "--near", "digits59", "--far", "noise", "textures", "--out", "b", "--json", "-q"]) == 0
    cols = {c["column"]: c for c in json.loads(capsys.readouterr().out)["leaderboard"]["columns"]}
    assert cols["digits59"]["group"] == "near" and "far avg" in cols and "near avg" in cols
    assert main([*RUN, "--ood", "noise", "--near", "digits59", "--out", "c", "-q"]) == 2  # one way or the other

    assert main(["leaderboard", "b", "--format", "json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["rows"][0]["name"] == "test-mean" and board["provenance"]


def test_log_levels_and_log_file(tmp_path, capsys):
    assert main([*RUN, "--ood", "noise", "--out", "a", "--log-file", "logs/run.log"]) == 0
    err = capsys.readouterr().err
    assert "test-mean: fitted" in err or "test-mean: loaded" in err  # INFO by default
    assert "scored noise" in (tmp_path / "logs" / "run.log").read_text()
    assert main([*RUN, "--ood", "noise", "--out", "b", "-q", "--no-cache"]) == 0
    assert "scored" not in capsys.readouterr().err


def test_dlsr_says_it_ignores_reps(capsys):
    from ood_bench.methods.dlsr.config import DLSRConfig
    from ood_bench.methods.dlsr.method import DLSR

    logs.configure(logging.INFO)
    cfg = DLSR.with_budget(DLSRConfig(), None, 4)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: dlsr ignores --reps 4" in err and cfg.t == DLSRConfig().t


def test_mps_is_a_known_device():
    import torch

    if torch.backends.mps.is_available():
        assert resolve_device("mps").type == "mps"
    else:
        with pytest.raises(ConfigError, match="no Apple MPS device"):
            resolve_device("mps")
    with pytest.raises(ConfigError, match="cuda:N or mps"):
        resolve_device("tpu")


def test_list_options_shows_preset_values_in_yaml(capsys):
    assert main(["list", "--options", "--config", "embedded"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("presets (--config NAME):") and "  embedded      ID digits04 vs near: digits59" in out
    assert "diffood.channel_mult=[1, 2]  (fit) [preset; paper: [1, 2, 2, 2]]" in out  # YAML, not (1, 2)
    assert "(1, 2" not in out


def test_closed_pipes_end_quietly_and_do_not_fail_a_run(tmp_path):
    py = sys.executable
    listing = subprocess.run(f"set -o pipefail; {py} -m ood_bench list | head -2", shell=True, executable="/bin/bash",
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0 and "Traceback" not in listing.stderr and len(listing.stdout.splitlines()) == 2
    run = subprocess.run(f"{py} -m ood_bench run --method pixel-mahalanobis --id digits04 --ood noise --limit 20 "
                         f"--train-limit 60 --bootstrap 0 --device cpu --out r --cache-dir c 2>&1 | head -1",
                         shell=True, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "Traceback" not in run.stdout + run.stderr
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "complete"
