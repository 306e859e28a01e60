"""Cache of trained models and per-dataset scores, keyed by what determines them.

Layout under the cache root::

    <method>/<fit_key>/model/          the method's saved state (written atomically as a folder)
    <method>/<fit_key>/model/fit.json  fit time, device, report
    <method>/<fit_key>/work/           training checkpoints while fitting (resume)
    <method>/<fit_key>/scores/<score_key>.npz   one dataset's scores + timing
    artifacts/<kind>/<key>/                 a shared artifact (saved atomically as a folder)
    artifacts/<kind>/<key>/artifact.json    its build time, device, report, recipe
    artifacts/<kind>/<key>.work/            its training checkpoints while building (resume)
    artifacts/<kind>/<key>.lock             serialises building it across processes

``fit_key`` hashes method name + method version + fit-stage options + training-set fingerprint +
seed (+ the keys of the shared artifacts the method uses); an artifact's key hashes kind +
kind version + recipe + training-data fingerprint + seed + numerics; ``score_key`` hashes ``fit_key`` + score-stage options + dataset fingerprint + batch size +
device type (random draws are per batch and per device). Re-running the same command reuses
both; changing a score-only option re-scores without re-training.

The cache heals: every artefact is validated when it is loaded: its files must match the SHA-256
recorded when it was written (``model/checksums.json``, ``<key>.npz.sha256``; a flipped bit is
damage), parse, and hold only finite numbers. A bad one — a truncated file after a crash of the disk or a foreign
program, a model that diverged — is moved aside (``model.bad-<time>/``, ``<key>.npz.bad``) with
a one-line warning, and rebuilt as if it had never been cached.
"""
from __future__ import annotations

import logging
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ood_bench.utils import atomic
from ood_bench.utils.progress import log
from ood_bench.methods.base import ScoreBatch


class InvalidArtefact(Exception):
    """A cached file that cannot be read or holds non-finite numbers (message: why)."""


