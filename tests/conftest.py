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
def _serial_fits(monkeypatch):
    """In-process runs fit serially (``fit_workers: auto`` = 1): tests count fits with class
    counters, which fit workers (other processes) would not move. tests/test_fit_pool.py and
    runs in subprocesses use the workers."""
    from ood_bench.engine import fit_pool

    monkeypatch.setattr(fit_pool, "AUTO_MAX", 1)
    yield


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    """Every test runs in its own folder, so default results/ and caches never mix."""
    monkeypatch.chdir(tmp_path)
    yield
