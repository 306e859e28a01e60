"""ood-bench: the runner, registry, metrics, reports and CLI.

Kept import-light on purpose: ``data`` and ``methods`` import :mod:`benchmark.errors`
and :mod:`benchmark.registry`, so nothing heavy may be imported here.
"""

__version__ = "0.1.0"
