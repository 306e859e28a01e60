"""Runs sharing one cache folder: one trains, the other waits and reuses; no corrupt files."""
import json
import subprocess
import sys

import pandas as pd

from ood_bench.utils.locking import file_lock

CMD = ["-m", "ood_bench", "run", "--method", "msp", "--id", "digits04", "--ood", "noise", "--limit", "40",
       "--bootstrap", "0", "--device", "cpu", "--quiet", "--cache-dir", "shared-cache",
       "--set", "msp.classifier_width=4", "msp.classifier_epochs=6", "msp.image_size=8", "msp.channels=1"]


def test_concurrent_runs_train_once_and_agree(tmp_path):
    procs = [subprocess.Popen([sys.executable, *CMD, "--out", f"run{i}"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    fitted = [json.loads((tmp_path / f"run{i}" / "manifest.json").read_text())["timings"]["msp/seed0"]["fit_cached"]
              for i in range(2)]
    assert sorted(fitted) == [False, True]  # exactly one process trained
    a, b = (pd.read_csv(tmp_path / f"run{i}" / "scores.csv") for i in range(2))
    pd.testing.assert_frame_equal(a, b)
    assert not list((tmp_path / "shared-cache").rglob("*.tmp"))


def test_file_lock_excludes_a_second_holder(tmp_path):
    code = ("import sys; from ood_bench.utils.locking import file_lock\n"
            "with file_lock(sys.argv[1], on_wait=lambda: print('waited', flush=True)): print('got', flush=True)\n")
    lock = tmp_path / "x.lock"
    with file_lock(lock):
        p = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
        first = p.stdout.readline().strip()  # the child blocks: it can only report that it waits
    assert first == "waited"
    assert p.communicate(timeout=60)[0].strip() == "got" and p.returncode == 0
