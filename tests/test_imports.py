"""The heavy libraries are imported where a network is built, trained or loaded — not by the
package, not by a run whose results are all cached (see the ``ood_bench.methods`` docstring).

diffusers, timm and torchvision each pull in ``torch._dynamo``: ~5 s of a cached rerun's ~17 s on
a 2-core CPU. These tests run Python in a subprocess (a fresh ``sys.modules``) and list which of
them it imported.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from test_distributed import RUN

HEAVY = ("diffusers", "timm", "torchvision", "lpips", "torch._dynamo")
# Prints the heavy modules imported by the end of the process (also when it fails).
PROBE = ("import json, sys\n"
         "try:\n    {body}\n"
         "finally:\n"
         "    print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))\n")
# the methods of every import site: DLSR's LFDN and schedulers, the ID DDPM and LMD's sampler, DiffOOD's
# conditional UNet and DDIM, the classifier (timm backbone) of MSP, the examples' picture grids
METHODS = ["dlsr", "lmd", "diffood", "msp"]
TOY = [a for a in RUN if a not in ("-m", "ood_bench")]


def heavy_imports(body: str, cwd) -> list[str]:
    p = subprocess.run([sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY)], cwd=cwd, capture_output=True,
                       text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_importing_the_package_imports_no_heavy_library(tmp_path):
    assert heavy_imports("import ood_bench, ood_bench.api, ood_bench.cli, ood_bench.methods, ood_bench.data", tmp_path) == []


def test_a_cached_rerun_imports_no_heavy_library(tmp_path):
    args = [*TOY, "--methods", *METHODS, "--fit-workers", "1"]
    run = f"from ood_bench.cli import main; assert main({args!r}) == 0"
    first = heavy_imports(run, tmp_path)
    assert {"diffusers", "timm", "torchvision"} <= set(first)  # the probe sees them when a run needs them
    assert heavy_imports(run, tmp_path) == []  # every result cached: read, not computed
