"""``.ci/gpu-check --dry-run``: the GPU check's stages, limits and logs, on a CPU at tiny sizes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_runs_every_stage_and_logs_each(tmp_path):
    logs = tmp_path / "logs"
    p = subprocess.run(["bash", str(ROOT / ".ci" / "gpu-check"), "--dry-run", str(logs)], capture_output=True,
                       text=True, timeout=1500, env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"})
    summary = (logs / "summary.txt").read_text()
    assert p.returncode == 0, summary + p.stdout[-2000:] + p.stderr[-2000:]
    stages = ["1-tests", "2-dlsr-model", "3-dlsr-e2e", "4-unet-eval", "5-unet-train"]
    assert [ln.split()[0] for ln in summary.splitlines()[:5]] == stages
    assert summary.splitlines()[-1].startswith("passed: 5 stages")
    text = {s: (logs / f"{s}.log").read_text() for s in stages}
    assert "5 skipped" in text["1-tests"] and "passed" not in text["1-tests"].splitlines()[-2]  # no CUDA here
    for s in ("2-dlsr-model", "3-dlsr-e2e"):
        assert "precision bf16, fast path on" in text[s] and "\ndlsr " in text[s]
    assert "end to end" in text["3-dlsr-e2e"]
    assert "\nlmd " in text["4-unet-eval"] and "\ndiffood " in text["4-unet-eval"]
    assert "UNet training speed" in text["5-unet-train"]
    for s in stages:
        assert text[s].rstrip().endswith("]") and "[rc 0," in text[s]
