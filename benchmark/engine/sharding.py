"""Sharded scoring: each rank scores batch-aligned ranges of a dataset; every rank gets the whole.

The batches of a sharded run are the batches of a one-process run (same boundaries, same
per-(seed, dataset, batch start) random draws, see :meth:`OODMethod.score`), only handed out to
different processes, so the gathered scores equal the one-process scores exactly (up to the
device's own kernel determinism). Rank ``r`` of ``W`` takes the ``r``-th of ``W`` contiguous,
near-equal runs of whole batches; contiguous runs keep the gather a plain concatenation.
"""
from __future__ import annotations

import numpy as np

from ood_bench.data.base import ImageDataset, ShardDataset
from ood_bench.methods.base import OODMethod, ScoreBatch
from ood_bench.utils import distributed as dist


def shard_bounds(n: int, batch_size: int, world: int) -> list[tuple[int, int]]:
    """``[start, stop)`` image ranges of every rank: whole batches of ``batch_size``, the batch
    count split as evenly as possible (when there are fewer batches than ranks, the last ranks get
    none). Every boundary is a multiple of ``batch_size`` (or ``n``), whatever ``world`` is."""
    batches = -(-n // batch_size)
    cuts = [-(-r * batches // world) for r in range(world + 1)]  # ceil: rank 0 always has batch 0
    return [(min(a * batch_size, n), min(b * batch_size, n)) for a, b in zip(cuts, cuts[1:])]


def concat(parts: list[ScoreBatch]) -> ScoreBatch:
    """Score batches of consecutive ranges, joined in order."""
    scores = {k: np.concatenate([p.scores[k] for p in parts]) for k in parts[0].scores}
    preds = None if parts[0].predictions is None else np.concatenate([p.predictions for p in parts])
    return ScoreBatch(scores, parts[0].primary, preds)


def score_sharded(method: OODMethod, ds: ImageDataset, desc: str) -> ScoreBatch:
    """``method.score(ds)``, computed across all ranks (just that call without a process group)."""
    world = dist.world_size()
    if world == 1:
        return method.score(ds, desc=desc)
    start, stop = shard_bounds(len(ds), method.ctx.batch_size, world)[dist.rank()]
    mine = method.score(ShardDataset(ds, start, stop), desc=f"{desc} [{start}:{stop}]") if stop > start else None
    parts = [p for p in dist.all_gather(mine) if p is not None]
    return concat(parts)
