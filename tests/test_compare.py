"""`ood-bench compare`: CI re-runs the small reference preset and checks it against the committed
reference (results/reference/ci); shifted references are reported as drift (exit 1)."""
import shutil
from pathlib import Path

import pandas as pd

from ood_bench.cli import main

REF = Path(__file__).resolve().parents[1] / "results" / "reference" / "ci"


def test_the_ci_preset_reproduces_the_committed_reference(tmp_path, capsys):
    assert main(["run", "--config", str(REF / "config.yaml"), "--out", "run", "--quiet"]) == 0
    capsys.readouterr()
    rc = main(["compare", "run", "--reference", str(REF)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "within their tolerance" in out and "DRIFT" not in out

    shifted = tmp_path / "shifted"
    shutil.copytree(REF, shifted)
    m = pd.read_csv(shifted / "metrics.csv")
    hit = (m["entry"] == "pixel-mahalanobis") & (m["ood"] == "digits59")
    m.loc[hit, "auroc"] -= 0.02  # two AUROC points: far outside a zero seed spread
    m.to_csv(shifted / "metrics.csv", index=False)
    rc = main(["compare", "run", "--reference", str(shifted)])
    out = capsys.readouterr().out
    assert rc == 1 and "1 of" in out and "DRIFT" in out


def test_compare_refuses_another_protocol(tmp_path, capsys):
    import helpers  # noqa: F401  (test methods)

    assert main(["run", "--method", "test-mean", "--id", "digits", "--ood", "noise", "--limit", "20",
                 "--bootstrap", "0", "--quiet", "--out", "a"]) == 0
    assert main(["run", "--method", "test-mean", "--id", "digits", "--ood", "noise", "--limit", "30",
                 "--bootstrap", "0", "--quiet", "--out", "b"]) == 0
    capsys.readouterr()
    assert main(["compare", "a", "--reference", "b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not follow the reference's protocol" in err[0]
