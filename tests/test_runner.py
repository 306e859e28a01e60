"""The runner and cache, with the tiny test detector of helpers.py."""
import json

import numpy as np
import pandas as pd
import pytest

from ood_bench.engine.cache import Cache
from ood_bench.engine.config import RunConfig
from ood_bench.utils.errors import ConfigError
from ood_bench.engine.runner import Runner, prepare
from helpers import MeanImage


def _cfg(**kw) -> RunConfig:
    base = dict(id="digits", ood=["noise", "textures"], ood_groups={"noise": "far", "textures": "far"},
                methods=["test-mean"], device="cpu", limit=60)
    base.update(kw)
    return RunConfig(**base)


def _run(cfg, tmp_path):
    runner = Runner(prepare(cfg), Cache(tmp_path / "cache"))
    return runner.run()


def test_id_scored_once_and_reused_for_every_ood_set(tmp_path):
    (r,) = _run(_cfg(), tmp_path)
    assert r.id.role == "id" and [o.name for o in r.ood] == ["noise", "textures"]
    assert len(r.id.batch) == 60 and r.cost == {"mean": 1.0} and r.images_per_second > 0


def test_rerun_reuses_model_and_scores(tmp_path):
    MeanImage.fits = 0
    (a,) = _run(_cfg(), tmp_path)
    (b,) = _run(_cfg(), tmp_path)
    assert MeanImage.fits == 1 and b.fit_cached and all(d.cached for d in b.all_scored)
    np.testing.assert_array_equal(a.ood[0].batch.canonical, b.ood[0].batch.canonical)
    assert b.fit_seconds == a.fit_seconds  # the recorded fit time travels with the cache


def test_score_option_rescores_without_refitting(tmp_path):
    MeanImage.fits = 0
    (a,) = _run(_cfg(), tmp_path)
    (b,) = _run(_cfg(method_options={"test-mean": {"shift": 1.0}}), tmp_path)
    assert MeanImage.fits == 1 and not any(d.cached for d in b.all_scored)
    np.testing.assert_allclose(b.id.batch.canonical, a.id.batch.canonical + 1.0)
    (c,) = _run(_cfg(method_options={"test-mean": {"size": 4}}), tmp_path)  # fit option → refit
    assert MeanImage.fits == 2 and not c.fit_cached


def test_seeds_and_datasets_change_the_keys(tmp_path):
    MeanImage.fits = 0
    _run(_cfg(seeds=[0, 1]), tmp_path)
    assert MeanImage.fits == 2


def test_label_needing_method_refused_before_any_work(tmp_path):
    MeanImage.fits = 0
    with pytest.raises(ConfigError, match="needs class labels.*textures is unlabelled"):
        _run(_cfg(id="textures", ood=["noise"], methods=["test-mean", "test-labelled"]), tmp_path)
    assert MeanImage.fits == 0


def test_bad_inputs_fail_in_prepare(tmp_path):
    with pytest.raises(ConfigError, match="unknown method"):
        prepare(_cfg(methods=["nope"]))
    with pytest.raises(ConfigError, match="cannot also be an OOD set"):
        prepare(_cfg(ood=["digits"]))
    with pytest.raises(ConfigError, match="unknown option"):
        prepare(_cfg(method_options={"test-mean": {"bogus": 1}}))
    with pytest.raises(ConfigError, match="unknown method"):
        prepare(_cfg(method_options={"dslr": {"t": 1}}))


def test_scores_cache_file_is_complete_npz(tmp_path):
    _run(_cfg(), tmp_path)
    files = list((tmp_path / "cache").rglob("*.npz"))
    assert len(files) == 3  # ID test + 2 OOD sets
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    with np.load(files[0]) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["primary"] == "dist" and "score_dist" in z.files and "score_neg" in z.files


def test_metrics_frame_has_rows_per_set_and_means(tmp_path):
    from ood_bench.reporting.tables import metrics_frame

    results = _run(_cfg(ood=["digits59", "noise"], ood_groups={"digits59": "near", "noise": "far"}), tmp_path)
    df = metrics_frame(results, "digits")
    assert set(df["entry"]) == {"test-mean", "test-mean[neg]"}
    main = df[df["entry"] == "test-mean"]
    assert list(main["ood"]) == ["digits59", "noise", "mean(near)", "mean(far)", "mean"]
    row = main.set_index("ood")
    assert row.at["mean", "auroc"] == pytest.approx((row.at["digits59", "auroc"] + row.at["noise", "auroc"]) / 2)
    neg = df[df["entry"] == "test-mean[neg]"].set_index("ood")
    assert neg.at["noise", "auroc"] == pytest.approx(1 - row.at["noise", "auroc"])
    assert isinstance(df, pd.DataFrame) and df["fpr95"].between(0, 1).all()


def test_atomic_writes_leave_no_temp_files_and_normal_permissions(tmp_path):
    import os

    from ood_bench.utils import atomic

    target = tmp_path / "t.txt"
    atomic.write_text(target, "a")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "a" and os.listdir(tmp_path) == ["t.txt"]
    assert target.stat().st_mode & 0o777 == atomic.FILE_MODE
