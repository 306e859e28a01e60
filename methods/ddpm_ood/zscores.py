"""DDPM-OOD's standardisation: per (metric, start) mean and sample standard deviation of the
reconstruction distances of ID validation images, and the combined z-score.

``z_{m,s} = (d_{m,s} − μ_{m,s}) / σ_{m,s}`` with σ the ddof-1 standard deviation; the score is
``(1/|S|) Σ_s Σ_m z_{m,s}`` (the paper-era code; with metrics ``[mse]`` the later code's).
Higher = more OOD: a reconstruction farther from its input than ID validation images' is positive.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ood_bench.utils.errors import UserError


def key(metric: str, start: int) -> str:
    """The name of one (metric, start) distance: ``"mse@161"``."""
    return f"{metric}@{start}"


@dataclass(frozen=True)
class ZStats:
    """``mean``/``std`` per ``"<metric>@<start>"`` key, from ``count`` validation images."""

    mean: dict[str, float]
    std: dict[str, float]
    count: int

    @classmethod
    def fit(cls, distances: dict[str, np.ndarray]) -> "ZStats":
        """Statistics of per-image distances ``key → (n,)``; ``n ≥ 2``.

        Raises:
            UserError: fewer than 2 images, or a key whose distances do not vary (σ = 0) or are
                not finite: no z-score can be formed (enlarge the validation hold-out).
        """
        counts = {len(v) for v in distances.values()}
        n = counts.pop() if len(counts) == 1 else 0
        if n < 2:
            raise UserError(f"DDPM-OOD needs ≥ 2 ID validation images for its z-scores, got {n}; "
                            f"raise the run's `validation` fraction")
        mean = {k: float(np.mean(v, dtype=np.float64)) for k, v in distances.items()}
        std = {k: float(np.std(v, dtype=np.float64, ddof=1)) for k, v in distances.items()}
        bad = [k for k in distances if not (math.isfinite(std[k]) and std[k] > 0 and math.isfinite(mean[k]))]
        if bad:
            raise UserError(f"DDPM-OOD: the validation distances {bad} have no finite positive spread over "
                            f"{n} images; use more validation images or other starts")
        return cls(mean, std, n)

    def z(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """``(values − μ) / σ`` of one key, ``(B,)`` → ``(B,)``."""
        return (values - self.mean[name]) / self.std[name]

    def combined(self, distances: dict[str, torch.Tensor], metrics: list[str], starts: list[int]) -> dict[str, torch.Tensor]:
        """``z_<metric>`` (mean over starts) for each metric and ``z`` (their sum), each ``(B,)``."""
        out = {f"z_{m}": torch.stack([self.z(key(m, s), distances[key(m, s)]) for s in starts]).mean(0)
               for m in metrics}
        out["z"] = torch.stack([out[f"z_{m}"] for m in metrics]).sum(0)
        return out

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"mean": self.mean, "std": self.std, "count": self.count}, indent=1))

    @classmethod
    def load(cls, path: Path) -> "ZStats":
        d = json.loads(path.read_text())
        return cls({k: float(v) for k, v in d["mean"].items()}, {k: float(v) for k, v in d["std"].items()},
                   int(d["count"]))
