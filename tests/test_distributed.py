"""torch.distributed: sharded scoring equals one process, DDP training equals one process's
global batch, and launcher environments map onto ranks and devices (CPU, gloo)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import ddp_worker
from helpers import MeanConfig, MeanImage
from ood_bench.api import load_dataset
from ood_bench.data.base import ShardDataset
from ood_bench.engine.process_group import launch_env, rank_device
from ood_bench.engine.sharding import concat, shard_bounds
from ood_bench.methods import METHODS
from ood_bench.methods.base import BatchOutput, RunContext
from ood_bench.methods.training import train
from ood_bench.utils.errors import ConfigError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NoisyMean(MeanImage):
    """The test detector plus a random draw per image, to check shard seeding."""

    def score_batch(self, x, generator):
        d = ((x - self.mean) ** 2).flatten(1).mean(1)
        return BatchOutput({"dist": d + torch.rand(len(x), generator=generator), "neg": -d})


@pytest.mark.parametrize("n,batch,world", [(40, 8, 2), (41, 8, 3), (5, 8, 2), (100, 7, 8), (3, 1, 4)])
def test_shards_are_whole_batches_covering_the_set(n, batch, world):
    bounds = shard_bounds(n, batch, world)
    assert len(bounds) == world and bounds[0][0] == 0 and bounds[-1][1] == n
    for (a, b), (c, _) in zip(bounds, bounds[1:]):
        assert b == c and a <= b and a % batch == 0
    sizes = [-(-(b - a) // batch) for a, b in bounds]  # batches per rank differ by at most one
    assert max(sizes) - min(sizes) <= 1 and sizes[0] >= 1  # rank 0 has batch 0 (the example picture)


def test_scoring_shards_and_concatenating_equals_scoring_the_set():
    ds = load_dataset("digits04", "test").take(45)
    m = NoisyMean(MeanConfig(), RunContext(device=torch.device("cpu"), batch_size=8, workers=0))
    m.fit(load_dataset("digits04", "train").take(30))
    whole = m.score(ds)
    for world in (2, 3, 7):
        parts = [m.score(ShardDataset(ds, a, b)) for a, b in shard_bounds(len(ds), 8, world) if b > a]
        joined = concat(parts)
        for k in whole.scores:
            np.testing.assert_array_equal(joined.scores[k], whole.scores[k])
    shard = ShardDataset(ds, 16, 24)
    assert shard.item_ids() == ds.item_ids()[16:24] and shard.batch_origin() == (ds.fingerprint(), 16)


def test_launch_environments_map_to_ranks_and_devices():
    assert launch_env({}) is None
    tr = launch_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"})
    assert (tr.rank, tr.world_size, tr.local_rank, tr.local_world_size, tr.launcher) == (3, 8, 1, 4, "torchrun")
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "5", "SLURM_NTASKS_PER_NODE": "8(x2)"}
    assert launch_env(slurm) is None  # inside an allocation without MASTER_ADDR: a plain run
    s = launch_env({**slurm, "MASTER_ADDR": "node1"})
    assert (s.rank, s.world_size, s.local_rank, s.local_world_size, s.launcher) == (5, 16, 5, 8, "slurm")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        launch_env({"RANK": "0", "WORLD_SIZE": "two"})
    assert rank_device("cpu", tr) == torch.device("cpu")


def test_ddp_training_matches_one_process_and_resumes(tmp_path):
    port = _free_port()
    torch.multiprocessing.spawn(ddp_worker.worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "ddp.pt", weights_only=False)
    one_exact = train(ddp_worker.model(), ddp_worker.data(), ddp_worker.exact_loss, ddp_worker.EXACT,
                      torch.device("cpu"), seed=3)
    # no random draws in the loss: the same trajectory up to float summation order
    assert got["exact"]["losses"] == pytest.approx(one_exact.epoch_losses, rel=1e-5)
    for k, v in one_exact.model.state_dict().items():
        torch.testing.assert_close(got["exact"]["model"][k], v, rtol=1e-4, atol=1e-5)
    # per-rank noise draws: the loss curve agrees within a small tolerance
    one_noisy = train(ddp_worker.model(), ddp_worker.data(), ddp_worker.noisy_loss, ddp_worker.NOISY,
                      torch.device("cpu"), seed=3)
    assert got["full"]["losses"] == pytest.approx(one_noisy.epoch_losses, rel=2e-2)
    # interrupted after a checkpoint, resumed on 2 processes: the uninterrupted result exactly
    assert got["ckpt_left"] and not got["ckpt_after"]
    assert got["resumed"]["losses"] == pytest.approx(got["full"]["losses"])
    for k, v in got["full"]["model"].items():
        torch.testing.assert_close(got["resumed"]["model"][k], v)


# Every registered method at toy sizes: 3 scoring batches per set (--limit 24, --batch-size 8), so
# the two ranks get 1 and 2 batches. The six ID-DDPM users get one identical tiny UNet recipe (one
# shared network, trained once per seed); the classifier users one identical tiny classifier.
_DDPM = ["lmd", "ddpm-ood", "msma", "diffpath", "diffusion-nll", "diffusion-ic"]
_CLF = ["diffood", "msp", "energy"]
RUN = ["-m", "ood_bench", "run", "--config", "embedded", "--ood", "digits59", "noise", "--limit", "24",
       "--train-limit", "80", "--batch-size", "8", "--bootstrap", "0", "--device", "cpu", "--quiet",
       "--cache-dir", "cache", "--set", "dlsr.image_size=32", "dlsr.width=32", "dlsr.blocks=1", "dlsr.epochs=2",
       "mahalanobis.image_size=32", "knn.image_size=32", "knn.k=5",
       *(f"{m}.{o}" for m in _DDPM for o in ("epochs=1", "base_channels=16")),
       *(f"{m}.{o}" for m in _CLF for o in ("classifier_epochs=1", "classifier_width=4", "classifier_size=32")),
       "lmd.steps=2", "lmd.reps=2", "lmd.distances=[mse,ssim]", "lmd.score=mse",
       "ddpm-ood.inference_steps=4", "ddpm-ood.start_skip=2", "msma.num_levels=3", "msma.gmm_components=[2]",
       "msma.cv_folds=2", "diffpath.num_steps=2", "diffpath.gmm_components=[2]", "diffpath.gmm_covariances=[diag]",
       "diffpath.cv_folds=2", "diffusion-nll.timesteps=2", "diffusion-ic.timesteps=2",
       "diffood.epochs=1", "diffood.base_channels=16", "diffood.stride=120", "diffood.repeats=1"]
BUILTIN = {n for n, cls in METHODS.items() if cls.__module__.startswith("ood_bench.")}  # not the tests' own
COST_COLUMNS = ["fit_s", "img_per_s", "peak_mem_mib"]  # each process's own timings and memory


def _run(args: list[str], cwd) -> None:
    # one thread per process in both runs, so CPU float reductions run the same way
    p = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]


def test_two_process_run_scores_every_method_as_one_process(tmp_path):
    _run([*RUN, "--out", "one"], tmp_path)  # fits and caches every model, scores on one process
    for f in [*(tmp_path / "cache").rglob("*.npz"), *(tmp_path / "cache").rglob("*.png")]:
        f.unlink()  # keep the models, score again: sharded this time
    # seed 0: cached models → straight to sharded scoring; seed 1: DDP fits, rank 0 caches them
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *RUN, "--seeds", "0", "1",
          "--out", "two"], tmp_path)
    one_scores, two_scores = (pd.read_csv(tmp_path / d / "scores.csv") for d in ("one", "two"))
    assert set(one_scores["method"]) == BUILTIN  # every registered method
    pd.testing.assert_frame_equal(two_scores[two_scores["seed"] == 0].reset_index(drop=True), one_scores)
    one_metrics, two_metrics = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("one", "two"))
    pd.testing.assert_frame_equal(
        two_metrics[two_metrics["seed"] == 0].reset_index(drop=True).drop(columns=COST_COLUMNS),
        one_metrics.drop(columns=COST_COLUMNS))
    seed1 = two_scores[two_scores["seed"] == 1]
    assert len(seed1) == len(one_scores) and seed1["score"].notna().all()
    man = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert man["distributed"]["world_size"] == 2 and man["distributed"]["backend"] == "gloo"
    assert not man["timings"]["dlsr/seed1"]["fit_cached"] and man["timings"]["dlsr/seed0"]["fit_cached"]
    assert len(list((tmp_path / "cache" / "dlsr").glob("*/model/fit.json"))) == 2
    assert not list((tmp_path / "cache").rglob("*.tmp")) and not list((tmp_path / "cache").rglob("*_state.pt"))
