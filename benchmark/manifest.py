"""Provenance of a run: versions, git commit, device, time (written into every result)."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("ood-bench", "torch", "torchvision", "diffusers", "timm", "lpips", "scikit-learn",
            "scikit-image", "pandas", "numpy", "matplotlib")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = "not installed"
    return out


def git_state(where: Path | None = None) -> dict[str, Any]:
    """Commit and dirtiness of the source checkout (``None`` outside git)."""
    where = where or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                    capture_output=True, text=True, timeout=5).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def provenance(device: torch.device) -> dict[str, Any]:
    return {"versions": package_versions(), "git": git_state(), "device": device_info(device),
            "host": platform.node(), "platform": platform.platform()}
