"""A cache that heals: damaged or non-finite artefacts are moved aside and rebuilt; folder
replacement never leaves a moment without a folder; models from another machine are announced."""
import json
import threading

import numpy as np
import pandas as pd
import torch

from ood_bench.cli import main
from ood_bench.utils import atomic
from helpers import MeanImage

RUN = ["run", "--method", "test-mean", "--id", "digits", "--ood", "noise", "--limit", "30", "--bootstrap", "0",
       "--quiet", "--cache-dir", "cache"]


def _model_dir(root):
    (d,) = list((root / "cache" / "test-mean").glob("*/model"))
    return d


def _scores(path):
    return pd.read_csv(path / "scores.csv")


def test_damaged_cached_files_are_moved_aside_and_rebuilt(tmp_path, capsys):
    assert main([*RUN, "--out", "a"]) == 0
    reference = _scores(tmp_path / "a")
    model = _model_dir(tmp_path)
    damage = [
        lambda: (model / "mean.pt").write_bytes((model / "mean.pt").read_bytes()[:40]),     # truncated
        lambda: torch.save(torch.full((1, 8, 8), float("nan")), model / "mean.pt"),          # diverged
        lambda: (model / "fit.json").write_text("{\"seconds\": "),                           # cut JSON
    ]
    for i, spoil in enumerate(damage):
        spoil()
        fits = MeanImage.fits
        assert main([*RUN, "--out", f"b{i}"]) == 0, i
        assert MeanImage.fits == fits + 1, i  # rebuilt, not loaded
        err = capsys.readouterr().err
        assert "is damaged" in err and "moved to model.bad-" in err, i
        pd.testing.assert_frame_equal(_scores(tmp_path / f"b{i}"), reference)
        for bad in model.parent.glob("model.bad-*"):  # keep the next round's name free
            bad.rename(bad.with_name(bad.name + f"-{i}"))
    score_files = list((tmp_path / "cache").rglob("scores/*.npz"))
    for f in score_files:
        f.write_bytes(f.read_bytes()[:100])
    assert main([*RUN, "--out", "c"]) == 0
    assert "npz is damaged" in capsys.readouterr().err.replace(".npz is", "npz is")
    pd.testing.assert_frame_equal(_scores(tmp_path / "c"), reference)
    assert list((tmp_path / "cache").rglob("*.npz.bad-*"))


def test_nan_scores_in_the_cache_are_rescored(tmp_path, capsys):
    assert main([*RUN, "--out", "a"]) == 0
    f = next((tmp_path / "cache").rglob("scores/*.npz"))
    with np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["score_dist"] = np.full_like(arrays["score_dist"], np.nan)
    with open(f, "wb") as fh:
        np.savez(fh, **arrays)
    atomic.sidecar(f).write_text(atomic.sha256_file(f))  # as written: only the content check can tell
    assert main([*RUN, "--out", "b"]) == 0
    assert "non-finite" in capsys.readouterr().err
    pd.testing.assert_frame_equal(_scores(tmp_path / "b"), _scores(tmp_path / "a"))


def test_a_model_from_another_machine_type_is_reused_with_a_warning(tmp_path, capsys):
    assert main([*RUN, "--out", "a"]) == 0
    meta_file = _model_dir(tmp_path) / "fit.json"
    meta = json.loads(meta_file.read_text())
    assert {"cpu", "isa", "onednn", "torch", "device", "fingerprint"} <= set(meta["machine"])
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert man["machine"]["fingerprint"] == meta["machine"]["fingerprint"] and man["machine"]["isa"]
    capsys.readouterr()
    meta["machine"] = {**meta["machine"], "fingerprint": "other", "cpu": "Some Other CPU"}
    meta_file.write_text(json.dumps(meta))
    atomic.write_checksums(meta_file.parent)  # as a model cached on that machine would record them
    fits = MeanImage.fits
    assert main([*RUN, "--out", "b"]) == 0
    assert MeanImage.fits == fits  # reused ...
    assert "trained on another machine type" in capsys.readouterr().err  # ... but said so


def test_replacing_a_folder_never_leaves_a_moment_without_one(tmp_path):
    target = tmp_path / "model"
    with atomic.atomic_dir(target) as t:
        (t / "x").write_text("0")
    missing, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            if not (target / "x").is_file():
                missing.append(1)

    th = threading.Thread(target=reader)
    th.start()
    try:
        for i in range(300):
            with atomic.atomic_dir(target) as t:
                (t / "x").write_text(str(i))
    finally:
        stop.set()
        th.join()
    assert not missing and (target / "x").read_text() == "299"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left
