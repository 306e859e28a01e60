"""OOD detection methods. Importing this package registers every method.

Each method lives in its own subpackage (``dlsr/``, ``lmd/``, ``diffood/``); the shared pieces
(contract, backbones, training loop, UNet factory) sit beside them.
"""
from methods.base import BatchOutput, MethodConfig, OODMethod, RunContext, ScoreBatch

from methods import dlsr as _dlsr  # noqa: F401  (registers "dlsr")
from methods import lmd as _lmd  # noqa: F401  (registers "lmd")
from methods import diffood as _diffood  # noqa: F401  (registers "diffood")

__all__ = ["BatchOutput", "MethodConfig", "OODMethod", "RunContext", "ScoreBatch"]
