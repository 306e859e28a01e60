"""`ood-bench fetch`: the dry-run listing (offline), one-line failures naming URL and folder,
and `run --download` fetching before the preflight checks. No test reaches the internet: failing
downloads go to a closed local port."""
import dataclasses

import pytest

from ood_bench.cli import main
from ood_bench.engine import fetch
from ood_bench.engine.config import RunConfig

DEAD = "http://127.0.0.1:9"  # nothing listens: the connection is refused at once


@pytest.fixture
def homes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints", tmp_path / "data"


def _dead(monkeypatch, name):
    r = fetch.RESOURCES[name]
    monkeypatch.setitem(fetch.RESOURCES, name, dataclasses.replace(r, url=f"{DEAD}/{r.url.rsplit('/', 1)[1]}"))


def test_dry_run_lists_what_cifar10_needs_and_where(homes, capsys):
    hub, data = homes
    assert main(["fetch", "--config", "cifar10", "--dry-run", "--data-root", str(data)]) == 0
    out = capsys.readouterr().out
    for name, dest in [("tf_efficientnet_b4", hub / "efficientnet-b4-6ed6700e.pth"),
                       ("alexnet", hub / "alexnet-owt-7be5be79.pth"), ("cifar10", data / "cifar-10-batches-py"),
                       ("lsun_c", data / "LSUN"), ("tinyimagenet", data / "tiny-imagenet-200" / "val"),
                       ("places365", data / "places365" / "val_256"), ("dtd", data / "dtd" / "images")]:
        line = next(ln for ln in out.splitlines() if f" {name} " in ln)
        assert line.startswith("MISSING") and line.endswith(f"-> {dest}")
    assert "[sha256:6ed6700e]" in out and "[md5:fff73e5086ae6bdbea199a49dfb8a4c1]" in out
    assert "12 of 12 missing" in out
    hub.mkdir(parents=True)
    (hub / "efficientnet-b4-6ed6700e.pth").write_bytes(b"x")
    (data / "LSUN").mkdir(parents=True)
    items = {it.label: it for it in fetch.plan(RunConfig(id="cifar10", ood=["lsun_c", "describable_textures", "textures"],
                                                         methods=["dlsr"], data_root=str(data)))}
    assert items["tf_efficientnet_b4"].present and items["lsun_c"].present
    assert set(items) == {"tf_efficientnet_b4", "lsun_c", "dtd", "cifar10"}  # an alias resolves; the embedded textures need nothing


def test_offline_fetch_fails_in_one_line_naming_url_and_folder(homes, monkeypatch, capsys):
    hub, data = homes
    _dead(monkeypatch, "tf_efficientnet_b4")
    _dead(monkeypatch, "lsun_c")
    rc = main(["fetch", "--config", "embedded", "--method", "dlsr", "--set", "dlsr.backbone=tf_efficientnet_b4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"error: cannot download {DEAD}/efficientnet-b4-6ed6700e.pth")
    assert err[0].endswith(f"put the file into {hub}")
    with pytest.raises(fetch.DatasetNotFoundError, match=f"cannot download {DEAD}/LSUN.tar.gz.*by hand into {data / 'LSUN'}$"):
        fetch.fetch_missing(RunConfig(id="digits04", ood=["lsun_c"], data_root=str(data)), log=lambda s: None)
    assert not any(data.rglob("*.jpg"))


def test_run_download_fetches_weights_before_the_preflight_check(homes, monkeypatch, capsys):
    _dead(monkeypatch, "tf_efficientnet_b4")
    argv = ["run", "--config", "cifar10", "--method", "dlsr", "--id", "digits04", "--ood", "digits59", "--out", "o"]
    assert main(argv) == 2
    assert "not found in" in capsys.readouterr().err  # without --download: the preflight refuses
    assert main([*argv, "--download"]) == 2
    assert f"cannot download {DEAD}/efficientnet-b4-6ed6700e.pth" in capsys.readouterr().err
