"""Fault catalogue: damage is found and healed, a failure keeps what was there.

- a flipped bit in a cached model, a cached score file or a training checkpoint: found by the
  SHA-256 recorded when it was written, set aside and rebuilt (same scores as before);
- a model folder cached before checksums were kept: checked by content, then its checksums recorded;
- a full disk (``OSError(ENOSPC)``) while writing the run: one ``error:`` line, exit 2, the
  manifest says ``failed`` with the reason;
- a re-run into the folder of a complete run that then fails: the earlier run is kept whole;
  one that succeeds replaces it.
"""
from __future__ import annotations

import errno
import json

import numpy as np
import pandas as pd
import pytest
import torch

from ood_bench.cli import main
from ood_bench.engine.cache import InvalidArtefact, validate_dir, validate_file
from ood_bench.methods.training import TrainSpec, train
from ood_bench.utils import atomic
from helpers import MeanImage

RUN = ["run", "--method", "test-mean", "--id", "digits", "--ood", "noise", "--limit", "30", "--bootstrap", "0",
       "--quiet", "--cache-dir", "cache"]


def _err(capsys, argv):
    capsys.readouterr()
    rc = main(argv)
    return rc, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def _flip_bit_in_tensor(file, tensor) -> None:
    """Flip the lowest mantissa bit of the tensor's first value inside ``file``: the file still
    loads and is finite, only a number changed."""
    data = bytearray(file.read_bytes())
    raw = tensor.contiguous().numpy().tobytes()
    at = data.find(raw[:16])
    assert at >= 0
    data[at] ^= 0x01
    file.write_bytes(bytes(data))


def _model_dir(root):
    (d,) = list((root / "cache" / "test-mean").glob("*/model"))
    return d


def test_a_flipped_bit_in_a_cached_model_is_found_and_healed(tmp_path, capsys):
    assert main([*RUN, "--out", "a"]) == 0
    reference = pd.read_csv(tmp_path / "a" / "scores.csv")
    model = _model_dir(tmp_path)
    sums = json.loads((model / "checksums.json").read_text())["files"]
    assert set(sums) == {"mean.pt", "fit.json"} and all(len(v) == 64 for v in sums.values())
    _flip_bit_in_tensor(model / "mean.pt", torch.load(model / "mean.pt", weights_only=True))
    assert torch.isfinite(torch.load(model / "mean.pt", weights_only=True)).all()  # content checks pass
    fits = MeanImage.fits
    rc, err = _err(capsys, [*RUN, "--out", "b"])
    assert rc == 0 and MeanImage.fits == fits + 1
    assert any("mean.pt does not match its SHA-256" in e and "moved to model.bad-" in e for e in err), err
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b" / "scores.csv"), reference)


