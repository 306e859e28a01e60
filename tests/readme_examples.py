"""Code blocks marked ``<!-- example: NAME -->`` in README.md and docs/, so tests execute what users read."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def doc_files() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def marked_examples() -> dict[str, tuple[Path, str]]:
    """Every marked Python block: name → (file, code). A name used twice is an error."""
    found: dict[str, tuple[Path, str]] = {}
    for path in doc_files():
        for m in re.finditer(r"<!-- example: ([\w-]+) -->\s*```python\n(.*?)```", path.read_text(), re.S):
            if m.group(1) in found:
                raise AssertionError(f"example {m.group(1)!r} is marked twice ({found[m.group(1)][0]} and {path})")
            found[m.group(1)] = (path, m.group(2))
    return found


def readme_example(name: str) -> str:
    """The code of the Python block marked ``<!-- example: NAME -->`` in README.md or docs/."""
    examples = marked_examples()
    if name not in examples:
        raise AssertionError(f"no python block marked <!-- example: {name} --> in README.md or docs/")
    return examples[name][1]
