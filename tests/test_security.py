"""Security catalogue: nothing the tool reads runs code, and no user string escapes its format.

- a pickle with a code payload planted in the cache (a cached model), in a training checkpoint,
  or handed over as user weights (``classifier_path``): cache and checkpoint are set aside and
  rebuilt, user weights refused in one ``error:`` line; the payload never runs;
- a lint over the package sources refuses every unsafe deserialiser;
- the ``--out`` path (newline included) cannot end a LaTeX/CSV comment or inject HTML/Markdown;
- a ``plots`` symlink inside ``--out`` is neither followed nor removed through.
"""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from ood_bench.cli import main
from ood_bench.methods.training import TrainSpec, train
from ood_bench.utils import atomic
from helpers import MeanImage

ROOT = Path(__file__).resolve().parents[1]
RUN = ["run", "--method", "test-mean", "--id", "digits", "--ood", "noise", "--limit", "30", "--bootstrap", "0",
       "--quiet", "--cache-dir", "cache"]
MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / f"ood_bench_pwned_{os.getpid()}"


class _Payload:
    """Unpickling this creates :data:`MARKER` (what an attacker's ``os.system`` would do)."""

    def __reduce__(self):
        return (Path.touch, (MARKER,))


def _plant(path: Path, wrap: bool = True) -> None:
    """A ``.pt`` file whose unpickling would run the payload."""
    obj = {"mean": torch.zeros(1, 8, 8), "evil": _Payload()} if wrap else _Payload()
    torch.save(obj, path)


@pytest.fixture(autouse=True)
def _no_marker():
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "a planted pickle payload ran"


def _err(capsys, argv):
    capsys.readouterr()
    rc = main(argv)
    return rc, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_a_planted_pickle_in_a_cached_model_is_set_aside_and_rebuilt(tmp_path, capsys):
    assert main([*RUN, "--out", "a"]) == 0
    reference = pd.read_csv(tmp_path / "a" / "scores.csv")
    (model,) = list((tmp_path / "cache" / "test-mean").glob("*/model"))
    _plant(model / "mean.pt")
    (model / "checksums.json").unlink()  # as if cached before checksums: only the reader stands guard
    fits = MeanImage.fits
    rc, err = _err(capsys, [*RUN, "--out", "b"])
    assert rc == 0 and MeanImage.fits == fits + 1  # rebuilt, not loaded
    assert any("is damaged" in e and "moved to model.bad-" in e for e in err)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b" / "scores.csv"), reference)


def test_a_planted_pickle_in_a_cached_score_file_is_set_aside_and_rescored(tmp_path, capsys):
    import numpy as np

    assert main([*RUN, "--out", "a"]) == 0
    for f in (tmp_path / "cache").rglob("scores/*.npz"):
        with np.load(f) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["score_dist"] = np.array([_Payload()], dtype=object)  # an object array: pickled
        with open(f, "wb") as fh:
            np.savez(fh, **arrays)
        atomic.sidecar(f).unlink(missing_ok=True)  # as if cached before checksums: only the reader stands guard
    rc, err = _err(capsys, [*RUN, "--out", "b"])
    assert rc == 0 and any("is damaged" in e for e in err)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b" / "scores.csv"), pd.read_csv(tmp_path / "a" / "scores.csv"))


