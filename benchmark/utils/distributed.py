"""The process group as the rest of the code sees it: rank, world size, barrier, object exchange.

Every helper is a no-op (rank 0 of a world of 1) unless a ``torch.distributed`` process group
has been initialised — by :func:`ood_bench.engine.process_group.setup` under ``torchrun`` or
``srun`` — so code written with them behaves exactly as before without a launcher. It lives in
``utils`` (the lowest layer) because the training loop in ``methods`` needs it too.
"""
from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def active() -> bool:
    """``True`` inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or no process group): the process that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast(obj: T, src: int = 0) -> T:
    """``obj`` of rank ``src`` on every rank (any picklable object); ``obj`` itself without a group."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank (picklable objects, e.g. numpy arrays)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64; on ``device`` for NCCL)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
