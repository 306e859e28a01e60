"""Provenance of a run: versions, git commit, device, time (written into every result)."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
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
    where = where or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                    capture_output=True, text=True, timeout=5).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _onednn_version() -> str | None:
    import re

    m = re.search(r"(?:MKL-DNN|oneDNN)[^\n]*?v(\d+\.\d+(?:\.\d+)?)", torch.__config__.show())
    return m.group(1) if m else None


def machine_info(device: torch.device) -> dict[str, Any]:
    """What decides the last bits of a trained model: CPU model and the instruction set torch
    dispatches to, the math libraries' versions, threads, and the accelerator (with cuDNN).

    ``fingerprint`` hashes everything but the thread count (training fixes its own threads)."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(), "arch": platform.machine(), "isa": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__, "onednn": _onednn_version(), "device": device.type,
        "accelerator": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
    }
    blob = "|".join(f"{k}={info[k]}" for k in sorted(info))
    info["fingerprint"] = hashlib.sha1(blob.encode()).hexdigest()[:12]
    info["torch_threads"] = torch.get_num_threads()
    return info


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
            "machine": machine_info(device), "host": platform.node(), "platform": platform.platform()}


def _ds_info(ds) -> dict:
    return {"name": ds.name, "split": ds.split, "n": len(ds), "labelled": ds.has_labels,
            "fingerprint": ds.fingerprint(), "subset": ds.subset}


def _validation_info(cfg, prep) -> dict[str, Any]:
    """The validation hold-out of every seed: fraction, sizes, fingerprints (from ID train only)."""
    per_seed = {}
    for seed, split in getattr(prep, "splits", {}).items():
        if isinstance(split, str):
            per_seed[str(seed)] = {"error": split}
        elif split[1] is None:
            per_seed[str(seed)] = {"n": 0}
        else:
            fit, val = split
            per_seed[str(seed)] = {"n": len(val), "fingerprint": val.fingerprint(), "fit_n": len(fit),
                                   "fit_fingerprint": fit.fingerprint(), "strategy": val.how.get("strategy")}
    return {"fraction": cfg.validation, "of": "id_train", "seeds": per_seed}


def start_manifest(cfg, prep, command: str) -> dict[str, Any]:
    """The manifest of a run about to start (``status: running``): config, methods, datasets, provenance."""
    return {
        "status": "running", "started": now_iso(), "finished": None, "command": command, "seeds": cfg.seeds,
        "config": cfg.to_dict(),
        "methods": {k: {"config": dataclasses.asdict(c), "version": cls.version, "needs_labels": cls.needs_labels}
                    for k, (cls, c) in prep.methods.items()},
        "datasets": {"id_train": _ds_info(prep.id_train), "id_test": _ds_info(prep.id_test),
                     **{f"ood:{k}": {**_ds_info(v), "group": prep.groups[k]} for k, v in prep.oods.items()}},
        "validation": _validation_info(cfg, prep),
        **provenance(prep.device),
    }


def finish_manifest(manifest: dict[str, Any], results, wall_s: float) -> dict[str, Any]:
    """Mark ``manifest`` complete, with every method's timings, costs and fit report."""
    cache = Path(manifest.get("config", {}).get("cache_dir") or ".").expanduser().absolute()
    manifest["timings"] = {f"{r.method}/seed{r.seed}": {
        "fit_key": r.fit_key, "model": str(cache / r.method / r.fit_key / "model"), "fit_s": r.fit_seconds, "fit_cached": r.fit_cached, "fit_report": r.fit_report,
        "score_s": sum(d.seconds for d in r.all_scored), "scores_cached": all(d.cached for d in r.all_scored),
        "img_per_s": r.images_per_second, "nfe_per_image": r.cost, "budget": r.budget, "peak_mem_mib": r.peak_mem_mib,
        "id_accuracy": r.id_accuracy, "artifacts": [a.to_dict() for a in r.artifacts]} for r in results}
    artifacts: dict[str, dict[str, Any]] = {}
    for r in results:
        for a in r.artifacts:
            entry = artifacts.setdefault(a.key, {"kind": a.kind, "folder": a.folder, "seconds": a.seconds,
                                                 "report": a.report, "uses": []})
            entry["uses"].append({"method": r.method, "seed": r.seed, "name": a.name, "status": a.status})
    manifest["artifacts"] = artifacts
    manifest.update(status="complete", finished=now_iso(), wall_s=round(wall_s, 2))
    return manifest
