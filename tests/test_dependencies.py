"""Every third-party module the code imports is declared in pyproject.toml.

`pip install -e .` in a clean environment must pull every package the package imports, not
rely on one arriving as a dependency of another (scipy came only through scikit-learn).
The import walk reads the source with :mod:`ast` (imports inside functions included);
import names are mapped to distribution names by the installed metadata
(``PIL`` → ``pillow``, ``skimage`` → ``scikit-image``, ``yaml`` → ``PyYAML``).
"""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("benchmark", "methods", "data", "configs")
OWN = {"ood_bench"}
# Where the installed metadata does not say it (a module not installed here).
FALLBACK = {"PIL": "pillow", "skimage": "scikit-image", "sklearn": "scikit-learn", "yaml": "pyyaml",
            "huggingface_hub": "huggingface-hub"}


def normalise(dist: str) -> str:
    """PEP 503 name normalisation: ``PyYAML`` == ``pyyaml``, ``huggingface_hub`` == ``huggingface-hub``."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def requirement_name(req: str) -> str:
    return normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req).group(1))


def declared(extras: tuple[str, ...] = ()) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return {requirement_name(r) for r in reqs}


def top_level_imports(files: list[Path]) -> dict[str, list[str]]:
    """Absolute top-level module names imported anywhere in ``files`` → where (``file:line``)."""
    found: dict[str, list[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                found.setdefault(name.split(".")[0], []).append(f"{where}:{node.lineno}")
    return found


def third_party(found: dict[str, list[str]], local: set[str] = frozenset()) -> dict[str, list[str]]:
    return {m: w for m, w in found.items()
            if m not in sys.stdlib_module_names and m not in OWN and m not in local}


@functools.lru_cache(maxsize=1)
def _installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distribution_of(module: str) -> str | None:
    dists = _installed().get(module)
    if dists:
        return normalise(dists[0])
    return normalise(FALLBACK[module]) if module in FALLBACK else None


def undeclared(modules: dict[str, list[str]], deps: set[str]) -> list[str]:
    problems = []
    for module, where in sorted(modules.items()):
        dist = distribution_of(module)
        if dist is None:
            problems.append(f"{module} (imported at {where[0]}): no installed distribution provides it")
        elif dist not in deps:
            problems.append(f"{module} (imported at {where[0]}): distribution {dist!r} is not in pyproject.toml")
    return problems


def _package_files() -> list[Path]:
    return sorted(p for folder in PACKAGE_FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_every_imported_package_is_declared_in_pyproject():
    modules = third_party(top_level_imports(_package_files()))
    # the walk sees what we know the code imports (a walk that finds nothing would pass vacuously)
    assert {"torch", "numpy", "scipy", "PIL", "yaml", "skimage", "sklearn", "diffusers"} <= set(modules)
    assert undeclared(modules, declared()) == []


def test_every_test_import_is_declared_with_the_test_extra():
    tests = sorted((ROOT / "tests").glob("*.py"))
    local = {p.stem for p in tests}  # helpers imported by tests (helpers, readme_examples, ...)
    modules = third_party(top_level_imports(tests), local)
    assert "pytest" in modules
    assert undeclared(modules, declared(("test",))) == []


def test_the_check_flags_an_undeclared_import_and_maps_import_names(tmp_path):
    assert distribution_of("PIL") == "pillow" and distribution_of("yaml") == "pyyaml"
    assert distribution_of("skimage") == "scikit-image" and distribution_of("sklearn") == "scikit-learn"
    src = tmp_path / "probe.py"
    src.write_text("import os\nimport numpy as np\nfrom scipy.stats import norm\nfrom . import sibling\n\n"
                   "def f():\n    import PIL.Image\n")
    modules = third_party(top_level_imports([src]))
    assert set(modules) == {"numpy", "scipy", "PIL"}
    problems = undeclared(modules, {"numpy", "pillow"})
    assert len(problems) == 1 and "scipy" in problems[0] and "probe.py:3" in problems[0]
    assert undeclared({"no_such_module_xyz": ["x:1"]}, set())[0].startswith("no_such_module_xyz")
