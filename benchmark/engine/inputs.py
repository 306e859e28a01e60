"""Checks of a run's datasets that only the loaded sets can answer, and unique table labels.

Names alone cannot tell that ``digits-0-4`` is ``digits04``, that ``./x/test`` is the test split
of the ID folder ``x``, or that ``a/imgs`` and ``a/imgs/`` are one folder. :func:`content_key`
describes a loaded set by what it holds (registry set by its arrays' hash, folder by its resolved
path and files, a ``--limit`` subset by its parent's key and the draw) and never by the name it
was given, so :func:`check_distinct_sets` refuses, in one line:

- an OOD set that is the ID set's test or training split under any name;
- one set given twice as OOD (twice in a list, or in both ``near`` and ``far``).

Different sets that share a display name (``a/imgs``, ``b/imgs``) are kept apart by
:func:`ood_labels`: each is labelled by its name as given.
"""
from __future__ import annotations

import json
from pathlib import Path

from ood_bench.data import ImageDataset
from ood_bench.data.registry import dataset_title, looks_like_path
from ood_bench.utils.errors import ConfigError


def content_key(ds: ImageDataset) -> str:
    """What ``ds`` holds, independent of the name it was loaded under (JSON text)."""
    ident = dict(ds.identity())
    base = getattr(ds, "base", None)
    if "base" in ident and isinstance(base, ImageDataset):
        ident["base"] = content_key(base)
    ident.pop("name", None)
    if "root" in ident:
        ident["root"] = str(Path(str(ident["root"])).expanduser().resolve())
    return json.dumps({"len": len(ds), **ident}, sort_keys=True, default=str)


def ood_labels(names: list[str]) -> dict[str, str]:
    """Table label per OOD name: its display name (``Textures``, ``imgs``), or the name as given
    where two names share a display name (``a/imgs``, ``b/imgs``)."""
    titles = {n: dataset_title(n) for n in names}
    shared = {t for t in titles.values() if list(titles.values()).count(t) > 1}
    plain = {n: Path(n.rstrip("/")).name if looks_like_path(n) else n for n in names}  # runner.display_name
    return {n: (n.rstrip("/") if titles[n] in shared else plain[n]) for n in names}


def check_distinct_sets(id_name: str, id_sets: dict[str, ImageDataset], oods: dict[str, ImageDataset],
                        groups: dict[str, str]) -> None:
    """Refuse an OOD set that is an ID split, and one set given twice (see the module doc).

    Args:
        id_name: the ID set as given (for messages).
        id_sets: split name (``train``, ``test``) → the loaded ID split.
        oods: OOD name as given → the loaded set; ``groups``: OOD name → its group.

    Raises:
        ConfigError: one line naming both sets and the fix.
    """
    ids = {content_key(ds): split for split, ds in id_sets.items()}
    seen: dict[str, str] = {}
    for name, ds in oods.items():
        key = content_key(ds)
        if key in ids and name == id_name:
            raise ConfigError(f"{name} is the ID set; it cannot also be an OOD set; drop it from the OOD sets")
        if key in ids:
            raise ConfigError(f"OOD set {name} is the ID set {id_name}'s {ids[key]} split under another name "
                              f"(AUROC would be 50 by construction); drop it from the OOD sets")
        if key in seen:
            other = seen[key]
            where = (f"in both {groups.get(other, 'ood')} and {groups.get(name, 'ood')}"
                     if groups.get(other) != groups.get(name) else "twice")
            raise ConfigError(f"OOD sets {other} and {name} are the same set, given {where}; give each set once"
                              + (" and in one group" if groups.get(other) != groups.get(name) else ""))
        seen[key] = name
