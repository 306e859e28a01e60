"""Run configuration: presets, --set parsing, typed method options."""
import pytest

from ood_bench.engine.config import PRESETS_DIR, RunConfig, apply_mapping, build_dataclass, find_preset, load_yaml, parse_set
from ood_bench.utils.errors import ConfigError
from ood_bench.methods.dlsr import DLSRConfig


def test_embedded_preset_groups_ood_sets():
    cfg = apply_mapping(RunConfig(), load_yaml(find_preset("embedded")), "embedded")
    assert cfg.id == "digits04"
    assert cfg.ood_groups["digits59"] == "near" and cfg.ood_groups["noise"] == "far"
    assert "dlsr" in cfg.methods and cfg.method_options["dlsr"]["backbone"] == "tf_efficientnet_lite0"


def test_set_parses_yaml_values():
    assert parse_set(["dlsr.t=5", "dlsr.score=mse", "x.layers=[1, 2]", "x.flag=true"]) == {
        "dlsr": {"t": 5, "score": "mse"}, "x": {"layers": [1, 2], "flag": True}}
    with pytest.raises(ConfigError, match="METHOD.OPTION=VALUE"):
        parse_set(["t=5"])


def test_method_options_are_typed_and_validated():
    c = build_dataclass(DLSRConfig, {"t": 5, "layers": [1, 2], "lr": 1}, "dlsr")
    assert c.t == 5 and c.layers == (1, 2) and isinstance(c.lr, float)
    with pytest.raises(ConfigError, match="unknown option.*dlsr.tt"):
        build_dataclass(DLSRConfig, {"tt": 5}, "dlsr")
    with pytest.raises(ConfigError, match="expected an integer"):
        build_dataclass(DLSRConfig, {"t": "three"}, "dlsr")
    with pytest.raises(ConfigError, match="score must be one of"):
        build_dataclass(DLSRConfig, {"score": "auc"}, "dlsr")
    with pytest.raises(ConfigError, match="t must be in"):
        build_dataclass(DLSRConfig, {"t": 100}, "dlsr")


def test_fit_and_score_stages_split_the_options():
    c = DLSRConfig()
    assert "t" in c.stage_dict("score") and "t" not in c.stage_dict("fit")
    assert "epochs" in c.stage_dict("fit") and "score" in c.stage_dict("score")


def test_unknown_run_key_and_missing_preset(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        apply_mapping(RunConfig(), {"idd": "x"}, "f.yaml")
    with pytest.raises(ConfigError, match="not found"):
        find_preset("no-such-preset")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
def test_every_preset_builds_valid_method_configs(preset):
    import ood_bench.methods as methods  # noqa: F401
    from ood_bench.methods.registry import METHODS

    cfg = apply_mapping(RunConfig(), load_yaml(find_preset(preset)), preset)
    assert cfg.methods and cfg.ood
    for name in cfg.methods:
        cls = METHODS.get(name)
        build_dataclass(cls.config_cls, cfg.method_options.get(name, {}), name)
