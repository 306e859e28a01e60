"""The ID DDPM as a shared artifact (kind ``"ddpm-unet"``): one unconditional pixel-space UNet
and its noise schedule, trained once per recipe and used by every method that asks for it.

A method whose config subclasses :class:`~ood_bench.methods.unet.PixelDiffusionConfig` returns
``{"ddpm": ddpm_request(self.config)}`` from ``requires()`` and takes
``self.artifacts["ddpm"].unet`` / ``.scheduler`` in ``fit()``/``load()``. The recipe is the
config's :class:`PixelDiffusionConfig` fit options (the subclass's own options are not part of
it), so methods whose presets give identical UNet recipes share one network. A non-empty
``unet`` option names a pretrained diffusers UNet (folder or Hugging Face id), loaded instead of
trained (its saved noise schedule, when present, replaces the schedule options).

It is trained on **ID train minus the run's validation hold-out** (``data="fit"``): one rule for
every method that shares it, so a method calibrating on the hold-out never sees images the DDPM saw.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ood_bench.utils.device import compile_backend
from ood_bench.utils.errors import ConfigError
from ood_bench.utils.progress import log
from ood_bench.data.base import ImageDataset
from ood_bench.data.loading import materialize
from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.artifacts import Artifact, ArtifactRequest, register_artifact
from ood_bench.methods.base import RunContext
from ood_bench.methods.pretrained import load_pretrained_scheduler
from ood_bench.methods.unet import PixelDiffusionConfig, load_unet, train_unet, unet_training_throughput

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers import DDPMScheduler, UNet2DModel

# The name that seeds the UNet's initial weights (train_unet's seed name). It is LMD's, the
# first method that trained this network, so LMD's UNet starts from the weights it always did.
SEED_NAME = "lmd UNet"
# Pretrained: only these options matter (the network comes from elsewhere).
PRETRAINED_KEYS = ("unet", "image_size", "channels", "diffusion_steps", "beta_start", "beta_end")


def ddpm_recipe(config: PixelDiffusionConfig) -> dict[str, Any]:
    """The :class:`PixelDiffusionConfig` fit options of ``config`` (a subclass's own options left
    out), as JSON-plain values; with a pretrained ``unet``, only what loading it depends on."""
    names = [f.name for f in dataclasses.fields(PixelDiffusionConfig) if f.metadata.get("stage", "fit") == "fit"]
    if config.unet:
        names = [n for n in names if n in PRETRAINED_KEYS]
    return {n: (list(v) if isinstance(v := getattr(config, n), tuple) else v) for n in names}


def ddpm_request(config: PixelDiffusionConfig) -> ArtifactRequest:
    """The request for the ID DDPM of ``config``: kind ``"ddpm-unet"``, trained on ``fit`` data."""
    return ArtifactRequest("ddpm-unet", ddpm_recipe(config), data="fit")


def recipe_config(recipe: dict) -> PixelDiffusionConfig:
    """A :class:`PixelDiffusionConfig` holding ``recipe`` (tuples restored)."""
    hints = {f.name: f for f in dataclasses.fields(PixelDiffusionConfig)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in recipe.items() if k in hints}
    return PixelDiffusionConfig(**values)


def pretrained_ddpm(c: PixelDiffusionConfig) -> tuple[UNet2DModel, DDPMScheduler]:
    """The UNet named by ``c.unet`` (on CPU) and its noise schedule: the saved one when the folder
    or repo has one (it must have ``diffusion_steps`` steps, which the samplers assume), else ``c``'s."""
    unet = load_unet(c.unet, c.image_size, c.channels)
    sched = load_pretrained_scheduler(c.unet)
    if sched is None:
        return unet, c.scheduler()
    if sched.config.num_train_timesteps != c.diffusion_steps:
        raise ConfigError(f"UNet {c.unet} comes with a {sched.config.num_train_timesteps}-step schedule; "
                          f"set diffusion_steps={sched.config.num_train_timesteps}")
    return unet, sched


