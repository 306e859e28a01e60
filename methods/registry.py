"""The method registry: ``@register_method("name")`` on an :class:`~ood_bench.methods.base.OODMethod`.

Built-in methods register when :mod:`ood_bench.methods` is imported; methods of other packages
register through the ``ood_bench.methods`` entry-point group or ``--plugin`` (see
:mod:`ood_bench.plugins`). The runner looks names up here and never branches on them.
"""
from __future__ import annotations

from typing import Callable

from ood_bench.utils.registry import Registry

METHODS: Registry[type] = Registry("method")


def register_method(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator: register an :class:`~ood_bench.methods.base.OODMethod` subclass as ``name``."""

    def deco(cls: type) -> type:
        cls.name = name
        if not cls.__dict__.get("display_name"):  # the table name defaults to the registry name
            cls.display_name = name
        return METHODS.register(name, aliases=aliases)(cls)

    return deco