def test_a_planted_pickle_checkpoint_is_set_aside_and_training_starts_again(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    _plant(work / "net.pt")
    _plant(work / "net.done.pt")
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    spec = TrainSpec(epochs=2, batch_size=4, lr=0.1, checkpoint_every=1)
    res = train(model, (torch.randn(8, 2),), lambda m, b, g: m(b[0]).pow(2).mean(), spec, torch.device("cpu"),
                seed=0, work_dir=work, desc="t", checkpoint_name="net")
    assert len(res.epoch_losses) == 2  # trained from scratch
    assert (work / "net.done.pt.bad").exists() and (work / "net.pt.bad").exists()
    assert "unreadable" in capsys.readouterr().err
    # the checkpoints the loop writes itself load under weights_only=True (resume works)
    state = torch.load(work / "net.done.pt", weights_only=True)
    assert set(state) >= {"model", "losses", "seconds"}


def test_checkpoints_with_optimizer_and_ema_state_resume_under_weights_only(tmp_path):
    spec = TrainSpec(epochs=3, batch_size=4, lr=0.1, checkpoint_every=1, ema_decay=0.9, optimizer="sgd",
                     momentum=0.9, nesterov=True)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    calls = {"n": 0}

    def loss(m, b, g):
        calls["n"] += 1
        if calls["n"] == 5:  # in epoch 3 (2 steps per epoch): a kill after the epoch-2 checkpoint
            raise KeyboardInterrupt
        return m(b[0]).pow(2).mean()

    torch.manual_seed(0)
    full = train(torch.nn.Linear(2, 1), (x,), lambda m, b, g: m(b[0]).pow(2).mean(), spec, torch.device("cpu"), seed=0)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(torch.nn.Linear(2, 1), (x,), loss, spec, torch.device("cpu"), seed=0, work_dir=tmp_path, checkpoint_name="s")
    state = torch.load(tmp_path / "s.pt", weights_only=True)  # model, SGD and EMA state: plain containers
    assert state["epoch"] == 2 and state["ema"] is not None
    torch.manual_seed(0)
    resumed = train(torch.nn.Linear(2, 1), (x,), loss, spec, torch.device("cpu"), seed=0, work_dir=tmp_path,
                    checkpoint_name="s")
    torch.testing.assert_close(resumed.model.state_dict(), full.model.state_dict())


def test_user_weights_with_a_pickle_payload_are_refused_in_one_line(tmp_path, capsys):
    _plant(tmp_path / "evil.pt", wrap=False)
    rc, err = _err(capsys, ["run", "--method", "msp", "--id", "digits04", "--ood", "noise", "--limit", "10",
                            "--train-limit", "40", "--bootstrap", "0", "--quiet", "--cache-dir", "c", "--out", "m",
                            "--set", "msp.classifier_width=4", "msp.image_size=8", "msp.channels=1",
                            "msp.classifier_size=8", f"msp.classifier_path={tmp_path / 'evil.pt'}"])
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: classifier_path") and "not a plain weights file" in err[0]
    assert "could run code" in err[0]


# ------------------------------------------------------------------------------ lint
SOURCES = [p for d in ("benchmark", "methods", "data", "configs") for p in (ROOT / d).rglob("*.py")]


def unsafe_loads(source: str) -> list[str]:
    """Every call in ``source`` that could unpickle (run) code from a file."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
        line = f"line {node.lineno}: {ast.unparse(node)[:80]}"
        if name in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "joblib.load", "pd.read_pickle",
                    "pandas.read_pickle", "torch.serialization.load", "marshal.load", "shelve.open"):
            found.append(line)
        elif name.endswith("torch.load") and kw.get("weights_only") != "True":
            found.append(line)  # weights_only=False, or left to the torch version's default
        elif name in ("np.load", "numpy.load") and kw.get("allow_pickle", "False") != "False":
            found.append(line)
        elif name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
            if not re.search(r"SafeLoader|safe_load|Safe", kw.get("Loader", "")):
                found.append(line)
    return found


def test_lint_finds_each_unsafe_loader():
    bad = "\n".join(["torch.load(f, weights_only=False)", "torch.load(f)", "pickle.load(fh)",
                     "np.load(f, allow_pickle=True)", "yaml.load(text)", "yaml.load(text, Loader=yaml.Loader)"])
    assert len(unsafe_loads(bad)) == 6
    good = "\n".join(["torch.load(f, map_location='cpu', weights_only=True)", "np.load(f, allow_pickle=False)",
                      "np.load(f)", "yaml.safe_load(t)", "yaml.load(t, Loader=UniqueKeySafeLoader)"])
    assert unsafe_loads(good) == []


# Pickle between processes the run itself started (no file is read): the figure worker's pipes.
# Exactly these calls; any other unpickling in these files is still refused.
PROCESS_PIPES = {"benchmark/reporting/plot_pool.py": {"pickle.load(inp)", "pickle.load(proc.stdout)"}}


def test_no_source_file_unpickles():
    assert len(SOURCES) > 40
    problems = {str(p.relative_to(ROOT)): unsafe_loads(p.read_text()) for p in SOURCES}
    problems = {k: [c for c in v if c.split(": ", 1)[1] not in PROCESS_PIPES.get(k, set())] for k, v in problems.items()}
    assert {k: v for k, v in problems.items() if v} == {}
    assert not any("weights_only=False" in p.read_text() for p in SOURCES)


# ------------------------------------------------------------------------------ escaping
def test_a_newline_in_the_out_path_cannot_inject_latex_or_html(tmp_path):
    out = "r\n\\input{/etc/passwd}<script>x</script>"
    assert main([*RUN, "--out", out]) == 0
    run = tmp_path / out
    tex = (run / "leaderboard.tex").read_text()
    assert not any(line.startswith("\\input") for line in tex.splitlines())
    comments = [line for line in tex.splitlines() if "passwd" in line]
    assert comments and all(line.startswith("%") for line in comments)
    csv = (run / "leaderboard.csv").read_text().splitlines()
    assert all(line.startswith("#") for line in csv if "passwd" in line)
    md = (run / "leaderboard.md").read_text() + (run / "per_set.md").read_text()
    assert "<script>" not in md and "<script>" not in (run / "report.html").read_text()
    pd.read_csv(run / "metrics.csv")  # parses


def test_a_plots_symlink_inside_out_is_not_followed(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "plots").symlink_to(target, target_is_directory=True)
    assert main([*RUN, "--out", "r"]) == 0  # a fresh folder: claimed in place
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (tmp_path / "r" / "plots").is_dir() and not (tmp_path / "r" / "plots").is_symlink()
    # and over a complete run (written beside, then swapped in)
    (tmp_path / "r" / "plots").rename(tmp_path / "old_plots")
    (tmp_path / "r" / "plots").symlink_to(target, target_is_directory=True)
    (tmp_path / "r" / "scores.csv").unlink()
    (tmp_path / "r" / "scores.csv").symlink_to(target / "keep.txt")
    assert main([*RUN, "--out", "r"]) == 0
    assert [p.name for p in target.iterdir()] == ["keep.txt"] and (target / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "r" / "plots").is_symlink() and not (tmp_path / "r" / "scores.csv").is_symlink()
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "complete"
