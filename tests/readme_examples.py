"""The README's code blocks marked ``<!-- example: NAME -->``, so tests execute what users read."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(name: str) -> str:
    m = re.search(rf"<!-- example: {re.escape(name)} -->\s*```python\n(.*?)```", README.read_text(), re.S)
    if m is None:
        raise AssertionError(f"README has no python block marked <!-- example: {name} -->")
    return m.group(1)
