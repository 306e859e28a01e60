"""Methods and datasets from outside the package: --plugin files and modules, entry points."""
import json
import sys
import textwrap

import pandas as pd
import pytest

from ood_bench import plugins
from ood_bench.cli import main
from ood_bench.data.registry import DATASETS
from ood_bench.methods.registry import METHODS
from readme_examples import readme_example


def test_readme_plugin_runs_through_the_cli_with_cache_tables_and_plots(tmp_path, capsys):
    (tmp_path / "my_detector.py").write_text(readme_example("plugin"))
    args = ["run", "--plugin", "my_detector.py", "--method", "pixel-nn", "--id", "digits04", "--ood", "noise",
            "textures", "--limit", "60", "--bootstrap", "50", "--quiet"]
    assert main([*args, "--out", "r1"]) == 0
    board = pd.read_csv(tmp_path / "r1" / "leaderboard.csv", comment="#", index_col=0)
    assert "pixel-nn" in board.index and board.loc["pixel-nn", "noise"] > 90
    assert (tmp_path / "r1" / "plots" / "hist_pixel-nn_noise.png").stat().st_size > 1000
    assert "pixel-nn" in (tmp_path / "r1" / "report.html").read_text()
    first = json.loads((tmp_path / "r1" / "manifest.json").read_text())["timings"]["pixel-nn/seed0"]
    # a second run (plugin loaded again by path: a no-op) reuses the cached model and scores
    assert main([*args, "--out", "r2"]) == 0
    again = json.loads((tmp_path / "r2" / "manifest.json").read_text())["timings"]["pixel-nn/seed0"]
    assert not first["fit_cached"] and again["fit_cached"] and again["scores_cached"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "r1" / "scores.csv"), pd.read_csv(tmp_path / "r2" / "scores.csv"))
    capsys.readouterr()
    assert main(["list", "--plugin", "my_detector.py", "--options"]) == 0
    assert "pixel-nn.image_size=8  (fit)" in capsys.readouterr().out


ENTRY_MODULE = '''
import numpy as np
import torch
from dataclasses import dataclass
from ood_bench import ArrayDataset, BatchOutput, ImageTransform, MethodConfig, OODMethod, score_option


@dataclass
class BrightnessConfig(MethodConfig):
    score: str = score_option("bright", "mean brightness")


class Brightness(OODMethod):
    """Entry-point test detector: mean pixel value."""
    config_cls = BrightnessConfig

    def transform(self, img):
        return ImageTransform(8, channels=1)(img)

    def fit(self, train):
        pass

    def score_batch(self, x, generator):
        return BatchOutput({"bright": x.flatten(1).mean(1)})

    def save(self, directory):
        (directory / "none").write_text("")

    def load(self, directory):
        pass

    def cost(self):
        return {}


def dark_squares(ctx, split):
    """Dark 8x8 squares (entry-point test dataset)."""
    rng = np.random.default_rng(0 if split == "train" else 1)
    return ArrayDataset("dark-squares", split, rng.integers(0, 60, (40, 8, 8), dtype=np.uint8))
'''


def test_entry_points_register_methods_and_datasets(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    (site / "ep_ood_plugin").mkdir(parents=True)
    (site / "ep_ood_plugin" / "__init__.py").write_text(ENTRY_MODULE)
    info = site / "ep_ood_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-ood-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [ood_bench.methods]
        brightness = ep_ood_plugin:Brightness
        [ood_bench.datasets]
        dark-squares = ep_ood_plugin:dark_squares
        """))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_entry_points_done", False)
    plugins.load_entry_points()
    assert "brightness" in METHODS and DATASETS.get("dark-squares").kind == "plugin"
    # the plugin dataset is the ID set, the plugin method scores: bright noise is more OOD
    rc = main(["run", "--method", "brightness", "--id", "dark-squares", "--ood", "noise", "--out", "run",
               "--bootstrap", "0", "--quiet"])
    assert rc == 0
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics.query("ood == 'noise'")["auroc"].iloc[0] > 0.9
    capsys.readouterr()
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "brightness" in out and "datasets (from plugins)" in out and "dark-squares" in out


@pytest.mark.parametrize("content, expected", [
    (None, "plugin file nothere.py does not exist"),
    ("import not_a_module_anywhere\n", "failed to load: ModuleNotFoundError"),
    ("raise RuntimeError('boom')\n", "failed to load: RuntimeError: boom"),
])
def test_bad_plugins_are_one_line_errors(tmp_path, capsys, content, expected):
    if content is not None:
        (tmp_path / "nothere.py").write_text(content)
    rc = main(["run", "--plugin", "nothere.py", "--method", "dlsr", "--ood", "noise", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0]
    assert not (tmp_path / "results").exists()  # nothing started


def test_plugin_module_by_name(tmp_path, monkeypatch):
    (tmp_path / "mod_plugin_by_name.py").write_text(readme_example("plugin").replace('"pixel-nn"', '"pixel-nn-mod"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = plugins.load_plugin("mod_plugin_by_name")
    assert "pixel-nn-mod" in METHODS and plugins.load_plugin("mod_plugin_by_name") is mod
    with pytest.raises(Exception, match="plugin module 'no_such_plugin_mod' not found"):
        plugins.load_plugin("no_such_plugin_mod")
    sys.modules.pop("mod_plugin_by_name", None)
