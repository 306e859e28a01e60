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
         "try:\n{body}\n"
         "finally:\n"
         "    print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))\n")
# a cached rerun end to end: DLSR (timm's Lite0, diffusers' LFDN, schedulers and EMA) and LMD (the ID
# DDPM's UNet); the other methods' cached path is what every method's construction below runs
METHODS = ["dlsr", "lmd"]
TOY = [a for a in RUN if a not in ("-m", "ood_bench")]


def heavy_imports(body: str, cwd) -> list[str]:
    code = PROBE.format(body="\n".join("    " + line for line in body.splitlines()), heavy=HEAVY)
    p = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                       text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_importing_the_package_imports_no_heavy_library(tmp_path):
    assert heavy_imports("import ood_bench, ood_bench.api, ood_bench.cli, ood_bench.methods, ood_bench.data", tmp_path) == []


def test_every_method_is_planned_as_a_cached_rerun_plans_it_without_a_heavy_library(tmp_path):
    # what Runner.cached_result asks of a method: its construction, artifact requests, cost and budget
    body = ("from ood_bench import create_method\n"
            "from ood_bench.methods import METHODS\n"
            "for name, cls in METHODS.items():\n"
            "    if cls.__module__.startswith('ood_bench.'):\n"
            "        m = create_method(name, preset='embedded', device='cpu')\n"
            "        m.requires(), m.cost(), m.budget()")
    assert heavy_imports(body, tmp_path) == []


def test_a_cached_rerun_imports_no_heavy_library(tmp_path):
    args = [*TOY, "--methods", *METHODS, "--fit-workers", "1"]
    run = f"from ood_bench.cli import main; assert main({args!r}) == 0"
    first = heavy_imports(run, tmp_path)
    assert {"diffusers", "timm", "torchvision"} <= set(first)  # the probe sees them when a run needs them
    assert heavy_imports(run, tmp_path) == []  # every result cached: read, not computed
