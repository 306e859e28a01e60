"""MSMA and DiffPath end to end: through the CLI with the ID DDPM and with a pretrained folder."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ood_bench.cli import main
from ood_bench.methods.unet import build_unet, ddpm_scheduler

# the embedded UNet recipe, smaller and shorter
TINY_UNET = ["image_size=8", "channels=1", "base_channels=16", "channel_mult=[1,2]", "layers_per_block=1",
             "attention_resolutions=[]", "dropout=0.0", "norm_groups=8", "epochs=2", "warmup_steps=5",
             "train_batch_size=32", "hflip=false"]
TINY = {
    "msma": ["gmm_components=[1,2]", "cv_folds=3"],
    "diffpath": ["native_size=8", "gmm_components=[1,2]", "gmm_covariances=[full,diag]", "cv_folds=3"],
}


def tiny_set(method: str, extra: list[str]) -> list[str]:
    return ["--set", *(f"{method}.{o}" for o in TINY_UNET + TINY[method] + extra)]


@pytest.fixture(scope="module")
def unet_folder(tmp_path_factory):
    """A tiny untrained diffusers UNet (8×8 gray) with its schedule, as save_pretrained writes them."""
    folder = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    build_unet(8, 1, 16, (1, 2), 1, (), 0.0, norm_num_groups=8).save_pretrained(folder / "unet")
    ddpm_scheduler().save_pretrained(folder / "scheduler")
    return folder


def run(tmp_path, name: str, method: str, extra: list[str]) -> tuple[pd.DataFrame, dict]:
    out = tmp_path / name
    rc = main(["run", "--method", method, "--id", "digits", "--ood", "noise", "--out", str(out),
               "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--limit", "20", "--train-limit", "60",
               "--bootstrap", "0", "--quiet", *tiny_set(method, extra)])
    assert rc == 0
    return pd.read_csv(out / "scores.csv"), json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize("method,subs,nfe", [
    ("msma", {"gmm_nll", "knn_dist", "norm_t396", "norm_t2"}, 10),
    ("diffpath", {"nll_6d", "nll_1d", "nll_rate", "stat_s1", "stat_s6"}, 10),
])
def test_cli_with_a_pretrained_folder_base_model(tmp_path, unet_folder, method, subs, nfe):
    scores, man = run(tmp_path, "a", method, [f"base_model={unet_folder}"])
    assert subs <= set(scores.columns) and len(scores) == 40
    assert np.isfinite(scores["score"]).all()
    timing = man["timings"][f"{method}/seed0"]
    assert timing["fit_report"]["base_model"] == str(unet_folder) and timing["fit_report"]["fit_images"] == 60
    assert (pd.read_csv(tmp_path / "a" / "metrics.csv")["nfe"] == nfe).all()
    again, man2 = run(tmp_path, "b", method, [f"base_model={unet_folder}"])  # loaded from the cache
    assert man2["timings"][f"{method}/seed0"]["fit_cached"]
    pd.testing.assert_series_equal(scores["score"], again["score"])
    # a new score option re-scores the cached fit
    other = "knn_dist" if method == "msma" else "nll_1d"
    rescored, _ = run(tmp_path, "c", method, [f"base_model={unet_folder}", f"score={other}"])
    assert np.allclose(rescored["score"], scores[other])


@pytest.mark.parametrize("method", ["msma", "diffpath"])
def test_cli_with_the_id_ddpm(tmp_path, method):
    scores, man = run(tmp_path, "a", method, ["num_levels=4" if method == "msma" else "num_steps=5"])
    assert np.isfinite(scores["score"]).all()
    rep = man["timings"][f"{method}/seed0"]["fit_report"]
    assert rep["base_model"] == "id" and rep["fit_images"] == 60
    assert (pd.read_csv(tmp_path / "a" / "metrics.csv")["nfe"] == (4 if method == "msma" else 5)).all()


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    for argv in (["--set", "msma.densities=[flow]"], ["--set", "diffpath.num_steps=7", "diffpath.diffusion_steps=10"],
                 ["--set", "msma.base_model=/no/such/folder"]):
        m = argv[1].split(".")[0]
        rc = main(["run", "--method", m, "--id", "digits", "--ood", "noise", "--out", str(tmp_path / "x"),
                   "--device", "cpu", "--quiet", *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err and err[-1].startswith("error:"), (argv, err)
