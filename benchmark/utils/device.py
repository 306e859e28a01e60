"""Device selection and the few device-dependent helpers (sync, autocast, peak memory, the fast
path: bf16, channels_last, on-device resizing, ``torch.compile``).

The fast path is three independent switches, each with an ``auto`` that picks the GPU setting
on CUDA and the plain path elsewhere, and each selectable on a CPU (so every branch of it runs
in CI): ``--precision`` (bf16 autocast), ``--fast-path`` (uint8 batches resized on the device,
channels_last) and ``--compile`` (``torch.compile``; ``--compile-backend aot_eager`` traces
without generating code). What only a GPU exercises is the device itself: CUDA graphs
(``--compile graphs``), pinned host memory, cuDNN/TF32 and nccl."""
from __future__ import annotations

import contextlib
import os
import resource
import sys
import threading
import time

import torch

from ood_bench.utils.errors import ConfigError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cpu``; ``cuda`` / ``cuda:N``; ``mps``
    (Apple GPUs; never chosen by ``auto``, since not every operation the methods use has an
    MPS kernel in every torch version)."""
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: no CUDA device is available here; use --device cpu or auto")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    if spec == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("--device mps: no Apple MPS device is available here; use --device cpu or auto")
        return torch.device("mps")
    raise ConfigError(f"unknown --device {spec!r}; use auto, cpu, cuda, cuda:N or mps")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so wall-clock timings measure the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


PRECISIONS = ("auto", "fp32", "bf16")
FAST_PATHS = ("auto", "on", "off")
COMPILE_MODES = ("auto", "on", "graphs", "off")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
_precision = "auto"
_fast_path = "auto"
# torch's own TF32 settings at import, restored when the precision leaves fp32
_TF32_DEFAULTS = (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())


def set_precision(precision: str) -> None:
    """``--precision``: ``auto`` = bf16 autocast on CUDA, fp32 elsewhere; ``bf16`` = bf16
    autocast on any device (CPUs too: the fast path's arithmetic, checkable without a GPU);
    ``fp32`` = fp32 everywhere, the reference the fast path is checked against — true fp32: it
    turns TF32 off for cuDNN convolutions (``torch.backends.cudnn.allow_tf32 = False``) and for
    matrix products (``torch.set_float32_matmul_precision("highest")``), which Ampere/Hopper GPUs
    otherwise use for fp32 convolutions. The other precisions restore torch's settings."""
    global _precision
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    _precision = precision
    if precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    else:
        torch.backends.cudnn.allow_tf32 = _TF32_DEFAULTS[0]
        torch.set_float32_matmul_precision(_TF32_DEFAULTS[1])


def set_fast_path(mode: str) -> None:
    """``--fast-path``: ``on`` = uint8 native-size batches finished (converted, resized) on the
    device and channels_last networks, on any device; ``off`` = per-image transforms in the
    loader and the standard layout; ``auto`` = on for CUDA unless ``--precision fp32`` (the
    plain reference path), off elsewhere."""
    global _fast_path
    if mode not in FAST_PATHS:
        raise ConfigError(f"unknown --fast-path {mode!r}; use one of {', '.join(FAST_PATHS)}")
    _fast_path = mode


def get_numerics() -> tuple[str, str]:
    """The current ``(precision, fast_path)`` settings."""
    return _precision, _fast_path


@contextlib.contextmanager
def numerics(precision: str, fast_path_mode: str):
    """Run a block under another precision and fast-path setting (restored afterwards)."""
    before = get_numerics()
    set_precision(precision)
    set_fast_path(fast_path_mode)
    try:
        yield
    finally:
        set_precision(before[0])
        set_fast_path(before[1])


def bf16(device: torch.device) -> bool:
    """Whether bf16 autocast applies on ``device`` (``--precision``)."""
    return _precision == "bf16" or (_precision == "auto" and device.type == "cuda")


def fast_path(device: torch.device) -> bool:
    """Whether the fast data path and channels_last apply on ``device`` (``--fast-path``)."""
    if _fast_path == "auto":
        return device.type == "cuda" and _precision != "fp32"
    return _fast_path == "on"


def compile_enabled(mode: str, device: torch.device) -> bool:
    """``--compile``: ``on``, ``graphs`` (compiled and replayed as CUDA graphs: ``torch.compile``
    mode ``reduce-overhead``, for static shapes), ``off``, or ``auto`` = on for CUDA, off elsewhere
    (on a CPU the inductor backend needs a C compiler and compiles for minutes: it does not pay)."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"unknown --compile {mode!r}; use one of {', '.join(COMPILE_MODES)}")
    return mode in ("on", "graphs") or (mode == "auto" and device.type == "cuda")


def configure_compile(mode: str, device: torch.device, backend: str = "inductor") -> bool:
    """Check ``--compile`` before any work and return :func:`compile_enabled`. Under ``auto``, a
    network ``torch.compile`` cannot handle then runs eagerly (with a warning from torch)
    instead of failing the run: auto means "where it works"; an explicit ``on``/``graphs``
    keeps compile errors fatal. (Nothing is imported where nothing compiles.)"""
    enabled = compile_enabled(mode, device)
    if backend not in COMPILE_BACKENDS:
        raise ConfigError(f"unknown --compile-backend {backend!r}; use one of {', '.join(COMPILE_BACKENDS)}")
    if enabled and mode == "auto":
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
    return enabled


def compile_backend(mode: str, device: torch.device, backend: str = "inductor") -> str | None:
    """The ``torch.compile`` backend a training under ``--compile mode`` uses; ``None`` = eager."""
    return backend if compile_enabled(mode, device) else None


def numerics_key(precision: str, compile: str, device: torch.device, *, stage: str = "fit",
                 fast_path_mode: str = "auto", backend: str = "inductor") -> dict[str, str]:
    """What of the fast-path options changes computed numbers on ``device``, for cache keys.

    - precision: on CUDA always (``"auto"`` for bf16, ``"fp32"``), on a CPU only ``"bf16"``;
    - ``fast_path``: only where it differs from the device's default (channels_last and the
      on-device resize round differently);
    - compile, when compiling: for ``stage="fit"`` only *whether* (``"on"``): ``auto``, ``on``
      and ``graphs`` train identically (CUDA graphs only replay scoring), so switching among
      them re-scores but never retrains; for ``stage="score"`` the mode itself. A backend other
      than inductor (``aot_eager`` in tests) is named too.

    Empty on a CPU with the defaults, so CPU keys stay as they were."""
    cuda = device.type == "cuda"
    half = precision == "bf16" or (precision == "auto" and cuda)
    key = {"precision": "auto" if half else "fp32"} if cuda else ({"precision": "bf16"} if half else {})
    default_fast = cuda and precision != "fp32"
    fast = default_fast if fast_path_mode == "auto" else fast_path_mode == "on"
    if fast != default_fast:
        key["fast_path"] = "on" if fast else "off"
    if compile_enabled(compile, device):
        key["compile"] = compile if stage == "score" else "on"
        if backend != "inductor":
            key["compile_backend"] = backend
    return key


def prepare_network(module: torch.nn.Module, device: torch.device, compile: bool,
                    backend: str = "inductor", graphs: bool = False) -> torch.nn.Module:
    """``module`` (in place) for fast inference on ``device``: channels_last weights on the fast
    path (convolutions then run NHWC, what tensor cores want), and ``torch.compile`` when asked
    (``graphs``: CUDA graphs too). ``nn.Module.compile`` keeps the state_dict keys, so saving and
    loading are unaffected; the compilation itself happens on the first call (report that call's
    time separately). A module already prepared (one network shared by several methods) is left
    as it is."""
    if getattr(module, "_ood_bench_prepared", False):
        return module
    module._ood_bench_prepared = True
    if fast_path(device):
        module.to(memory_format=torch.channels_last)
    if compile:
        module.compile(backend=backend, mode="reduce-overhead" if graphs and device.type == "cuda" else None)
    return module


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast where :func:`bf16` says so (CUDA by default, any device with ``--precision
    bf16``); a no-op context otherwise."""
    if enabled and bf16(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak on GPU, process RSS peak on CPU (MiB).

    On CPU a background thread samples the resident set size every 20 ms (Linux ``/proc``);
    where that is unavailable the process-lifetime ``ru_maxrss`` is reported instead.
    """

    def __init__(self, device: torch.device, interval: float = 0.02) -> None:
        self.device = device
        self.interval = interval
        self.peak_mib: float = float("nan")
        self.kind = "cuda_allocated" if device.type == "cuda" else "rss"
        self._stop = threading.Event()
        self._peak = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            r = _rss_bytes()
            if r is not None:
                self._peak = max(self._peak, r)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._peak = _rss_bytes() or 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        self._stop.set()
        self._thread.join()
        r = _rss_bytes()
        if r is not None:
            self._peak = max(self._peak, r)
        if self._peak:
            self.peak_mib = self._peak / 2**20
        else:  # no /proc: lifetime peak (KiB on Linux, bytes on macOS)
            ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak_mib = ru / (2**20 if sys.platform == "darwin" else 2**10)
            self.kind = "rss_lifetime"
