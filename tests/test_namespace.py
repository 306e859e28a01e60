"""The installed namespace: no collisions with users' folders, every package shipped, layers respected."""
import ast
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"benchmark": "ood_bench", "methods": "ood_bench.methods", "data": "ood_bench.data",
           "configs": "ood_bench.configs"}


def _python(code: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def _collider(tmp_path: Path) -> Path:
    """A user's project: its own data/, methods/ and benchmark/ packages that would shadow ours."""
    proj = tmp_path / "myproject"
    for name in ("data", "methods", "benchmark"):
        (proj / name).mkdir(parents=True)
        (proj / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} package was imported')\n")
    return proj


IMPORT_CHECK = (
    "import ood_bench.engine.runner, ood_bench.api, ood_bench.cli\n"
    "from ood_bench.methods.registry import METHODS\n"
    "import ood_bench.methods, ood_bench.data\n"
    "from ood_bench.data import DATASETS\n"
    "from ood_bench.engine.config import find_preset\n"
    "assert {'dlsr', 'lmd', 'diffood', 'knn'} <= set(METHODS.names()), METHODS.names()\n"
    "assert 'digits04' in DATASETS and find_preset('cifar10').is_file()\n"
    "print('ok', ood_bench.__file__)\n"
)


def test_imports_work_from_a_folder_holding_data_methods_benchmark(tmp_path):
    proj = _collider(tmp_path)
    r = _python(IMPORT_CHECK, proj)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")
    # the command line too, from the same folder
    r = subprocess.run([sys.executable, "-m", "ood_bench", "list"], cwd=proj, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "dlsr" in r.stdout and "pixel-mahalanobis" in r.stdout


def test_pyproject_ships_every_package_folder():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {k: v for k, v in tool["package-dir"].items()} == {v: k for k, v in FOLDERS.items()}
    expected = set()
    for folder, pkg in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            expected.add(".".join([pkg, *rel.parts]))
    assert set(tool["packages"]) == expected


def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    """A regular (non-editable) install: build the wheel, install it into a bare folder, and
    import and list from an unrelated folder holding colliding packages."""
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"cannot build a wheel here: {r.stderr.splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    (wheel,) = wheels.glob("ood_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ood_bench/configs/cifar10.yaml" in names and "ood_bench/engine/runner.py" in names
    assert "ood_bench/methods/baselines/feature_space.py" in names and "ood_bench/data/embedded.py" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a wheel is a zip laid out as site-packages
    proj = _collider(tmp_path)
    # only the extracted wheel provides ood_bench: drop the editable install's finder from the path
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__]\n"
            + IMPORT_CHECK)
    r = _python(code, proj, env={"PYTHONPATH": str(site)})
    assert r.returncode == 0, r.stderr
    assert str(site) in r.stdout


# ------------------------------------------------------------------------------ layering
LAYERS = ["utils", "data", "methods", "outcomes", "engine|reporting", "plugins", "api", "cli", "__main__"]


def _layer(module: str) -> tuple[int, str]:
    """``ood_bench.engine.runner`` → (rank, "engine")."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for rank, names in enumerate(LAYERS):
        if top in names.split("|"):
            return rank, top
    raise AssertionError(f"{module} belongs to no layer")


def _modules():
    for folder, pkg in FOLDERS.items():
        if folder == "configs":
            continue
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if name != "ood_bench":
                yield name, path


def test_lower_layers_never_import_upper_ones():
    bad = []
    for name, path in _modules():
        rank, layer = _layer(name)
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t.startswith("ood_bench.") or t == "ood_bench":
                    if t == "ood_bench":
                        bad.append(f"{name} imports the top-level ood_bench (use the module itself)")
                        continue
                    trank, tlayer = _layer(t)
                    if trank > rank or (trank == rank and tlayer != layer):
                        bad.append(f"{name} ({layer}) imports {t} ({tlayer})")
                elif t.split(".")[0] in ("benchmark", "methods", "data"):
                    bad.append(f"{name} imports {t} outside the ood_bench namespace")
    assert not bad, "\n".join(bad)
