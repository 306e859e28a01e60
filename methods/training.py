"""One training loop for every network the methods train (LFDN, UNets, the classifier).

It owns what is the same everywhere: shuffling in-memory tensors into batches, the optimiser
(AdamW or SGD), linear warmup and an optional cosine decay, gradient clipping, EMA (diffusers
``EMAModel``), bf16 autocast on GPU, a progress bar, and checkpoints every few epochs that an
interrupted run resumes from. What differs — the loss — comes in as ``loss_fn``.

Randomness is derived from (seed, epoch), so a resumed training equals an uninterrupted one;
:func:`seed_network` seeds the global generator right before a network is built, so its initial
weights do not depend on what ran before (a resumed fit skips work that draws random numbers).
A finished network is saved at once (``<name>.done.pt``), so an interrupted fit of several
networks (DiffOOD: classifier, then UNet) never retrains one that finished. Each checkpoint
carries the training seconds spent so far; :func:`resumed_seconds` adds them up, so the fit time
of a resumed fit is that of the whole fit, not of its last segment.

Determinism on CPU: training runs with a fixed number of intra-op threads (:data:`TRAIN_THREADS`),
because the thread count changes how conv/BatchNorm reductions are split and so the last bits
of gradients, which many epochs of SGD amplify. Same machine + same command = same weights,
whatever ``torch.get_num_threads()`` the user has. A non-finite loss stops training with a
one-line :class:`~ood_bench.utils.errors.TrainingDivergedError`; nothing is cached.

Under ``torchrun`` (a process group of W > 1 ranks, :mod:`ood_bench.utils.distributed`) the
model is wrapped in ``DistributedDataParallel``: every rank draws the same seeded permutation,
takes its slice of each global batch of ``batch_size`` (so the global batch, step count and lr
schedule are those of one process), and weights its loss so that DDP's gradient average is the
gradient of the global batch mean. What differs from one process: ``loss_fn``'s own draws
(noise, timesteps, flips) come from a per-rank generator, and BatchNorm statistics are per
rank on CPU (converted to ``SyncBatchNorm`` on CUDA). Rank 0 alone writes checkpoints; every
rank resumes from them.
"""
from __future__ import annotations

import logging
import contextlib
import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ood_bench.utils import atomic
from ood_bench.utils import distributed as dist
from ood_bench.utils.device import autocast, fast_path
from ood_bench.utils.errors import TrainingDivergedError
from ood_bench.utils.progress import log, progress

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers.training_utils import EMAModel

# Intra-op threads while training on CPU. One thread is the only count every machine has, and
# it makes every reduction's order fixed; see docs/reproducibility.md for its cost.
TRAIN_THREADS = 1
SECONDS_LEDGER = "resumed_seconds.json"

LossFn = Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Generator], torch.Tensor]


@dataclass
class TrainSpec:
    """Optimisation settings. ``warmup_steps`` ramps the lr linearly from 0; ``schedule`` is
    ``"constant"`` or ``"cosine"`` (to 0 at the last step); ``ema_decay=None`` disables EMA."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    momentum: float = 0.9
    nesterov: bool = False
    warmup_steps: int = 0
    schedule: str = "constant"
    grad_clip: float | None = None
    ema_decay: float | None = None
    checkpoint_every: int = 10
    keep_first_epoch: bool = False
    drop_last: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class TrainResult:
    """The trained model (EMA weights when EMA is on), the EMA weights after the first epoch
    (when asked for), and the mean loss of every epoch."""

    model: nn.Module
    first_epoch_state: dict[str, torch.Tensor] | None
    epoch_losses: list[float]


def seed_network(seed: int, name: str) -> None:
    """Seed torch's global generator from (``seed``, ``name``): call right before building a
    network, so its initial weights are the same in a fresh and in a resumed fit."""
    import hashlib

    torch.manual_seed(int(hashlib.sha1(f"{seed}/{name}".encode()).hexdigest()[:15], 16))


@contextlib.contextmanager
def fixed_threads(device: torch.device) -> Iterator[None]:
    """Train with :data:`TRAIN_THREADS` intra-op threads on CPU (restored afterwards)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resumed_seconds(work_dir: Path | None) -> float:
    """Training seconds that checkpoints restored in ``work_dir`` had already cost (0 when none)."""
    ledger = work_dir / SECONDS_LEDGER if work_dir is not None else None
    if ledger is None or not ledger.is_file():
        return 0.0
    try:
        return float(sum(json.loads(ledger.read_text()).values()))
    except (ValueError, TypeError, AttributeError):
        return 0.0  # a damaged ledger only costs the fit-time figure, never the fit


def _credit(work_dir: Path, name: str, seconds: float) -> None:
    ledger = work_dir / SECONDS_LEDGER
    try:
        entries = json.loads(ledger.read_text()) if ledger.is_file() else {}
    except ValueError:
        entries = {}
    entries[name] = seconds  # keyed by network: a second resume replaces, never adds twice
    atomic.write_json(ledger, entries)


