"""``ood-bench speed``: scoring throughput and memory of methods at their configured sizes.

Networks are built with untrained weights (speed does not depend on them) and ``score_batch``
is timed on random images (device synchronised, after one warm-up batch). Methods whose full
budget is too slow to time here (LMD's 10,000 UNet evaluations per image on a CPU) can be timed
at fewer steps (``--timing-steps``): the printed full-budget throughput is then extrapolated
linearly in network evaluations — ``img/s(full) = img/s(timed) × NFE(timed) / NFE(full)`` —
and marked as such.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ood_bench.utils.device import PeakMemory, synchronize
from ood_bench.engine.runner import PreparedRun, apply_budget, seed_everything
from ood_bench.methods.base import OODMethod, RunContext


@dataclass
class SpeedResult:
    method: str
    nfe_full: float
    nfe_timed: float
    images: int
    seconds: float
    peak_mib: float
    memory_kind: str

    @property
    def img_per_s_timed(self) -> float:
        return self.images / self.seconds

    @property
    def img_per_s_full(self) -> float:
        return self.img_per_s_timed * self.nfe_timed / self.nfe_full

    @property
    def extrapolated(self) -> bool:
        return self.nfe_timed != self.nfe_full


def measure(prep: PreparedRun, images: int, batch_size: int | None, timing_steps: int | None,
            num_classes: int = 10) -> list[SpeedResult]:
    out = []
    for key, (cls, cfg) in prep.methods.items():
        full: OODMethod = cls(cfg, RunContext(device=prep.device))
        timed_cfg = apply_budget(cls, key, cfg, timing_steps, None)
        bs = min(images, batch_size or getattr(cls, "default_batch_size", 128))
        m: OODMethod = cls(timed_cfg, RunContext(device=prep.device, batch_size=bs))
        seed_everything(0, key)
        m.build_untrained(num_classes)
        size, ch = getattr(timed_cfg, "image_size", 224), getattr(timed_cfg, "channels", 3)
        x = torch.rand(images, ch, size, size, device=prep.device)
        gen = torch.Generator(device=prep.device).manual_seed(0)
        with torch.no_grad():
            m.score_batch(x[:bs], gen)  # warm-up (allocations, kernels)
            synchronize(prep.device)
            with PeakMemory(prep.device) as mem:
                t0 = time.perf_counter()
                for b in range(0, images, bs):
                    m.score_batch(x[b:b + bs], gen)
                synchronize(prep.device)
                secs = time.perf_counter() - t0
        out.append(SpeedResult(key, sum(full.cost().values()), sum(m.cost().values()), images, secs,
                               mem.peak_mib, mem.kind))
    return out


def format_table(results: list[SpeedResult]) -> str:
    import pandas as pd

    rows = [{"method": r.method, "NFE/img": f"{r.nfe_full:.0f}", "timed NFE/img": f"{r.nfe_timed:.0f}",
             "images": r.images, "s": f"{r.seconds:.2f}", "img/s (timed)": f"{r.img_per_s_timed:.3g}",
             "img/s (full budget)": f"{r.img_per_s_full:.3g}" + (" (extrapolated)" if r.extrapolated else ""),
             "ms / network eval": f"{1000 * r.seconds / (r.images * r.nfe_timed):.3g}",
             f"peak MiB ({r.memory_kind})": f"{r.peak_mib:.0f}"} for r in results]
    return pd.DataFrame(rows).to_markdown(index=False, tablefmt="simple", disable_numparse=True)
