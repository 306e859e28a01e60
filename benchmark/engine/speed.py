"""``ood-bench speed``: scoring throughput, FLOPs and memory of methods at their configured sizes.

Networks are built with untrained weights (speed does not depend on them). Two modes:

- model only (default): ``score_batch`` on random images already on the device;
- end to end (``data``: a registry name or an image folder): ``score`` over that set — reading,
  decoding, transfer and the method — exactly as ``ood-bench run`` scores it.

Timings: one first call (warm-up; it includes the one-off ``torch.compile`` when compiling,
reported on its own), then repeated passes for at least ``min_time`` seconds, device
synchronised; the median over passes is reported. FLOPs per image come from
``torch.utils.flop_counter.FlopCounterMode`` on one image (matrix products, convolutions and
attention; elementwise work is not counted), so figures compare across machines.

``timing_steps`` shortens a sampling chain, never lengthens it: a method whose chain already has
at most that many steps is timed at its full budget. When a method is timed at fewer steps, the
full-budget figure is extrapolated from *two* timed budgets (the timing budget ``a`` and a
one-step budget ``b``): the networks whose evaluation counts differ between them are the
sampler's (``cost()`` by network), ``n`` their evaluations per image, and per-image time is
fitted as ``T(n) = fixed + per_eval · n`` — so the backbone / classifier passes and the distance
are not scaled with the chain::

    per_eval = (T_a − T_b) / (n_a − n_b),  fixed = T_a − per_eval · n_a,
    T_full = fixed + per_eval · n_full                     (FLOPs: the same formula)
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from ood_bench.data.base import ImageDataset
from ood_bench.utils.device import PeakMemory, synchronize
from ood_bench.engine.runner import PreparedRun, apply_budget, seed_everything
from ood_bench.methods.base import MethodConfig, OODMethod, RunContext
from ood_bench.methods.artifacts import ARTIFACTS, ArtifactRequest


@dataclass
class Timing:
    """``first_s``: the first call (warm-up, compilation); ``median_s``: median of ``runs`` passes."""

    first_s: float
    median_s: float
    runs: int


def time_call(fn: Callable[[], object], min_time: float, device: torch.device) -> Timing:
    """Time ``fn`` (one pass): a first call (warm-up, compilation), then passes until ``min_time``
    seconds are spent (at least one), each synchronised with ``device``; their median is reported.
    (Not ``torch.utils.benchmark``: its ``blocked_autorange`` spends an untimed calibration pass,
    too dear for passes of seconds to minutes, and importing it probes for a CUDA toolkit, which
    prints a warning on CPU machines with a stray ``CUDA_HOME``.)"""
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    first = time.perf_counter() - t0
    times: list[float] = []
    while sum(times) < min_time:
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return Timing(first, statistics.median(times), len(times))


def count_flops(fn: Callable[[], object]) -> float:
    """Floating-point operations of one call of ``fn`` (``FlopCounterMode``: a multiply-add = 2)."""
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def linear_fit(t_a: float, n_a: float, t_b: float, n_b: float) -> tuple[float, float]:
    """``(fixed, per_eval)`` of ``T(n) = fixed + per_eval · n`` through two measured budgets
    (``n_a ≠ n_b``); both are clipped at 0 (timing noise must not make either negative)."""
    per_eval = max((t_a - t_b) / (n_a - n_b), 0.0)
    return max(t_a - per_eval * n_a, 0.0), per_eval


def extrapolate(t_a: float, n_a: float, t_b: float, n_b: float, n_full: float) -> float:
    """Per-image cost at ``n_full`` sampler evaluations, from the costs at ``n_a`` and ``n_b``."""
    fixed, per_eval = linear_fit(t_a, n_a, t_b, n_b)
    return fixed + per_eval * n_full


@dataclass
class Point:
    """One timed budget: its cost by network, the timing of a pass over ``images``, FLOPs/img."""

    cost: dict[str, float]
    images: int
    timing: Timing
    flops_per_img: float
    peak_mib: float
    memory_kind: str

    @property
    def s_per_img(self) -> float:
        return self.timing.median_s / self.images


@dataclass
class SpeedResult:
    method: str
    cost_full: dict[str, float]
    timed: Point
    s_per_img_full: float
    flops_full: float
    sampler: tuple[str, ...] = ()  # networks scaled by the extrapolation (empty: timed at full budget)
    sampler_s_per_eval: float | None = None

    @property
    def nfe_full(self) -> float:
        return sum(self.cost_full.values())

    @property
    def nfe_timed(self) -> float:
        return sum(self.timed.cost.values())

    @property
    def extrapolated(self) -> bool:
        return bool(self.sampler)

    @property
    def img_per_s_timed(self) -> float:
        return 1.0 / self.timed.s_per_img

    @property
    def img_per_s_full(self) -> float:
        return 1.0 / self.s_per_img_full


@dataclass
class SpeedSetup:
    """How to measure: images and batch size, the timing budget, the data (``None``: random
    images on the device), minimum timed seconds per budget, and the fast-path options."""

    images: int | None = None
    batch_size: int | None = None
    timing_steps: int | None = None
    data: ImageDataset | None = None
    workers: int = 2
    min_time: float = 1.0
    compile: str = "auto"
    compile_backend: str = "inductor"
    num_classes: int = 10


def _time_budget(prep: PreparedRun, key: str, cls: type[OODMethod], cfg: MethodConfig,
                 steps: int | None, s: SpeedSetup) -> Point:
    c = apply_budget(cls, key, cfg, steps, None) if steps else cfg
    n = s.images or (len(s.data) if s.data is not None else 8)
    bs = min(n, s.batch_size or cls.default_batch_size)
    m = cls(c, RunContext(device=prep.device, batch_size=bs, workers=s.workers, compile=s.compile,
                          compile_backend=s.compile_backend))
    seed_everything(0, key)
    labelled = s.data is not None and s.data.num_classes
    m.build_untrained(s.data.num_classes if labelled else s.num_classes)
    tf = m.image_transform  # the images the method scores (a method without one: 224 px RGB)
    size, ch = (tf.size, tf.channels) if tf is not None else (224, 3)
    gen = torch.Generator(device=prep.device)

    def one_image() -> None:
        with torch.no_grad():
            m.score_batch(torch.rand(1, ch, size, size, device=prep.device), gen.manual_seed(0))

    flops = count_flops(one_image)  # before compiling: FLOPs do not depend on it
    m.prepare_inference()
    if s.data is None:
        x = torch.rand(n, ch, size, size, device=prep.device)

        def run() -> None:
            with torch.no_grad():
                for b in range(0, n, bs):
                    m.score_batch(x[b:b + bs], gen.manual_seed(b))
    else:
        data = s.data.take(n)

        def run() -> None:
            m.score(data, desc=f"{key} speed")
    with PeakMemory(prep.device) as mem:
        timing = time_call(run, s.min_time, prep.device)
    return Point(m.cost(), n, timing, flops, mem.peak_mib, mem.kind)


def measure_method(prep: PreparedRun, key: str, s: SpeedSetup) -> SpeedResult:
    cls, cfg = prep.methods[key]
    full = cls(cfg, RunContext(device=prep.device))
    full_cost, full_steps = full.cost(), full.budget().get("steps")
    short = s.timing_steps is not None and full_steps is not None and s.timing_steps < full_steps
    a = _time_budget(prep, key, cls, cfg, s.timing_steps if short else None, s)
    if not short or a.cost == full_cost:
        return SpeedResult(key, full_cost, a, a.s_per_img, a.flops_per_img)
    b = _time_budget(prep, key, cls, cfg, 1 if s.timing_steps > 1 else 2, s)
    sampler = tuple(k for k in full_cost if a.cost.get(k) != b.cost.get(k))

    def evals(cost: dict[str, float]) -> float:
        return sum(cost.get(k, 0.0) for k in sampler)

    n_a, n_b, n_full = evals(a.cost), evals(b.cost), evals(full_cost)
    _, per_eval = linear_fit(a.s_per_img, n_a, b.s_per_img, n_b)
    return SpeedResult(key, full_cost, a, extrapolate(a.s_per_img, n_a, b.s_per_img, n_b, n_full),
                       extrapolate(a.flops_per_img, n_a, b.flops_per_img, n_b, n_full), sampler, per_eval)


def measure(prep: PreparedRun, setup: SpeedSetup) -> list[SpeedResult]:
    """:func:`measure_method` for every method of ``prep``."""
    return [measure_method(prep, key, setup) for key in prep.methods]


@dataclass
class TrainingSpeed:
    method: str   # the methods of the run that share this network, comma-separated
    network: str  # the artifact kind
    batch_size: int
    steps: tuple[int, int]
    img_per_s: float


def measure_training(prep: PreparedRun, steps: int = 25, batch_size: int | None = None,
                     compile: str | None = None, num_classes: int = 10) -> list[TrainingSpeed]:
    """Training img/s of every network the methods of ``prep`` train as shared artifacts and whose
    kind can time itself (:meth:`Artifact.training_throughput`: the DDPM UNets, class-conditional
    with ``num_classes``), once per recipe, at its batch size (or ``batch_size``), over the last
    ``steps − max(1, steps // 5)`` of ``steps`` steps of one training (the first are warm-up; see
    :func:`ood_bench.methods.unet.unet_training_throughput`). Other networks are left out."""
    short = max(1, steps // 5)
    if steps <= short:
        raise ValueError("training speed needs at least 2 steps")
    users: dict[str, list[str]] = {}
    requests: dict[str, ArtifactRequest] = {}
    for key, (cls, cfg) in prep.methods.items():
        for request in cls(cfg, RunContext(device=prep.device)).requires().values():
            ident = json.dumps(request.identity(), sort_keys=True)
            requests.setdefault(ident, request)
            users.setdefault(ident, []).append(key)
    out = []
    for ident, request in requests.items():
        kind = ARTIFACTS.get(request.kind)
        ips = kind.training_throughput(dict(request.recipe), prep.device, (short, steps), compile, num_classes, batch_size)
        if ips is not None:
            batch = batch_size or int(request.recipe.get("train_batch_size", 0))
            out.append(TrainingSpeed(", ".join(users[ident]), request.kind, batch, (short, steps), ips))
    return out


def format_training_table(results: list[TrainingSpeed]) -> str:
    import pandas as pd

    rows = [{"method": r.method, "network": r.network, "batch": r.batch_size,
             "steps timed": f"{r.steps[1] - r.steps[0]} after {r.steps[0]} warm-up", "train img/s": f"{r.img_per_s:.4g}"}
            for r in results]
    return pd.DataFrame(rows).to_markdown(index=False, tablefmt="simple", disable_numparse=True)


def _fmt_cost(cost: dict[str, float]) -> str:
    return " + ".join(f"{k} {v:.0f}" for k, v in cost.items())


def format_table(results: list[SpeedResult]) -> str:
    import pandas as pd

    rows = []
    for r in results:
        t = r.timed
        rows.append({
            "method": r.method, "NFE/img": f"{r.nfe_full:.0f}", "timed NFE/img": f"{r.nfe_timed:.0f}",
            "images": t.images, "runs": t.timing.runs, "median s": f"{t.timing.median_s:.3g}",
            "img/s (timed)": f"{r.img_per_s_timed:.3g}",
            "img/s (full budget)": f"{r.img_per_s_full:.3g}" + (" (extrapolated)" if r.extrapolated else ""),
            "ms / eval": f"{1000 * t.s_per_img / r.nfe_timed:.3g}",
            "ms / sampler eval": f"{1000 * r.sampler_s_per_eval:.3g}" if r.sampler_s_per_eval is not None else "-",
            "GFLOP/img (full)": f"{r.flops_full / 1e9:.4g}",
            "first call s": f"{t.timing.first_s:.3g}",
            f"peak MiB ({t.memory_kind})": f"{t.peak_mib:.0f}",
            "evaluations (full)": _fmt_cost(r.cost_full),
        })
    return pd.DataFrame(rows).to_markdown(index=False, tablefmt="simple", disable_numparse=True)