def _load_state(path: Path, device: torch.device, desc: str) -> dict | None:
    """A checkpoint, or ``None`` (moved aside with a warning) when it cannot be read."""
    try:
        atomic.verify_file(path)  # the SHA-256 recorded when it was written: a flipped bit is damage
        return torch.load(path, map_location=device, weights_only=True)  # never unpickles code
    except Exception as e:  # truncated, altered or foreign file: train that part again
        bad = path.with_name(path.name + ".bad")
        path.replace(bad)
        atomic.sidecar(path).unlink(missing_ok=True)
        log(f"warning: {desc}: checkpoint {path} is unreadable ({type(e).__name__}); moved to {bad.name}, "
            f"training again", level=logging.WARNING)
        return None


def _lr_factor(step: int, total: int, spec: TrainSpec) -> float:
    f = 1.0
    if spec.warmup_steps > 0:
        f = min(1.0, (step + 1) / spec.warmup_steps)
    if spec.schedule == "cosine":
        f *= 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))
    return f


def _make_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay, nesterov=spec.nesterov)
    raise ValueError(f"unknown optimizer {spec.optimizer!r}")


def _ema_weights(model: nn.Module, ema: EMAModel | None) -> nn.Module:
    """A copy of ``model`` with the EMA weights, in the standard (contiguous) layout: a network
    trained channels_last keeps those strides through ``deepcopy``, and safetensors (diffusers'
    ``save_pretrained`` before 0.33) refuses a non-contiguous tensor."""
    out = copy.deepcopy(model)
    if ema is not None:
        ema.copy_to(out.parameters())
    return out.to(memory_format=torch.contiguous_format).eval()


def _host_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state on the CPU, every tensor contiguous (cloned: later training leaves it)."""
    return {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}


def train(
    model: nn.Module,
    tensors: tuple[torch.Tensor, ...],
    loss_fn: LossFn,
    spec: TrainSpec,
    device: torch.device,
    seed: int,
    work_dir: Path | None = None,
    desc: str = "training",
    checkpoint_name: str = "train_state",
    compile: str | None = None,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train ``model`` on in-memory ``tensors`` (CPU, first dim = samples).

    Each step calls ``loss_fn(model, batch, generator)`` with the batch tensors on ``device``.
    With ``work_dir``, a checkpoint ``<checkpoint_name>.pt`` is written every ``checkpoint_every``
    epochs and the finished network as ``<checkpoint_name>.done.pt``; the next call with the same
    ``work_dir`` and name resumes from the first or returns the second without training.

    Fast path: bf16 autocast (``--precision``) and channels_last weights (``--fast-path``),
    ``torch.compile`` of the network ``loss_fn`` calls with the backend named by ``compile``
    (``None``: eager; ``model`` itself stays
    uncompiled, so EMA, checkpoints and state_dict keys are unchanged), and no host
    synchronisation per step: the epoch's loss is summed on the device in float64 (the same
    values as a per-step ``float(loss)``) and read once per epoch.

    The returned networks (and the first-epoch state) are in the standard memory layout, so they
    save with safetensors whatever layout training used. ``on_step(step)`` is called after every
    optimiser step (0-based, counted over the whole training), e.g. to time steady-state steps.

    Raises:
        TrainingDivergedError: an epoch's loss is NaN or infinite.
    """
    with fixed_threads(device):
        return _train(model, tensors, loss_fn, spec, device, seed, work_dir, desc, checkpoint_name, compile,
                      on_step)


