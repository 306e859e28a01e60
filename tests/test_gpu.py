"""What only a GPU can check (``pytest -m gpu``; skipped without CUDA): nccl under torchrun,
a CUDA-trained (channels_last, bf16) UNet saved and reloaded, every method end to end on CUDA
with ``--compile auto`` (inductor) and ``graphs`` (CUDA graphs), and the fast path's drift
against true fp32 on the embedded benchmark (one fitted model per method scored both ways).

Ordered by value: ``.ci/gpu-check`` gives this file a time limit, and ``-v`` logs each result
as it comes. With ``GPU_CHECK_OUT`` set, the drift table is also written there."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import TINY_LIMITS, TINY_METHODS, TINY_SETS

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run by .ci/gpu-check)")]


def test_torchrun_one_process_fits_and_scores_on_nccl(tmp_path):
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
            "-m", "ood_bench", "run", "--method", "lmd", "knn", "--device", "cuda", *TINY_LIMITS,
            "--ood", "noise", "--cache-dir", "cache", "--out", "run", "--quiet", "--set", *TINY_SETS]
    p = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["status"] == "complete"
    assert man["distributed"]["backend"] == "nccl" and man["distributed"]["world_size"] == 1
    assert np.isfinite(pd.read_csv(tmp_path / "run" / "metrics.csv")["auroc"]).all()


def test_a_cuda_trained_unet_saves_and_reloads_equal(tmp_path):
    from diffusers import UNet2DModel

    from ood_bench.methods.unet import PixelDiffusionConfig, train_unet
    from ood_bench.utils.device import numerics

    c = PixelDiffusionConfig(image_size=8, channels=1, base_channels=16, channel_mult=(1, 2), layers_per_block=1,
                             attention_resolutions=(), norm_groups=8, epochs=1, train_batch_size=8, warmup_steps=1)
    x = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    with numerics("auto", "auto"):  # CUDA's default: bf16 autocast, channels_last training
        res = train_unet(c, x, torch.device("cuda"), 0, None, desc="gpu test unet")
    res.model.save_pretrained(tmp_path / "unet")  # safetensors: refuses non-contiguous tensors
    back = UNet2DModel.from_pretrained(tmp_path / "unet", low_cpu_mem_usage=False).cuda().eval()
    for k, v in res.model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    xt, t = torch.randn(4, 1, 8, 8, device="cuda"), torch.tensor([1, 10, 100, 999], device="cuda")
    with torch.no_grad():
        assert torch.equal(back(xt, t).sample, res.model(xt, t).sample)


def _run_all_methods(tmp_path: Path, compile: str) -> pd.DataFrame:
    from ood_bench.cli import main

    out = tmp_path / f"run-{compile}"
    assert main(["run", "--method", *TINY_METHODS, "--device", "cuda", "--compile", compile, *TINY_LIMITS,
                 "--ood", "digits59", "noise", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                 "--quiet", "--set", *TINY_SETS]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete"
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["method"]) == set(TINY_METHODS) and np.isfinite(metrics["auroc"]).all()
    return metrics


def test_every_method_end_to_end_on_cuda_compiled(tmp_path):
    _run_all_methods(tmp_path, "auto")  # inductor, eager fallback allowed


def test_fast_path_drift_on_the_embedded_benchmark(tmp_path):
    # One fitted model per method (trained eagerly to save compile time), scored with the fast
    # path (bf16, channels_last, on-device resize, inductor) and with true fp32 (TF32 off).
    from ood_bench.api import build_config, drift

    out = Path(os.environ.get("GPU_CHECK_OUT") or tmp_path) / "drift"
    cfg = build_config("embedded", device="cuda", compile="off", cache_dir=str(tmp_path / "cache"), out=str(out))
    frame, text = drift(cfg, show_progress=False, fast_compile="auto")
    print(text)
    ood = frame[frame.role == "ood"]
    assert np.isfinite(ood.diff_points).all()
    assert ood.diff_points.abs().max() <= 0.1, text  # the target: within 0.1 AUROC point


def test_every_method_end_to_end_on_cuda_graphs(tmp_path):
    # CUDA graphs reuse output memory: a network output kept across calls must be a copy
    _run_all_methods(tmp_path, "graphs")
