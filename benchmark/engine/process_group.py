"""Joining a ``torch.distributed`` process group when launched by ``torchrun`` or ``srun``.

:func:`setup` reads the launcher's environment, picks this rank's device and initialises the
process group once per process; without a launcher it only resolves the device, so a plain
``ood-bench run`` is unchanged. The rest of the code asks :mod:`ood_bench.utils.distributed`
for the rank.

Launchers recognised (first match wins):

- ``torchrun`` (also ``torch.distributed.run`` / ``torch.multiprocessing`` with the same
  variables): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
  ``MASTER_PORT``.
- SLURM ``srun`` starting one task per GPU: ``SLURM_PROCID``, ``SLURM_NTASKS``,
  ``SLURM_LOCALID``, ``SLURM_NTASKS_PER_NODE``, **and** ``MASTER_ADDR`` set by the job script
  (``scontrol show hostnames`` gives the first node). Requiring ``MASTER_ADDR`` keeps a plain
  command inside an allocation (where ``SLURM_*`` are set too) from waiting for ranks that
  never come.

Backend: ``nccl`` when this rank's device is CUDA, ``gloo`` on CPU. Device per rank:
``--device auto|cuda`` → ``cuda:LOCAL_RANK``; ``cpu`` → CPU; ``cuda:N`` is refused when several
ranks share a node (they would all pile onto GPU N). Collectives wait at most
``OOD_BENCH_DIST_TIMEOUT_MIN`` minutes (default 120): long enough for a rank 0 that waits for
another run to finish fitting a shared model, short enough that a lost rank ends the job.
"""
from __future__ import annotations

import atexit
import datetime
import os
import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist

from ood_bench.utils.device import resolve_device
from ood_bench.utils.errors import ConfigError

DEFAULT_PORT = "29500"
DEFAULT_TIMEOUT_MIN = 120.0


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits: global rank/size, rank/size on its node, and the launcher."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    launcher: str  # "torchrun" or "slurm"


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None and default is not None:
        return default
    m = re.match(r"\s*(\d+)", raw or "")  # SLURM_NTASKS_PER_NODE may read "4(x2)"
    if m is None:
        raise ConfigError(f"environment variable {name}={raw!r} is not a number; launch with torchrun or srun "
                          f"(which set it), or unset it for a single-process run")
    return int(m.group(1))


def launch_env(env: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """The launcher's view of this process, or ``None`` when no launcher started it."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        world = _int(env, "WORLD_SIZE")
        return LaunchEnv(_int(env, "RANK"), world, _int(env, "LOCAL_RANK", 0),
                         _int(env, "LOCAL_WORLD_SIZE", world), "torchrun")
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and "MASTER_ADDR" in env:
        world = _int(env, "SLURM_NTASKS")
        return LaunchEnv(_int(env, "SLURM_PROCID"), world, _int(env, "SLURM_LOCALID", 0),
                         _int(env, "SLURM_NTASKS_PER_NODE", world), "slurm")
    return None


def rank_device(spec: str, launch: LaunchEnv | None) -> torch.device:
    """This rank's device for ``--device spec``: CUDA ranks take ``cuda:LOCAL_RANK``."""
    device = resolve_device(spec)
    if launch is None or device.type != "cuda":
        return device
    if device.index is not None:
        if launch.local_world_size > 1:
            raise ConfigError(f"--device {spec} would put all {launch.local_world_size} ranks of a node on one GPU; "
                              f"use --device cuda (rank i takes cuda:LOCAL_RANK)")
        return device
    if launch.local_rank >= torch.cuda.device_count():
        raise ConfigError(f"local rank {launch.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                          f"start at most that many processes per node (--nproc_per_node)")
    return torch.device("cuda", launch.local_rank)


def _timeout() -> datetime.timedelta:
    raw = os.environ.get("OOD_BENCH_DIST_TIMEOUT_MIN", str(DEFAULT_TIMEOUT_MIN))
    try:
        minutes = float(raw)
    except ValueError:
        raise ConfigError(f"OOD_BENCH_DIST_TIMEOUT_MIN={raw!r} is not a number of minutes") from None
    return datetime.timedelta(minutes=minutes)


def setup(spec: str = "auto") -> torch.device:
    """Resolve this process's device and, under a launcher, join the process group (once).

    Returns the device every model and tensor of this rank lives on."""
    launch = launch_env()
    device = rank_device(spec, launch)
    if launch is None or dist.is_initialized():
        return device
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and all_gather_object use the current device
    if launch.launcher == "slurm":  # torchrun sets these itself; env:// init reads them
        os.environ.setdefault("MASTER_PORT", DEFAULT_PORT)
        os.environ.setdefault("RANK", str(launch.rank))
        os.environ.setdefault("WORLD_SIZE", str(launch.world_size))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=launch.rank,
                            world_size=launch.world_size, timeout=_timeout())
    atexit.register(teardown)
    return device


def teardown() -> None:
    """Leave the process group (registered at exit; NCCL warns when a group is left open)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def describe() -> dict[str, object]:
    """What the manifest records about the process group (empty without one)."""
    if not dist.is_initialized():
        return {}
    launch = launch_env()
    return {"world_size": dist.get_world_size(), "backend": dist.get_backend(),
            "launcher": launch.launcher if launch else "", "ranks_per_node": launch.local_world_size if launch else 1}
