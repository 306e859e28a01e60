"""OOD detection methods. Importing this package registers every built-in method.

Each method lives in its own subpackage (``dlsr/``, ``lmd/``, ``diffood/``, ``ddpm_ood/``, ``msma/``,
``diffpath/``, ``likelihood/``, ``baselines/``); the post-hoc densities (density.py, posthoc.py) and the
shared pieces (contract, registry, shared artifacts (artifacts.py, the ID DDPM in ddpm.py), backbones, training loop, UNet factory) sit beside them.
Methods of other packages register through entry points or ``--plugin``
(:mod:`ood_bench.plugins`).

Imports: diffusers, timm and torchvision are imported inside the functions that build, train or
load a network (names used only in annotations sit under ``TYPE_CHECKING``), never at a module's
top. Each of them pulls in ``torch._dynamo``: together ~5 s on a 2-core CPU, about half of a
cached rerun, which reads every result from the cache and needs none of them (nor do
``ood-bench list`` or a config error). ``tests/test_imports.py`` holds this.
"""
from ood_bench.methods.base import BatchOutput, MethodConfig, OODMethod, RunContext, ScoreBatch, fit_option, score_option
from ood_bench.methods.registry import METHODS, register_method
from ood_bench.methods.artifacts import ARTIFACTS, Artifact, ArtifactRequest, register_artifact
from ood_bench.methods import ddpm as _ddpm  # noqa: F401  (registers the "ddpm-unet", "cond-ddpm-unet" artifacts)
from ood_bench.methods import feature_set as _feature_set  # noqa: F401  (registers the "features" artifact)
from ood_bench.methods import classifier as _classifier  # noqa: F401  (registers the "classifier" artifact)

from ood_bench.methods import dlsr as _dlsr  # noqa: F401  (registers "dlsr")
from ood_bench.methods import lmd as _lmd  # noqa: F401  (registers "lmd")
from ood_bench.methods import diffood as _diffood  # noqa: F401  (registers "diffood")
from ood_bench.methods import ddpm_ood as _ddpm_ood  # noqa: F401  (registers "ddpm-ood")
from ood_bench.methods import baselines as _baselines  # noqa: F401  (registers the baselines)
from ood_bench.methods import likelihood as _likelihood  # noqa: F401  (registers "diffusion-nll", "diffusion-ic")
from ood_bench.methods import msma as _msma  # noqa: F401  (registers "msma")
from ood_bench.methods import diffpath as _diffpath  # noqa: F401  (registers "diffpath")

__all__ = ["ARTIFACTS", "Artifact", "ArtifactRequest", "BatchOutput", "METHODS", "MethodConfig", "OODMethod", "RunContext", "ScoreBatch",
           "fit_option", "register_artifact", "register_method", "score_option"]
