"""The README's code blocks marked ``<!-- example: NAME -->``, so tests execute what users read."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(name: str, document: Path = README) -> str:
    """The python block marked ``<!-- example: NAME -->`` in ``document`` (default the README)."""
    m = re.search(rf"<!-- example: {re.escape(name)} -->\s*```python\n(.*?)```", document.read_text(), re.S)
    if m is None:
        raise AssertionError(f"{document.name} has no python block marked <!-- example: {name} -->")
    return m.group(1)
