"""What each process of the 2-process DDP training test runs (spawned by test_distributed.py).

Kept out of the test module so ``torch.multiprocessing.spawn`` children import only this."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from ood_bench.methods.training import TrainSpec, train

DATA_SEED = 7


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(DATA_SEED)
    return torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def exact_loss(net, batch, g):
    """No random draws: one process and W processes must follow the same trajectory."""
    x, y = batch
    return ((net(x) - y) ** 2).mean()


def noisy_loss(net, batch, g):
    """Input noise drawn from the per-rank generator: trajectories agree only approximately."""
    x, y = batch
    return ((net(x + 0.01 * torch.randn(x.shape, generator=g)) - y) ** 2).mean()


# batch 15 over 64 samples without drop_last: global batches 15,15,15,15,4 → rank slices 8/7
# and 2/2, so the loss weighting for unequal slices is exercised
EXACT = TrainSpec(epochs=4, batch_size=15, lr=5e-2, drop_last=False, grad_clip=1.0)
NOISY = TrainSpec(epochs=6, batch_size=16, lr=1e-2, ema_decay=0.9, checkpoint_every=2, keep_first_epoch=True)
CRASH_CALL = 4 * 4 + 2  # a loss_fn call in epoch 5, after the checkpoint written at epoch 4


class Interrupted(Exception):
    pass


def run(spec: TrainSpec, loss, work_dir: Path | None = None, crash_at: int | None = None):
    calls = {"n": 0}

    def fn(net, batch, g):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise Interrupted
        return loss(net, batch, g)

    return train(model(), data(), fn, spec, torch.device("cpu"), seed=3, work_dir=work_dir)


def state(res) -> dict:
    return {"model": {k: v.clone() for k, v in res.model.state_dict().items()}, "losses": res.epoch_losses}


def worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        out_dir = Path(out)
        exact = run(EXACT, exact_loss)
        full = run(NOISY, noisy_loss, out_dir / "full")
        try:
            run(NOISY, noisy_loss, out_dir / "crash", crash_at=CRASH_CALL)
        except Interrupted:
            pass
        ckpt_left = (out_dir / "crash" / "train_state.pt").is_file()
        dist.barrier()
        resumed = run(NOISY, noisy_loss, out_dir / "crash")
        if rank == 0:
            torch.save({"exact": state(exact), "full": state(full), "resumed": state(resumed),
                        "ckpt_left": ckpt_left, "ckpt_after": (out_dir / "crash" / "train_state.pt").exists()},
                       out_dir / "ddp.pt")
    finally:
        dist.destroy_process_group()