def _train(model: nn.Module, tensors: tuple[torch.Tensor, ...], loss_fn: LossFn, spec: TrainSpec,
           device: torch.device, seed: int, work_dir: Path | None, desc: str, checkpoint_name: str,
           compile: str | None = None, on_step: Callable[[int], None] | None = None) -> TrainResult:
    n = len(tensors[0])
    steps_per_epoch = n // spec.batch_size if spec.drop_last else math.ceil(n / spec.batch_size)
    if steps_per_epoch == 0:
        steps_per_epoch, drop_last = 1, False  # fewer samples than a batch: one partial batch
    else:
        drop_last = spec.drop_last
    total = steps_per_epoch * spec.epochs
    world, rank = dist.world_size(), dist.rank()
    if world > 1 and min(n, spec.batch_size) < world:
        raise ValueError(f"{desc}: a global batch of {min(n, spec.batch_size)} cannot be split over {world} ranks")

    model.to(device).train()
    if fast_path(device):  # NHWC convolutions: what tensor cores want
        model.to(memory_format=torch.channels_last)
    if world > 1 and device.type == "cuda":  # BatchNorm over the global batch, as one process
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    opt = _make_optimizer(model, spec)
    from diffusers.training_utils import EMAModel
    ema = EMAModel(model.parameters(), decay=spec.ema_decay) if spec.ema_decay else None
    first_state: dict[str, torch.Tensor] | None = None
    losses: list[float] = []
    start_epoch = 0
    spent = 0.0  # training seconds of this network before this call (restored checkpoints)
    ckpt = work_dir / f"{checkpoint_name}.pt" if work_dir is not None else None
    done_file = work_dir / f"{checkpoint_name}.done.pt" if work_dir is not None else None
    if done_file is not None and done_file.is_file():
        state = _load_state(done_file, device, desc)
        if state is not None:
            model.load_state_dict(state["model"])
            _credit(work_dir, checkpoint_name, state["seconds"])
            log(f"{desc}: finished in an earlier run; loaded {done_file}")
            return TrainResult(model.to(memory_format=torch.contiguous_format).eval(), state["first"], state["losses"])
    if ckpt is not None and ckpt.is_file():
        state = _load_state(ckpt, device, desc)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            first_state, losses, start_epoch = state["first"], state["losses"], state["epoch"]
            spent = state.get("seconds", 0.0)
            _credit(work_dir, checkpoint_name, spent)
            log(f"{desc}: resuming from epoch {start_epoch} ({ckpt})")
    t0 = time.perf_counter()
    # the network loss_fn calls: DDP averages gradients over ranks in backward (and broadcasts
    # rank 0's weights once, which equal everyone's after the same init or checkpoint)
    net = model if world == 1 else DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        net = torch.compile(net, backend=compile)  # shares model's parameters

    def save_checkpoint(epoch: int) -> None:
        state = {"model": model.state_dict(), "opt": opt.state_dict(),
                 "ema": ema.state_dict() if ema is not None else None,
                 "first": first_state, "losses": losses, "epoch": epoch,
                 "seconds": spent + time.perf_counter() - t0}
        atomic.write_with(ckpt, lambda p: torch.save(state, p), checksum=True)

    bar = progress(range(start_epoch, spec.epochs), desc, unit="epoch")
    for epoch in bar:
        g_cpu = torch.Generator().manual_seed(seed * 100_003 + epoch)
        g_dev = torch.Generator(device=device).manual_seed(seed * 100_003 + epoch + rank * 2**40)
        perm = torch.randperm(n, generator=g_cpu)
        total_loss, count = torch.zeros((), dtype=torch.float64, device=device), 0
        for b in range(steps_per_epoch):
            idx = perm[b * spec.batch_size:(b + 1) * spec.batch_size]
            if drop_last and len(idx) < spec.batch_size:
                break
            mine = idx.tensor_split(world)[rank] if world > 1 else idx
            batch = tuple(t[mine].to(device, non_blocking=True) for t in tensors)
            step = epoch * steps_per_epoch + b
            for group in opt.param_groups:
                group["lr"] = spec.lr * _lr_factor(step, total, spec)
            with autocast(device):
                loss = loss_fn(net, batch, g_dev)
            opt.zero_grad(set_to_none=True)
            # DDP averages over ranks; weighting by slice size makes that the global batch mean
            (loss * (len(mine) * world / len(idx)) if world > 1 else loss).backward()
            if spec.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            opt.step()
            if ema is not None:
                ema.step(model.parameters())
            total_loss += loss.detach().double() * len(mine)  # no host sync per step
            count += len(mine)
            if on_step is not None:
                on_step(step)
        epoch_loss = float(total_loss)
        if world > 1:  # the epoch's mean loss over the global batches
            epoch_loss, count = dist.all_reduce_sum([epoch_loss, count], device)
        losses.append(epoch_loss / max(count, 1))
        if not math.isfinite(losses[-1]):
            # the weights are NaN now; caching them would make every later run fail on them
            raise TrainingDivergedError(
                f"{desc}: the training loss became {losses[-1]} in epoch {epoch + 1}; nothing was cached. "
                f"Lower the learning rate (--set METHOD.lr=...) or enable gradient clipping")
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if epoch == 0 and spec.keep_first_epoch:
            first_state = _host_state(_ema_weights(model, ema))
        done = epoch + 1
        if ckpt is not None and dist.is_main() and (done % spec.checkpoint_every == 0) and done < spec.epochs:
            save_checkpoint(done)
    final = _ema_weights(model, ema)
    if done_file is not None and dist.is_main():
        # saved before the caller goes on to its next network, so an interruption there keeps it
        state = {"model": final.state_dict(), "first": first_state, "losses": losses,
                 "seconds": spent + time.perf_counter() - t0}
        atomic.write_with(done_file, lambda p: torch.save(state, p), checksum=True)
        ckpt.unlink(missing_ok=True)
        atomic.sidecar(ckpt).unlink(missing_ok=True)
    return TrainResult(final, first_state, losses)
