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
    """``fit(v (N, D))`` → mean ``(D,)`` and precision ``(D, D)`` (or ``fit_classes``: class means
    ``(K, D)`` and a tied precision); ``distance(v (B, D)) → (B,)`` ≥ 0."""

    FILE = "gaussian.pt"

    def __init__(self) -> None:
        self.mean: torch.Tensor | None = None
        self.precision: torch.Tensor | None = None

    def fit(self, v: torch.Tensor, device: torch.device) -> float:
        """Fit on the rows of ``v``; returns the Ledoit–Wolf shrinkage (in [0, 1])."""
        lw = LedoitWolf(assume_centered=False).fit(v.double().cpu().numpy())
        self.set(torch.from_numpy(lw.location_), torch.from_numpy(lw.precision_), device)
        return float(lw.shrinkage_)

    def fit_classes(self, v: torch.Tensor, labels: torch.Tensor, device: torch.device) -> int:
        """Lee et al. (2018): one mean per class and one covariance shared by all classes, the
        maximum-likelihood (empirical) covariance of the class-centred rows, inverted with a
        pseudo-inverse (sklearn's ``EmpiricalCovariance``, as OpenOOD). :meth:`distance` is then
        the squared Mahalanobis distance to the **closest** class mean. Returns the class count.

        Args:
            v: ``(N, D)`` vectors; labels: ``(N,)`` class indices ≥ 0.
        """
        from sklearn.covariance import EmpiricalCovariance

        x = v.double().cpu().numpy()
        y = labels.cpu().numpy()
        if len(y) != len(x) or (y < 0).any():
            raise ValueError("class-conditional Gaussians need a class label ≥ 0 for every vector")
        classes = sorted(set(y.tolist()))
        means = torch.stack([torch.from_numpy(x[y == c].mean(0)) for c in classes])
        centred = x - means.numpy()[[classes.index(c) for c in y]]
        emp = EmpiricalCovariance(assume_centered=True).fit(centred)
        self.set(means, torch.from_numpy(emp.precision_), device)
        return len(classes)

    def set(self, mean: torch.Tensor, precision: torch.Tensor, device: torch.device) -> None:
        self.mean = mean.to(device, torch.float64)
        self.precision = precision.to(device, torch.float64)

    def random(self, dim: int, device: torch.device) -> None:
        """An arbitrary well-conditioned Gaussian (speed measurements: the cost is the same)."""
        self.set(torch.zeros(dim), torch.eye(dim), device)

    def distance(self, v: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance ``(B,)`` to the mean — or, after :meth:`fit_classes`
        (means ``(K, D)``), to the closest class mean."""
        if self.mean.dim() == 2:
            return torch.stack([self._distance(v, m) for m in self.mean], dim=1).min(dim=1).values
        return self._distance(v, self.mean)

    def _distance(self, v: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        d = v.to(torch.float64) - mean
        return ((d @ self.precision) * d).sum(dim=1)

    def save(self, directory: Path) -> None:
        torch.save({"mean": self.mean.cpu(), "precision": self.precision.cpu()}, directory / self.FILE)

    def load(self, directory: Path, device: torch.device) -> None:
        state = torch.load(directory / self.FILE, map_location="cpu", weights_only=True)
        self.set(state["mean"], state["precision"], device)