def check_finite(obj: Any, where: str) -> None:
    """Raise :class:`InvalidArtefact` if any tensor, array or float inside ``obj`` (nested
    dicts/lists/tuples) is NaN or infinite. Integer and boolean data are skipped."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            raise InvalidArtefact(f"{where} holds non-finite values")
    elif isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f" and not np.isfinite(obj).all():
            raise InvalidArtefact(f"{where} holds non-finite values")
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise InvalidArtefact(f"{where} holds a non-finite number")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            check_finite(v, f"{where}[{k}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_finite(v, f"{where}[{i}]")


def _recorded_digest(path: Path) -> tuple[Path, str | None] | None:
    """The ``checksums.json`` of the nearest folder above ``path`` that has one, and the digest
    it records for ``path`` (``None``: not written with that folder); ``None`` when no folder has one."""
    for folder in list(path.parents)[:6]:
        rec = folder / atomic.CHECKSUM_FILE
        if rec.is_file():
            try:
                files = json.loads(rec.read_text())["files"]
            except (OSError, ValueError, KeyError, TypeError):
                raise InvalidArtefact(f"{atomic.CHECKSUM_FILE} is damaged") from None
            return folder, files.get(path.relative_to(folder).as_posix())
    return None


def validate_file(path: Path, checksum: bool = True) -> None:
    """Read ``path`` fully by its type (torch, safetensors, numpy, JSON; other files: bytes)
    and check its numbers are finite; raises :class:`InvalidArtefact`.

    ``checksum``: first compare it with the SHA-256 recorded for it in the ``checksums.json`` of
    the folder it was saved with (:func:`ood_bench.utils.atomic.atomic_dir`), if any, so every
    cache area that validates its folders file by file catches a flipped bit."""
    name = path.name
    if checksum and name != atomic.CHECKSUM_FILE:
        found = _recorded_digest(path)
        if found is not None:
            folder, recorded = found
            if recorded is None:
                raise InvalidArtefact(f"{path.relative_to(folder).as_posix()} was not written with the folder")
            if atomic.sha256_file(path) != recorded:
                raise InvalidArtefact(f"{path.relative_to(folder).as_posix()} does not match its SHA-256 "
                                      f"recorded when it was written")
    try:
        if path.suffix in (".pt", ".pth", ".bin"):
            obj = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain containers only
        elif path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(path)
        elif path.suffix in (".npz", ".npy"):
            with np.load(path, allow_pickle=False) as z:
                obj = {k: z[k] for k in z.files} if path.suffix == ".npz" else np.asarray(z)
        elif path.suffix == ".json":
            obj = json.loads(path.read_text())
        else:
            path.read_bytes()
            return
    except Exception as e:  # every library raises its own type for a damaged file
        raise InvalidArtefact(f"{name} is unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    check_finite(obj, name)


def validate_dir(folder: Path) -> None:
    """A cached folder checked whole: its files match the SHA-256 recorded when it was written
    (:func:`ood_bench.utils.atomic.verify_dir`; a flipped bit, a missing or a foreign file is
    damage), then every file is read and checked finite (:func:`validate_file`). A folder cached
    before checksums were kept is checked by content and its checksums are recorded now.

    Raises:
        InvalidArtefact: why the folder cannot be trusted.
    """
    try:
        recorded = atomic.verify_dir(folder)
    except atomic.ChecksumMismatch as e:
        raise InvalidArtefact(str(e)) from None
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        validate_file(f, checksum=False)  # verified above, all at once
    if not recorded:
        atomic.write_checksums(folder)
        log(f"recorded the checksums of {folder} (cached before checksums were kept)", level=logging.DEBUG)


def validate_cached_file(path: Path) -> None:
    """One cached file: its SHA-256 against the one recorded beside it when it was written
    (``write_with(..., checksum=True)``), then its content (:func:`validate_file`).

    Raises:
        InvalidArtefact: why the file cannot be trusted."""
    try:
        recorded = atomic.verify_file(path)
    except atomic.ChecksumMismatch as e:
        raise InvalidArtefact(str(e)) from None
    except OSError as e:
        raise InvalidArtefact(f"{path.name} is unreadable ({type(e).__name__})") from None
    validate_file(path, checksum=False)
    if not recorded:
        atomic.write_text(atomic.sidecar(path), atomic.sha256_file(path) + "\n")


def digest(obj: Any, n: int = 16) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:n]


@dataclass
class CachedScores:
    batch: ScoreBatch
    seconds: float
    peak_mem_mib: float


class Cache:
    """Filesystem cache; ``enabled=False`` makes every lookup miss (but still writes).

    Paths :meth:`admit`-ted are this run's own work (models, artifacts, scores and pictures its
    fit workers wrote, :mod:`ood_bench.engine.fit_pool`): found even with ``enabled=False``, and
    reported as trained / scored in this run, not loaded. :attr:`written` lists what this process
    wrote, in order (a fit worker hands it to its parent)."""

    def __init__(self, root: Path | str, enabled: bool = True) -> None:
        self.root = Path(root)
        self.enabled = enabled
        self.own: set[Path] = set()
        self.written: list[Path] = []

    def admit(self, path: Path | str) -> None:
        """Count ``path`` (a model or artifact folder, a scores file or picture written during
        this run) as this run's own."""
        self.own.add(Path(path))

    def wrote(self, path: Path | str) -> None:
        """Record that this process has just written ``path`` (complete, atomically)."""
        self.written.append(Path(path))

    def usable(self, path: Path) -> bool:
        """Whether the file ``path`` may be read: it exists, and the cache is on or it is this run's own."""
        return (self.enabled or path in self.own) and path.is_file()

    def _present(self, folder: Path, meta: str) -> bool:
        return (self.enabled or folder in self.own) and (folder / meta).is_file()

    def fit_dir(self, method: str, fit_key: str) -> Path:
        return self.root / method / fit_key

    def model_dir(self, method: str, fit_key: str) -> Path:
        return self.fit_dir(method, fit_key) / "model"

    def work_dir(self, method: str, fit_key: str) -> Path:
        d = self.fit_dir(method, fit_key) / "work"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def fit_lock(self, method: str, fit_key: str) -> Path:
        """The lock file that serialises fitting one model across processes."""
        return self.fit_dir(method, fit_key) / "fit.lock"

    def has_model(self, method: str, fit_key: str) -> bool:
        return self._present(self.model_dir(method, fit_key), "fit.json")

    def fit_meta(self, method: str, fit_key: str) -> dict[str, Any]:
        return json.loads((self.model_dir(method, fit_key) / "fit.json").read_text())

    def validate_model(self, method: str, fit_key: str) -> dict[str, Any]:
        """Every file of the cached model read and checked; returns ``fit.json``'s content.

        Raises:
            InvalidArtefact: a file is unreadable or non-finite, or ``fit.json`` lacks its fields.
        """
        model_dir = self.model_dir(method, fit_key)
        validate_dir(model_dir)
        meta = self.fit_meta(method, fit_key)
        if not isinstance(meta, dict) or not isinstance(meta.get("seconds"), (int, float)):
            raise InvalidArtefact("fit.json lacks the fit time")
        return meta

    @staticmethod
    def intact(folder: Path) -> bool:
        """Whether every file of a cached folder matches the SHA-256 recorded when it was written
        (read as bytes only: nothing is deserialised). ``False`` for damage, and for a folder
        without a record: then :meth:`validate_model` / :meth:`validate_artifact` must judge it."""
        try:
            return atomic.verify_dir(folder)
        except (atomic.ChecksumMismatch, OSError):
            return False

    def quarantine(self, path: Path, why: str) -> Path:
        """Move a bad artefact aside (kept for inspection, never read again) with a warning."""
        bad = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(bad)
        if atomic.sidecar(path).is_file():  # a file's recorded checksum goes with it
            atomic.sidecar(path).replace(atomic.sidecar(bad))
        log(f"warning: cached {path} is damaged ({why}); moved to {bad.name}, rebuilding it", level=logging.WARNING)
        return bad

    def figures_dir(self) -> Path:
        """Where finished figures are kept by what drew them (:mod:`ood_bench.reporting.figure_cache`)."""
        return self.root / "figures"

    # ---------------------------------------------------------------- shared artifacts
    ARTIFACT_META = "artifact.json"

    def artifact_dir(self, kind: str, key: str) -> Path:
        return self.root / "artifacts" / kind / key

    def artifact_work_dir(self, kind: str, key: str) -> Path:
        d = self.root / "artifacts" / kind / f"{key}.work"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def artifact_lock(self, kind: str, key: str) -> Path:
        return self.root / "artifacts" / kind / f"{key}.lock"

    @classmethod
    def artifact_meta(cls, folder: Path) -> dict[str, Any]:
        """The ``artifact.json`` of the artifact saved in ``folder``."""
        return json.loads((folder / cls.ARTIFACT_META).read_text())

    def has_artifact(self, kind: str, key: str) -> bool:
        return self._present(self.artifact_dir(kind, key), self.ARTIFACT_META)

    def validate_artifact(self, kind: str, key: str) -> dict[str, Any]:
        """Every file of the cached artifact read and checked; returns ``artifact.json``'s content.

        Raises:
            InvalidArtefact: a file is unreadable or non-finite, or the metadata lacks its fields.
        """
        folder = self.artifact_dir(kind, key)
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            validate_file(f)
        meta = self.artifact_meta(folder)
        if not isinstance(meta, dict) or not isinstance(meta.get("seconds"), (int, float)):
            raise InvalidArtefact(f"{self.ARTIFACT_META} lacks the build time")
        return meta

    def scores_path(self, method: str, fit_key: str, score_key: str) -> Path:
        return self.fit_dir(method, fit_key) / "scores" / f"{score_key}.npz"

    EXAMPLE_SUFFIX = ".grid2.png"  # 2: the pictures got row labels

    def example_path(self, method: str, fit_key: str, score_key: str) -> Path:
        """Where a method's example picture for one scored set is kept (beside its scores)."""
        return self.scores_path(method, fit_key, score_key).with_suffix(self.EXAMPLE_SUFFIX)

    def no_example_path(self, method: str, fit_key: str, score_key: str) -> Path:
        """An empty file saying the method had no picture to draw for that set."""
        return self.scores_path(method, fit_key, score_key).with_suffix(".nopicture")

    def example_done(self, method: str, fit_key: str, score_key: str) -> bool:
        """Whether the example picture of that set is cached, or known not to exist."""
        return (self.usable(self.example_path(method, fit_key, score_key))
                or self.usable(self.no_example_path(method, fit_key, score_key)))

    def load_scores(self, method: str, fit_key: str, score_key: str) -> CachedScores | None:
        path = self.scores_path(method, fit_key, score_key)
        if not self.usable(path):
            return None
        try:
            validate_cached_file(path)  # its recorded SHA-256, then its content
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                scores = {k[len("score_"):]: z[k] for k in z.files if k.startswith("score_")}
                preds = z["predictions"] if "predictions" in z.files else None
            check_finite(scores, path.name)
            return CachedScores(ScoreBatch(scores, meta["primary"], preds), meta["seconds"], meta["peak_mem_mib"])
        except Exception as e:  # truncated zip, missing keys, NaN scores: score again
            why = str(e) if isinstance(e, InvalidArtefact) else f"{type(e).__name__}"
            self.quarantine(path, why)
            path.with_suffix(self.EXAMPLE_SUFFIX).unlink(missing_ok=True)  # its example picture goes with it
            return None

    def save_scores(self, method: str, fit_key: str, score_key: str, batch: ScoreBatch,
                    seconds: float, peak_mem_mib: float) -> None:
        arrays = {f"score_{k}": v for k, v in batch.scores.items()}
        if batch.predictions is not None:
            arrays["predictions"] = batch.predictions
        meta = json.dumps({"primary": batch.primary, "seconds": seconds, "peak_mem_mib": peak_mem_mib})

        def write(p: Path) -> None:
            with open(p, "wb") as f:
                np.savez(f, meta=np.array(meta), **arrays)

        path = self.scores_path(method, fit_key, score_key)
        atomic.write_with(path, write, checksum=True)
        self.wrote(path)
