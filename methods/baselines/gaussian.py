"""A Gaussian fitted to ID vectors, scored by squared Mahalanobis distance.

The covariance is sklearn's Ledoit–Wolf shrinkage estimate: with as many dimensions as pixels
(3,072 at CIFAR size) or features (512–1,792) the sample covariance is ill-conditioned, and the
shrinkage needs no tuning. Distances are computed in torch on the run's device.
"""
from __future__ import annotations

from pathlib import Path

import torch
from sklearn.covariance import LedoitWolf


class Gaussian:
    """``fit(v (N, D))`` → mean ``(D,)`` and precision ``(D, D)``; ``distance(v (B, D)) → (B,)`` ≥ 0."""

    FILE = "gaussian.pt"

    def __init__(self) -> None:
        self.mean: torch.Tensor | None = None
        self.precision: torch.Tensor | None = None

    def fit(self, v: torch.Tensor, device: torch.device) -> float:
        """Fit on the rows of ``v``; returns the Ledoit–Wolf shrinkage (in [0, 1])."""
        lw = LedoitWolf(assume_centered=False).fit(v.double().cpu().numpy())
        self.set(torch.from_numpy(lw.location_), torch.from_numpy(lw.precision_), device)
        return float(lw.shrinkage_)

    def set(self, mean: torch.Tensor, precision: torch.Tensor, device: torch.device) -> None:
        self.mean = mean.to(device, torch.float64)
        self.precision = precision.to(device, torch.float64)

    def random(self, dim: int, device: torch.device) -> None:
        """An arbitrary well-conditioned Gaussian (speed measurements: the cost is the same)."""
        self.set(torch.zeros(dim), torch.eye(dim), device)

    def distance(self, v: torch.Tensor) -> torch.Tensor:
        d = v.to(torch.float64) - self.mean
        return ((d @ self.precision) * d).sum(dim=1)

    def save(self, directory: Path) -> None:
        torch.save({"mean": self.mean.cpu(), "precision": self.precision.cpu()}, directory / self.FILE)

    def load(self, directory: Path, device: torch.device) -> None:
        state = torch.load(directory / self.FILE, map_location="cpu", weights_only=True)
        self.set(state["mean"], state["precision"], device)
