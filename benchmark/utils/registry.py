"""A name → object registry, filled by decorators at import time.

Modelled on timm's ``register_model``. The method registry lives in
:mod:`ood_bench.methods.registry`, the dataset registry in :mod:`ood_bench.data.registry`.
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from ood_bench.utils.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A case-insensitive name → entry mapping with aliases and helpful lookup errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (and ``aliases``)."""
        key = name.lower()

        def deco(obj: T) -> T:
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[key] = obj
            for a in aliases:
                self._aliases[a.lower()] = key
            return obj

        return deco

    def canonical(self, name: str) -> str:
        key = name.lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            known = sorted(self._entries)
            close = difflib.get_close_matches(key, known + sorted(self._aliases), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}{hint}; known: {', '.join(known)} "
                f"(see `ood-bench list`)"
            )
        return key

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def __contains__(self, name: str) -> bool:
        key = name.lower()
        return key in self._entries or key in self._aliases

    def names(self) -> list[str]:
        return sorted(self._entries)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, k in self._aliases.items() if k == name)

    def items(self) -> Iterator[tuple[str, T]]:
        for k in sorted(self._entries):
            yield k, self._entries[k]