def test_a_flipped_bit_in_cached_scores_is_found_and_rescored(tmp_path, capsys):
    assert main([*RUN, "--out", "a"]) == 0
    files = sorted((tmp_path / "cache").rglob("scores/*.npz"))
    assert files and all(atomic.sidecar(f).is_file() for f in files)
    f = files[0]
    with np.load(f) as z:
        first = next(z[k] for k in z.files if k.startswith("score_"))
    _flip_bit_in_tensor(f, torch.from_numpy(first))
    rc, err = _err(capsys, [*RUN, "--out", "b"])
    assert rc == 0 and any("does not match its SHA-256" in e for e in err), err
    assert list(f.parent.glob("*.npz.bad-*")) and list(f.parent.glob("*.npz.bad-*.sha256"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b" / "scores.csv"), pd.read_csv(tmp_path / "a" / "scores.csv"))


def test_a_flipped_bit_in_a_checkpoint_restarts_that_training(tmp_path, capsys):
    spec = TrainSpec(epochs=2, batch_size=4, lr=0.1, checkpoint_every=1)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    train(torch.nn.Linear(2, 1), (x,), lambda m, b, g: m(b[0]).pow(2).mean(), spec, torch.device("cpu"), seed=0,
          work_dir=tmp_path, checkpoint_name="n")
    done = tmp_path / "n.done.pt"
    assert atomic.sidecar(done).is_file()
    _flip_bit_in_tensor(done, torch.load(done, weights_only=True)["model"]["weight"])
    torch.manual_seed(0)
    train(torch.nn.Linear(2, 1), (x,), lambda m, b, g: m(b[0]).pow(2).mean(), spec, torch.device("cpu"), seed=0,
          work_dir=tmp_path, checkpoint_name="n")
    assert "n.done.pt is unreadable (ChecksumMismatch)" in capsys.readouterr().err
    assert atomic.verify_file(done)  # trained again and recorded anew


def test_checksums_catch_missing_and_foreign_files_and_legacy_folders_are_adopted(tmp_path):
    with atomic.atomic_dir(tmp_path / "m") as t:
        torch.save({"w": torch.ones(3)}, t / "w.pt")
        (t / "fit.json").write_text('{"seconds": 1}')
    m = tmp_path / "m"
    validate_dir(m)
    (m / "extra.bin").write_bytes(b"x")
    with pytest.raises(InvalidArtefact, match="extra.bin was not written with the folder"):
        validate_dir(m)
    (m / "extra.bin").unlink()
    (m / "w.pt").unlink()
    with pytest.raises(InvalidArtefact, match="w.pt is missing"):
        validate_dir(m)
    torch.save({"w": torch.ones(3)}, m / "w.pt")
    # validate_file alone (what a cache area that checks file by file calls) verifies the record too
    with atomic.atomic_dir(tmp_path / "n") as t:
        (t / "sub").mkdir()
        torch.save({"w": torch.ones(3)}, t / "sub" / "w.pt")
    n = tmp_path / "n"
    validate_file(n / "sub" / "w.pt")
    _flip_bit_in_tensor(n / "sub" / "w.pt", torch.ones(3))
    with pytest.raises(InvalidArtefact, match="sub/w.pt does not match its SHA-256"):
        validate_file(n / "sub" / "w.pt")
    (m / "checksums.json").unlink()  # a folder cached before checksums existed
    validate_dir(m)
    assert atomic.verify_dir(m)


# ------------------------------------------------------------------------------ failures
def _full_disk_on(name: str, monkeypatch) -> None:
    """Writing the run file ``name`` fails as on a full disk."""
    real = atomic.write_with

    def write_with(path, writer, *a, **k):
        if str(path).endswith(name):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, writer, *a, **k)

    monkeypatch.setattr(atomic, "write_with", write_with)


def test_a_full_disk_is_one_error_line_and_the_manifest_says_failed(tmp_path, capsys, monkeypatch):
    _full_disk_on("scores.csv", monkeypatch)
    rc, err = _err(capsys, [*RUN, "--out", "r"])
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: cannot write ") and "No space left on device" in err[0] and "free space" in err[0]
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert man["status"] == "failed" and "No space left on device" in man["error"]


def test_a_failed_rerun_keeps_the_complete_earlier_run(tmp_path, capsys, monkeypatch):
    assert main([*RUN, "--out", "r"]) == 0
    before = {p.relative_to(tmp_path / "r"): p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    with monkeypatch.context() as m:
        _full_disk_on("metrics.csv", m)
        rc, err = _err(capsys, [*RUN, "--out", "r", "--limit", "20"])
    assert rc == 2 and len(err) == 1 and "No space left" in err[0]
    after = {p.relative_to(tmp_path / "r"): p.read_bytes() for p in (tmp_path / "r").rglob("*")
             if p.is_file() and not p.relative_to(tmp_path / "r").parts[0].startswith(".next.")}
    assert after == before  # not one byte of the earlier run changed
    (stage,) = list((tmp_path / "r").glob(".next.*"))
    assert json.loads((stage / "manifest.json").read_text())["status"] == "failed"
    # a later run that succeeds replaces it, and clears the failed attempt
    assert main([*RUN, "--out", "r", "--limit", "20"]) == 0
    assert set(pd.read_csv(tmp_path / "r" / "metrics.csv")["n_ood"]) == {20}
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert man["status"] == "complete" and man["outputs"]["scores"] == "r/scores.csv"  # the final paths
    assert not list((tmp_path / "r").glob(".*"))
    assert ".next." not in (tmp_path / "r" / "leaderboard.csv").read_text()
