"""Shared fixtures and tiny CPU helpers for the test suite."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _no_progress_bars():
    from ood_bench.utils.progress import set_enabled

    set_enabled(False)
    yield


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    """Every test runs in its own folder, so default results/ and caches never mix."""
    monkeypatch.chdir(tmp_path)
    yield
