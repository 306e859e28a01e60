"""Cache of trained models and per-dataset scores, keyed by what determines them.

Layout under the cache root::

    <method>/<fit_key>/model/          the method's saved state (written atomically as a folder)
    <method>/<fit_key>/model/fit.json  fit time, device, report
    <method>/<fit_key>/work/           training checkpoints while fitting (resume)
    <method>/<fit_key>/scores/<score_key>.npz   one dataset's scores + timing

``fit_key`` hashes method name + method version + fit-stage options + training-set fingerprint +
seed; ``score_key`` hashes ``fit_key`` + score-stage options + dataset fingerprint + batch size +
device type (random draws are per batch and per device). Re-running the same command reuses
both; changing a score-only option re-scores without re-training.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ood_bench.utils import atomic
from ood_bench.methods.base import ScoreBatch


def digest(obj: Any, n: int = 16) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:n]


@dataclass
class CachedScores:
    batch: ScoreBatch
    seconds: float
    peak_mem_mib: float


class Cache:
    """Filesystem cache; ``enabled=False`` makes every lookup miss (but still writes)."""

    def __init__(self, root: Path | str, enabled: bool = True) -> None:
        self.root = Path(root)
        self.enabled = enabled

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
        return self.enabled and (self.model_dir(method, fit_key) / "fit.json").is_file()

    def fit_meta(self, method: str, fit_key: str) -> dict[str, Any]:
        return json.loads((self.model_dir(method, fit_key) / "fit.json").read_text())

    def scores_path(self, method: str, fit_key: str, score_key: str) -> Path:
        return self.fit_dir(method, fit_key) / "scores" / f"{score_key}.npz"

    def load_scores(self, method: str, fit_key: str, score_key: str) -> CachedScores | None:
        path = self.scores_path(method, fit_key, score_key)
        if not (self.enabled and path.is_file()):
            return None
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            scores = {k[len("score_"):]: z[k] for k in z.files if k.startswith("score_")}
            preds = z["predictions"] if "predictions" in z.files else None
        return CachedScores(ScoreBatch(scores, meta["primary"], preds), meta["seconds"], meta["peak_mem_mib"])

    def save_scores(self, method: str, fit_key: str, score_key: str, batch: ScoreBatch,
                    seconds: float, peak_mem_mib: float) -> None:
        arrays = {f"score_{k}": v for k, v in batch.scores.items()}
        if batch.predictions is not None:
            arrays["predictions"] = batch.predictions
        meta = json.dumps({"primary": batch.primary, "seconds": seconds, "peak_mem_mib": peak_mem_mib})

        def write(p: Path) -> None:
            with open(p, "wb") as f:
                np.savez(f, meta=np.array(meta), **arrays)

        atomic.write_with(self.scores_path(method, fit_key, score_key), write)
