"""Pretrained models by name: a local folder, or a Hugging Face hub repo id (``owner/name``).

``lmd.unet=google/ddpm-cifar10-32``, ``diffood.unet=<folder>``, ``diffood.classifier_path=<repo>``,
``dlsr.lfdn=<folder>`` all go through :func:`pretrained_folder`: an existing folder is used as
it is; anything shaped like a repo id is downloaded once with ``huggingface_hub.snapshot_download``
(into the usual hub cache, ``$HF_HOME``) and then read like a folder. Offline, or for an unknown
repo, the download fails in one line naming the page and how to fill a folder by hand.

A folder may hold the model itself (``config.json`` + weights, as ``save_pretrained`` writes it)
or a saved pipeline with the model in a subfolder (``unet/``) and the noise schedule in
``scheduler/`` (or ``scheduler_config.json`` at the top, as in ``google/ddpm-cifar10-32``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ood_bench.utils.errors import MissingWeightsError

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers import DDPMScheduler

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
MODEL_FILES = ("*.json", "*.safetensors", "*.bin")

M = TypeVar("M")


def pretrained_folder(ref: str, what: str, patterns: tuple[str, ...] = MODEL_FILES) -> Path:
    """The local folder of ``ref``: the folder itself, or a snapshot of hub repo ``ref``.

    Raises:
        MissingWeightsError: not a folder and not a repo id; or the download failed (offline,
            unknown or gated repo).
    """
    folder = Path(ref).expanduser()
    if folder.is_dir():
        return folder
    if folder.exists() or not REPO_ID.fullmatch(ref):
        raise MissingWeightsError(f"{what} {ref!r} is neither a folder nor a Hugging Face repo id (owner/name); "
                                  f"give a folder written by save_pretrained or a repo id")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref, allow_patterns=list(patterns)))
    except Exception as e:  # offline, unknown repo, gated repo: all the user's to fix
        raise MissingWeightsError(
            f"{what} {ref}: no such folder, and cannot download https://huggingface.co/{ref} ({type(e).__name__}); "
            f"with internet run `huggingface-cli download {ref} --local-dir DIR` and pass the folder DIR instead") from None


def model_subfolder(folder: Path, subfolder: str) -> Path:
    """``folder/subfolder`` when it holds a ``config.json`` (a saved pipeline), else ``folder``."""
    return folder / subfolder if (folder / subfolder / "config.json").is_file() else folder


def load_pretrained_model(cls: type[M], ref: str, subfolder: str, what: str) -> M:
    """``cls.from_pretrained`` (a diffusers ``ModelMixin``) on the folder or repo ``ref``."""
    folder = model_subfolder(pretrained_folder(ref, what), subfolder)
    if not (folder / "config.json").is_file():
        raise MissingWeightsError(f"no {what} in {folder} (expected config.json and the weights there, "
                                  f"or in {subfolder}/); write one with save_pretrained(folder)")
    return cls.from_pretrained(folder, low_cpu_mem_usage=False)  # no accelerate needed


def load_pretrained_scheduler(ref: str) -> DDPMScheduler | None:
    """The DDPM noise schedule saved beside a pretrained UNet (``scheduler/`` or a top-level
    ``scheduler_config.json``), or ``None`` when there is none. ``clip_sample`` is turned off:
    LMD and DiffOOD never clip the x0 estimate (a saved DDPM pipeline often clips, for sampling)."""
    from diffusers import DDPMScheduler
    folder = pretrained_folder(ref, "UNet")
    for sub in ("scheduler", ""):
        if (folder / sub / "scheduler_config.json").is_file():
            loaded = DDPMScheduler.from_pretrained(folder, subfolder=sub or None)
            return DDPMScheduler.from_config(loaded.config, clip_sample=False)
    return None


@dataclass(frozen=True)
class Weights:
    """A downloadable file or model a method needs (``OODMethod.required_weights``), fetched by
    ``ood-bench fetch`` / ``--download``.

    Attributes:
        name: a known weights file by its resource name (a backbone's timm arch such as
            ``tf_efficientnet_b4``, ``alexnet`` for LPIPS); empty for a hub model.
        hub_repo: a Hugging Face repo id (``google/ddpm-cifar10-32``); empty for a named file.
        patterns: the files of the repo to fetch.
    """

    name: str = ""
    hub_repo: str = ""
    patterns: tuple[str, ...] = MODEL_FILES


def hub_weights(ref: str, patterns: tuple[str, ...] = MODEL_FILES) -> list[Weights]:
    """``[Weights(hub_repo=ref)]`` when ``ref`` (a pretrained-model option) names a Hugging Face repo
    rather than an existing local path; ``[]`` otherwise."""
    if ref and not Path(ref).expanduser().exists() and REPO_ID.fullmatch(ref):
        return [Weights(hub_repo=ref, patterns=patterns)]
    return []
def load_weights(file: Path | str, what: str) -> object:
    """A user-supplied checkpoint read as tensors and plain containers only
    (``torch.load(weights_only=True)``): a file that would run code when unpickled, or any other
    unreadable file, is refused in one line and nothing in it executes.

    Raises:
        UserError: the file is not a plain weights file (names ``what`` and the fix).
    """
    import pickle

    import torch

    from ood_bench.utils.errors import UserError

    try:
        if str(file).endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(file))
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # every reader raises its own type for a bad file
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e) or "Unsupported global" in str(e):
            why = "it holds Python objects beyond tensors, which are refused (they could run code)"
        raise UserError(f"{what} {file} is not a plain weights file ({why[:200]}); save it as a state dict "
                        f"of tensors (torch.save(model.state_dict(), ...)) or as .safetensors") from None
