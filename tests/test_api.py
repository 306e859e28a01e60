"""The Python API: the README's example runs, and it writes what the CLI writes."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ood_bench
from ood_bench.cli import main
from ood_bench.utils.errors import ConfigError
from readme_examples import readme_example


def test_readme_api_example_runs_and_matches_the_cli(tmp_path, capsys):
    namespace: dict = {}
    exec(compile(readme_example("api"), "README.md:api", "exec"), namespace)
    res = namespace["res"]
    board = res.leaderboard
    assert {"pixel-mahalanobis", "knn"} <= set(board.index)
    assert board.loc["knn", "textures"] > 90  # far OOD in DLSR's feature space
    assert set(res.scores["method"]) == {"pixel-mahalanobis", "knn"}
    assert np.isfinite(res.metrics["auroc"]).all()
    assert namespace["textures"].mean() > namespace["digits"].mean()  # the detector alone works

    # the CLI with the same settings writes the same files and the same numbers
    rc = main(["run", "--method", "pixel-mahalanobis", "knn", "--id", "digits04", "--near", "digits59", "--far",
               "textures", "noise", "--bootstrap", "100", "--out", "cli", "--quiet"])
    assert rc == 0
    api_dir, cli_dir = tmp_path / "results" / "api-demo", tmp_path / "cli"
    listing = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert listing(api_dir) == listing(cli_dir)
    a, c = pd.read_csv(api_dir / "metrics.csv"), pd.read_csv(cli_dir / "metrics.csv")
    cols = ["entry", "ood", "auroc", "fpr95", "aupr_in", "aupr_out"]
    pd.testing.assert_frame_equal(a[cols], c[cols])
    pd.testing.assert_series_equal(pd.read_csv(api_dir / "scores.csv")["score"],
                                   pd.read_csv(cli_dir / "scores.csv")["score"])


def test_create_method_fits_the_model_a_run_fits(tmp_path):
    opts = {"image_size": 8, "channels": 1}
    m = ood_bench.create_method("pixel-mahalanobis", device="cpu", **opts)
    m.fit(ood_bench.load_dataset("digits04", "train"))
    alone = m.score(ood_bench.load_dataset("noise")).canonical
    res = ood_bench.run(id="digits04", ood=["noise"], methods={"pixel-mahalanobis": opts}, device="cpu",
                        bootstrap=0, progress=False)
    in_run = res.scores.query("dataset == 'noise'")["score"].to_numpy()
    np.testing.assert_allclose(alone, in_run, rtol=1e-12)


def test_api_refuses_unknown_options_and_methods():
    with pytest.raises(ConfigError, match="unknown key"):
        ood_bench.run(id="digits04", ood=["noise"], methods=["knn"], epochs=3)
    with pytest.raises(ConfigError, match="unknown method"):
        ood_bench.create_method("dslr")
    with pytest.raises(ConfigError, match="knn.kk"):
        ood_bench.create_method("knn", kk=3)


def test_public_names_are_exported():
    for name in ("run", "create_method", "load_dataset", "OODMethod", "register_method", "register_dataset",
                 "ArrayDataset", "RunResult"):
        assert getattr(ood_bench, name) is not None
    with pytest.raises(AttributeError):
        ood_bench.not_a_name  # noqa: B018


DOCS_API = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_docs_api_example_loads_fitted_methods_that_score_as_the_run_did():
    import torch

    namespace: dict = {}
    exec(compile(readme_example("clients"), "docs/api.md:clients", "exec"), namespace)
    res = namespace["res"]
    arts = res.manifest["artifacts"]
    (feat,) = [a for a in arts.values() if a["kind"] == "features"]
    assert [(u["method"], u["status"]) for u in feat["uses"]] == [("knn", "trained"), ("mahalanobis", "shared")]
    assert namespace["features"].shape == (300, 512) and namespace["logits"].shape == (300, 5)
    # the loaded model scores exactly as the run did (same cached weights and vectors)
    knn_run = next(r for r in res.results if r.method == "knn")
    textures = ood_bench.load_dataset("textures").take(100)
    np.testing.assert_array_equal(namespace["knn"].score(textures).canonical, knn_run.ood[0].batch.canonical)
    auroc = res.metrics.query("entry == 'knn' and ood == 'textures'")["auroc"].iloc[0]
    assert ood_bench.auroc(knn_run.id.batch.canonical, knn_run.ood[0].batch.canonical) == pytest.approx(auroc, abs=1e-6)
    # a cached model folder is enough too
    model = Path(res.manifest["timings"]["msp/seed0"]["model"])
    msp = ood_bench.load_method(model)
    assert torch.equal(msp.logits(textures), namespace["msp"].logits(textures))
    with pytest.raises(ood_bench.utils.errors.UserError, match="name one method"):
        ood_bench.load_method("results/api-clients")
    with pytest.raises(NotImplementedError):
        namespace["knn"].logits(textures)


def test_a_method_without_its_artifacts_says_how_to_get_them():
    from ood_bench.utils.errors import UserError

    m = ood_bench.create_method("knn", device="cpu", k=1, weights="random", backbone="tf_efficientnet_lite0",
                                image_size=32)
    with pytest.raises(UserError, match="fit_method"):
        m.fit(ood_bench.load_dataset("digits04", "train").take(10))
