"""The engine's side of shared artifacts: key, build once, load when cached, share within a run.

A method names what it needs (:meth:`OODMethod.requires`); :class:`ArtifactStore` resolves each
request to a key — kind, the kind's version, recipe, training-data fingerprint, seed, numerics
(precision/compile on CUDA) — and then, in this order:

1. **shared**: an earlier method of this run got the same key → the very same object;
2. **loaded**: the cache holds it (validated file by file; a damaged one is moved aside);
3. **trained**: built under a file lock (one process builds, others wait and load), at the
   training thread count with seeded global RNGs, resumable from ``<key>.work/``, saved
   atomically under ``artifacts/<kind>/<key>/`` with ``artifact.json``.

The run log says which, and every method's :class:`~ood_bench.outcomes.MethodResult` records an
:class:`~ood_bench.methods.artifacts.ArtifactUse` per artifact. Under ``torchrun`` rank 0
decides and saves; the other ranks build with it (data-parallel) and then load its copy.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from ood_bench.utils import atomic
from ood_bench.utils import distributed as dist
from ood_bench.utils.atomic import write_json
from ood_bench.utils.device import PeakMemory, synchronize
from ood_bench.utils.errors import ConfigError
from ood_bench.utils.locking import file_lock
from ood_bench.utils.progress import log as default_log
from ood_bench.data.base import ImageDataset
from ood_bench.methods.artifacts import ARTIFACTS, Artifact, ArtifactRequest, ArtifactUse
from ood_bench.methods.base import OODMethod, RunContext
from ood_bench.methods.training import fixed_threads, resumed_seconds
from ood_bench.engine.cache import Cache, InvalidArtefact, digest
from ood_bench.engine.manifest import machine_info
from ood_bench.engine.seeding import seed_everything

# Artifacts do not depend on the requesting method's scoring batch size: they build with this one.
ARTIFACT_BATCH = 256


def artifact_key(request: ArtifactRequest, data: ImageDataset, seed: int, numerics: dict[str, Any]) -> str:
    """The cache key of ``request`` built on ``data`` with ``seed`` under ``numerics``."""
    cls = ARTIFACTS.get(request.kind)
    return digest({"artifact": request.kind, "version": cls.version, "recipe": request.recipe,
                   "data": data.fingerprint(), "seed": seed, **numerics})


class ArtifactStore:
    """Resolves artifact requests for one run (its memo spans the run's methods and seeds).

    Args:
        cache: the run's cache (``enabled=False``: nothing is loaded, everything is still saved).
        numerics: the numerics part of keys (:func:`ood_bench.utils.device.numerics_key`).
        log: where the trained / loaded / shared lines go.
    """

    def __init__(self, cache: Cache, numerics: dict[str, Any] | None = None,
                 log: Callable[[str], None] = default_log) -> None:
        self.cache = cache
        self.numerics = dict(numerics or {})
        self.log = log
        self._memo: dict[str, tuple[Artifact, ArtifactUse]] = {}
        # artifacts an earlier method of the run used through its cached scores only (not loaded)
        self._described: dict[str, ArtifactUse] = {}

    def provide(self, user: str, name: str, request: ArtifactRequest, data: ImageDataset,
                ctx: RunContext) -> tuple[Artifact, ArtifactUse]:
        """The artifact ``request`` asks for, built on ``data`` (``ctx``: the requester's device,
        seed, workers, compile settings), and how ``user`` got it."""
        cls = ARTIFACTS.get(request.kind)
        key = artifact_key(request, data, ctx.seed, self.numerics)
        if key in self._memo:
            art, first = self._memo[key]
            return art, self._shared(user, name, first)
        folder = self.cache.artifact_dir(request.kind, key)
        actx = dataclasses.replace(ctx, batch_size=ARTIFACT_BATCH,
                                   work_dir=self.cache.artifact_work_dir(request.kind, key))
        lock = (file_lock(self.cache.artifact_lock(request.kind, key),
                          on_wait=lambda: self.log(f"{user}: another process is building artifact "
                                                   f"{request.kind} {key}; waiting for it"))
                if dist.is_main() else contextlib.nullcontext())
        with lock:
            art, seconds, peak, status = self._obtain(cls, request, key, folder, data, actx, user)
        use = ArtifactUse(name=name, kind=request.kind, key=key, folder=str(folder), status=status,
                          seconds=seconds, peak_mem_mib=peak, report=art.fit_report(), owner=user)
        if key in self._described:  # an earlier method of the run used its cached results only
            use = self._shared(user, name, self._described[key])
        self._memo[key] = (art, use)
        return art, use

    def describe(self, user: str, method: OODMethod, id_train: ImageDataset,
                 fit_part: ImageDataset) -> list[ArtifactUse] | None:
        """How ``user`` uses the artifacts ``method`` requests, read from their cached metadata
        alone (nothing is loaded): for a method whose scores are all cached. ``None`` when one is
        not cached (or its metadata is unreadable): then it must be :meth:`provide`-d."""
        uses = []
        for name, (request, data) in requested(method, id_train, fit_part).items():
            key = artifact_key(request, data, method.ctx.seed, self.numerics)
            first = self._memo[key][1] if key in self._memo else self._described.get(key)
            if first is not None:
                uses.append(self._shared(user, name, first))
                continue
            folder = self.cache.artifact_dir(request.kind, key)
            if not (self.cache.has_artifact(request.kind, key) and self.cache.intact(folder)):
                return None  # missing or damaged: provide() loads (validating, healing) or builds it
            try:
                meta = Cache.artifact_meta(folder)
                seconds = float(meta["seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
            mine = folder in self.cache.own
            self.log(f"{user}: artifact {request.kind} {key} " + (f"trained in {seconds:.1f}s by a fit worker; cached in {folder}"
                     if mine else f"cached in {folder} (built in {seconds:.1f}s; its scores are cached, not loaded)"))
            use = ArtifactUse(name=name, kind=request.kind, key=key, folder=str(folder),
                              status="trained" if mine else "loaded", seconds=seconds,
                              peak_mem_mib=meta.get("peak_mem_mib", float("nan")), report=meta.get("report", {}),
                              owner=user)
            self._described[key] = use
            uses.append(use)
        return uses

    def _shared(self, user: str, name: str, first: ArtifactUse) -> ArtifactUse:
        """``first`` (how the run's first user got the artifact) as ``user``'s, shared."""
        self.log(f"{user}: artifact {first.kind} {first.key} shared (the one {first.owner} got; "
                 f"built in {first.seconds:.1f}s)")
        return dataclasses.replace(first, name=name, status="shared", report=dict(first.report))

    # ------------------------------------------------------------------------------------
    def _obtain(self, cls: type[Artifact], request: ArtifactRequest, key: str, folder: Path,
                data: ImageDataset, ctx: RunContext, user: str) -> tuple[Artifact, float, float, str]:
        cached = (self._load_cached(cls, request, key, folder, ctx, user)
                  if dist.is_main() and self.cache.has_artifact(request.kind, key) else None)
        if dist.broadcast(cached is not None if dist.is_main() else None):
            return cached if dist.is_main() else self._load_saved(cls, request, folder, ctx, "loaded")
        work = ctx.work_dir
        if not self.cache.enabled and work is not None and dist.is_main():
            shutil.rmtree(work, ignore_errors=True)  # --no-cache: no finished parts either
            work.mkdir(parents=True)
        dist.barrier()
        self.log(f"{user}: building artifact {request.kind} {key} on {data.describe()}")
        seed_everything(ctx.seed, f"artifact:{request.kind}")
        with PeakMemory(ctx.device) as mem:
            t0 = time.perf_counter()
            with fixed_threads(ctx.device):
                art = cls.build(dict(request.recipe), data, ctx)
            synchronize(ctx.device)
            seconds = time.perf_counter() - t0 + resumed_seconds(work)
        if dist.is_main():
            with atomic.atomic_dir(folder) as tmp:
                art.save(tmp)
                write_json(tmp / Cache.ARTIFACT_META, {
                    "kind": request.kind, "version": cls.version, "recipe": request.recipe, "data": request.data,
                    "data_fingerprint": data.fingerprint(), "seed": ctx.seed, "numerics": self.numerics,
                    "seconds": seconds, "peak_mem_mib": mem.peak_mib, "report": art.fit_report(),
                    "device": ctx.device.type, "machine": machine_info(ctx.device)})
            self.cache.wrote(folder)
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)  # checkpoints of a saved artifact are dead weight
            self.log(f"{user}: artifact {request.kind} {key} trained in {seconds:.1f}s; cached in {folder}")
        dist.barrier()
        if dist.is_main():
            return art, seconds, mem.peak_mib, "trained"
        return self._load_saved(cls, request, folder, ctx, "trained")

    def _load_saved(self, cls: type[Artifact], request: ArtifactRequest, folder: Path, ctx: RunContext,
                    status: str) -> tuple[Artifact, float, float, str]:
        """Ranks other than 0 use the copy rank 0 saved, so every rank holds the same weights."""
        if not (folder / Cache.ARTIFACT_META).is_file():
            raise RuntimeError(f"rank {dist.rank()} cannot see the artifact rank 0 saved in {folder}: "
                               f"put --cache-dir on a filesystem every node shares")
        meta = Cache.artifact_meta(folder)
        return cls.load(dict(request.recipe), folder, ctx), meta["seconds"], meta.get("peak_mem_mib", float("nan")), status

    def _load_cached(self, cls: type[Artifact], request: ArtifactRequest, key: str, folder: Path,
                     ctx: RunContext, user: str) -> tuple[Artifact, float, float, str] | None:
        """The cached artifact, or ``None`` after moving a damaged one aside."""
        try:
            meta = self.cache.validate_artifact(request.kind, key)
            art = cls.load(dict(request.recipe), folder, ctx)
        except Exception as e:  # InvalidArtefact, or a file the artifact itself cannot use
            self.cache.quarantine(folder, str(e) if isinstance(e, InvalidArtefact) else type(e).__name__)
            return None
        if folder in self.cache.own:  # a fit worker of this run built it (engine/fit_pool.py)
            self.log(f"{user}: artifact {request.kind} {key} trained in {meta['seconds']:.1f}s by a fit worker; "
                     f"cached in {folder}")
            return art, meta["seconds"], meta.get("peak_mem_mib", float("nan")), "trained"
        there = (meta.get("machine") or {}).get("fingerprint")
        if there != machine_info(ctx.device)["fingerprint"]:
            m = meta.get("machine") or {}
            default_log(f"warning: artifact {request.kind} {key} was built on another machine type "
                        f"({m.get('device', '?')}, {m.get('cpu', 'unknown CPU')}, {m.get('isa', '?')}, "
                        f"{m.get('accelerator') or 'no GPU'}); its results can differ from a build here; "
                        f"--no-cache rebuilds", level=logging.WARNING)
        self.log(f"{user}: artifact {request.kind} {key} loaded from {folder} (built in {meta['seconds']:.1f}s)")
        return art, meta["seconds"], meta.get("peak_mem_mib", float("nan")), "loaded"


def requested(method: OODMethod, id_train: ImageDataset,
              fit_part: ImageDataset) -> dict[str, tuple[ArtifactRequest, ImageDataset]]:
    """``method``'s artifact requests by name, each with the set it is built on: ``id_train`` for
    ``data="train"``, ``fit_part`` (ID train minus the validation hold-out) for ``"fit"``."""
    data = {"train": id_train, "fit": fit_part}
    return {name: (request, data[request.data]) for name, request in method.requires().items()}


def attach(store: ArtifactStore, method: OODMethod, user: str, id_train: ImageDataset, fit_part: ImageDataset,
           validation: ImageDataset | None) -> tuple[ImageDataset, list[ArtifactUse]]:
    """Give ``method`` what it declared: its shared artifacts (``data="train"`` built on
    ``id_train``, ``"fit"`` on ``fit_part``) and, with ``needs_validation``, ``validation``.

    Returns the set ``fit()`` trains on — ``id_train``, or ``fit_part`` for a method that
    calibrates on the hold-out (so it never fits on the images it calibrates on) — and the uses."""
    uses = []
    for name, (request, data) in requested(method, id_train, fit_part).items():
        art, use = store.provide(user, name, request, data, method.ctx)
        method.artifacts[name] = art
        uses.append(use)
    if type(method).needs_validation:
        if validation is None:
            raise ConfigError(f"{user} calibrates on a validation hold-out, but the validation fraction is 0; "
                              f"give one such as 0.05")
        method.validation = validation
        return fit_part, uses
    return id_train, uses
