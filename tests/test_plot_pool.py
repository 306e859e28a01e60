"""Figures drawn by the plot worker: the same files as drawn in the main process, errors and lost
workers handled, and a user's unguarded script is not re-run by the worker."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ood_bench.reporting.plot_pool import MIN_FIGURES, PlotPool
from ood_bench.reporting.plots import score_histogram


def _in_worker() -> bool:
    main = sys.modules["__main__"]
    return getattr(main.__spec__, "name", None) == "ood_bench.reporting.plot_pool"


def kill_worker_or_pid() -> int:
    """In a worker: the worker dies (SIGKILL) mid-job. In the main process: its pid."""
    if _in_worker():
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def _histograms(pool: PlotPool, folder) -> list:
    rng = np.random.default_rng(0)
    jobs = []
    for k in range(3):
        id_s, ood_s = rng.normal(0, 1, 200), rng.normal(1 + k, 1 + k, 150)
        jobs.append(pool.submit(score_histogram, id_s, ood_s, folder / f"h{k}.png", title=f"t{k}",
                                id_label="ID", ood_label="OOD", score_label="s"))
    return jobs


def test_worker_draws_the_same_files_as_the_main_process(tmp_path):
    with PlotPool(MIN_FIGURES, processes=1) as pool:
        first = pool.submit(os.getpid)
        assert first._job[0].result(timeout=120) != os.getpid()  # the worker answered, not this process
        drawn = [p.result() for p in _histograms(pool, tmp_path / "pool")]
    with PlotPool(0) as pool:
        inline = [p.result() for p in _histograms(pool, tmp_path / "inline")]
    assert [p.name for p in drawn] == [p.name for p in inline] == ["h0.png", "h1.png", "h2.png"]
    for a, b in zip(drawn, inline):
        for suffix in (".png", ".pdf"):  # byte for byte: no dates in the PDF
            assert a.with_suffix(suffix).read_bytes() == b.with_suffix(suffix).read_bytes()


def test_pdf_has_no_creation_date_and_repeats_byte_for_byte(tmp_path):
    with PlotPool(0) as pool:
        a = [p.result() for p in _histograms(pool, tmp_path / "a")]
    time.sleep(1.1)  # a date in seconds would now differ
    with PlotPool(0) as pool:
        b = [p.result() for p in _histograms(pool, tmp_path / "b")]
    for x, y in zip(a, b):
        assert b"CreationDate" not in x.with_suffix(".pdf").read_bytes()
        assert x.with_suffix(".pdf").read_bytes() == y.with_suffix(".pdf").read_bytes()


def test_an_error_in_the_worker_is_raised_where_the_figure_is_asked_for():
    with PlotPool(MIN_FIGURES, processes=1) as pool:
        bad = pool.submit(int, "not a number")
        assert bad._job[0].exception(timeout=120) is not None  # failed in the worker
        with pytest.raises(ValueError, match="not a number"):  # drawn again here: the real error
            bad.result()
        after = pool.submit(os.getpid)
        assert after._job[0].result(timeout=120) != os.getpid()  # the worker still serves


def test_a_call_that_cannot_be_pickled_is_drawn_in_the_main_process():
    with PlotPool(MIN_FIGURES, processes=1) as pool:
        local = pool.submit(callable, lambda: 0)
        local._job[0].exception(timeout=120)
        assert local.result() is True
        after = pool.submit(os.getpid)
        assert after._job[0].result(timeout=120) != os.getpid()


def test_figures_of_a_lost_worker_are_drawn_in_the_main_process():
    with PlotPool(MIN_FIGURES, processes=1) as pool:
        lost = pool.submit(kill_worker_or_pid)
        lost._job[0].exception(timeout=120)  # the worker died on it
        after = [pool.submit(os.getpid) for _ in range(3)]
        assert lost.result() == os.getpid()
        assert [p.result() for p in after] == [os.getpid()] * 3


def test_leaving_on_an_error_drops_queued_figures_without_waiting_for_them():
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="run failed"):
        with PlotPool(MIN_FIGURES, processes=1) as pool:
            jobs = [pool.submit(time.sleep, 30) for _ in range(4)]
            raise RuntimeError("run failed")
    assert time.perf_counter() - t0 < 25
    assert all(j._job[0].cancelled() or j._job[0].done() for j in jobs)


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    script = tmp_path / "user_script.py"
    marker = tmp_path / "runs.txt"
    script.write_text(textwrap.dedent(f"""
        import os
        from ood_bench.reporting.plot_pool import MIN_FIGURES, PlotPool
        with open({str(marker)!r}, "a") as f:
            f.write("run\\n")
        with PlotPool(MIN_FIGURES, processes=1) as pool:
            p = pool.submit(os.getpid)
            print("worker" if p._job[0].result(timeout=120) != os.getpid() else "main")
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "worker"
    assert marker.read_text() == "run\n"


# ------------------------------------------------------------------ the figure cache
DRAWN: list[str] = []


def counted_histogram(id_s, ood_s, path, *, title):
    """score_histogram that records each time it actually draws."""
    DRAWN.append(title)
    return score_histogram(id_s, ood_s, path, title=title, id_label="ID", ood_label="OOD", score_label="s")


def test_a_cached_figure_is_copied_byte_for_byte_and_new_data_is_drawn(tmp_path):
    from ood_bench.reporting.figure_cache import FigureCache

    cache = FigureCache(tmp_path / "figures")
    rng = np.random.default_rng(1)
    id_s, ood_s = rng.normal(0, 1, 100), rng.normal(2, 1, 100)
    DRAWN.clear()
    for run in ("a", "b"):  # a rerun into another folder: copied, not drawn
        with PlotPool(0, cache=cache) as pool:
            assert pool.submit(counted_histogram, id_s, ood_s, tmp_path / run / "h.png", title="t").result() \
                == tmp_path / run / "h.png"
    assert DRAWN == ["t"]
    for suffix in (".png", ".pdf"):
        assert (tmp_path / "a" / f"h{suffix}").read_bytes() == (tmp_path / "b" / f"h{suffix}").read_bytes()
    with PlotPool(0, cache=cache) as pool:  # one score changed, or another title: drawn again
        pool.submit(counted_histogram, id_s, np.r_[ood_s[:-1], 9.0], tmp_path / "c" / "h.png", title="t").result()
        pool.submit(counted_histogram, id_s, ood_s, tmp_path / "d" / "h.png", title="other").result()
    assert DRAWN == ["t", "t", "other"]
    with PlotPool(0, cache=FigureCache(None)) as pool:  # no cache (--no-cache): always drawn
        pool.submit(counted_histogram, id_s, ood_s, tmp_path / "e" / "h.png", title="t").result()
    assert DRAWN[-1] == "t" and len(DRAWN) == 4
