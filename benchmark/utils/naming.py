"""File names built from user-given names (dataset folders, method entries)."""
from __future__ import annotations


def safe_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9-_.]`` replaced by ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def one_line(text: str) -> str:
    """``text`` with every non-printable character (newline, carriage return, form feed, line
    separators, other controls) written as its Python escape (``\\n``), so a user-given string
    (a run path, a dataset name) can never end a comment line in a LaTeX, CSV or Markdown export."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text))
