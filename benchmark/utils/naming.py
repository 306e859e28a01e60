"""File names built from user-given names (dataset folders, method entries)."""
from __future__ import annotations


def safe_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9-_.]`` replaced by ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