@register_artifact("ddpm-unet")
class DDPMArtifact(Artifact):
    """An unconditional ε-prediction ``UNet2DModel`` (EMA weights, eval mode, on the device)
    with its ``DDPMScheduler``. ``losses``: mean training loss per epoch (empty when pretrained)."""

    version = "1"

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler, losses: list[float] | None = None) -> None:
        self.unet = unet
        self.scheduler = scheduler
        self.losses = list(losses or [])

    @classmethod
    def build(cls, recipe: dict, train: ImageDataset, ctx: RunContext) -> "DDPMArtifact":
        c = recipe_config(recipe)
        if c.unet:
            unet, sched = pretrained_ddpm(c)
            log(f"ddpm UNet: using the pretrained UNet {c.unet} (no training)")
            return cls(unet.to(ctx.device).eval(), sched)
        x, _ = materialize(train, ImageTransform(c.image_size, c.channels), 1024, ctx.workers)
        res = train_unet(c, x, ctx.device, ctx.seed, ctx.work_dir, desc="ddpm UNet", seed_name=SEED_NAME,
                         compile=compile_backend(ctx.compile, ctx.device, ctx.compile_backend))
        return cls(res.model.eval(), c.scheduler(), res.epoch_losses)

    def save(self, directory: Path) -> None:
        """Diffusers folders ``unet/`` and ``scheduler/`` (reusable as a method's ``unet`` option)."""
        self.unet.save_pretrained(directory / "unet")
        self.scheduler.save_pretrained(directory / "scheduler")
        (directory / "losses.json").write_text(json.dumps(self.losses))

    @classmethod
    def load(cls, recipe: dict, directory: Path, ctx: RunContext) -> "DDPMArtifact":
        from diffusers import DDPMScheduler, UNet2DModel
        unet = UNet2DModel.from_pretrained(directory / "unet", low_cpu_mem_usage=False).to(ctx.device).eval()
        sched = DDPMScheduler.from_pretrained(directory / "scheduler")
        losses = json.loads((directory / "losses.json").read_text()) if (directory / "losses.json").is_file() else []
        return cls(unet, sched, losses)

    def fit_report(self) -> dict[str, float]:
        return {"final_train_loss": self.losses[-1]} if self.losses else {}

    @classmethod
    def training_throughput(cls, recipe: dict, device, steps: tuple[int, int], compile: str | None,
                            num_classes: int, batch_size: int | None = None) -> float | None:
        c = recipe_config(recipe)
        if c.unet:
            return None  # pretrained: nothing is trained
        if batch_size:
            c = dataclasses.replace(c, train_batch_size=batch_size)
        return unet_training_throughput(c, device, steps, compile, *cls._conditioning(recipe, num_classes))

    @staticmethod
    def _conditioning(recipe: dict, num_classes: int) -> tuple[int | None, float]:
        return None, 0.0


# ------------------------------------------------------------------ class-conditional
def cond_ddpm_request(config: PixelDiffusionConfig, label_dropout: float) -> ArtifactRequest:
    """The request for a class-conditional ID DDPM (kind ``"cond-ddpm-unet"``): ``config``'s UNet
    recipe plus ``label_dropout``, trained on the whole labelled ID train split (DiffOOD's)."""
    return ArtifactRequest("cond-ddpm-unet", {**ddpm_recipe(config), "label_dropout": label_dropout}, data="train")


@register_artifact("cond-ddpm-unet")
class ConditionalDDPMArtifact(DDPMArtifact):
    """A class-conditional ε-prediction ``UNet2DModel``: ``num_class_embeds = num_classes + 1``
    (index ``num_classes`` = the null class, trained with probability ``label_dropout``), for
    classifier-free guidance. Attributes as :class:`DDPMArtifact`, plus ``num_classes``."""

    version = "1"
    SEED_NAME = "diffood UNet"  # DiffOOD's, which trained it first: its initial weights stay

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler, num_classes: int,
                 losses: list[float] | None = None) -> None:
        super().__init__(unet, scheduler, losses)
        self.num_classes = num_classes

    @classmethod
    def build(cls, recipe: dict, train: ImageDataset, ctx: RunContext) -> "ConditionalDDPMArtifact":
        c = recipe_config(recipe)
        if not train.has_labels:
            raise ConfigError(f"a class-conditional UNet needs class labels, but {train.name} is unlabelled")
        n = int(train.num_classes)
        if c.unet:
            unet, sched = pretrained_ddpm(c)
            if unet.config.num_class_embeds != n + 1:
                raise ConfigError(f"UNet {c.unet} has {unet.config.num_class_embeds} class embeddings; "
                                  f"{n + 1} are needed ({n} classes + null)")
            log(f"class-conditional UNet: using the pretrained UNet {c.unet} (no training)")
            return cls(unet.to(ctx.device).eval(), sched, n)
        x, y = materialize(train, ImageTransform(c.image_size, c.channels), 1024, ctx.workers)
        res = train_unet(c, x, ctx.device, ctx.seed, ctx.work_dir, desc="diffood UNet", labels=y, num_classes=n,
                         label_dropout=recipe["label_dropout"], seed_name=cls.SEED_NAME,
                         compile=compile_backend(ctx.compile, ctx.device, ctx.compile_backend))
        return cls(res.model.eval(), c.scheduler(), n, res.epoch_losses)

    def save(self, directory: Path) -> None:
        super().save(directory)
        (directory / "classes.json").write_text(json.dumps({"num_classes": self.num_classes}))

    @classmethod
    def load(cls, recipe: dict, directory: Path, ctx: RunContext) -> "ConditionalDDPMArtifact":
        base = DDPMArtifact.load(recipe, directory, ctx)
        n = json.loads((directory / "classes.json").read_text())["num_classes"]
        return cls(base.unet, base.scheduler, n, base.losses)

    def fit_report(self) -> dict[str, float]:
        return {"unet_final_loss": self.losses[-1]} if self.losses else {}

    @staticmethod
    def _conditioning(recipe: dict, num_classes: int) -> tuple[int | None, float]:
        return num_classes, recipe["label_dropout"]
