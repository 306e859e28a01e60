"""Post-hoc densities on low-dimensional feature vectors, fitted on ID training features.

Detectors that describe an image by a handful of statistics (MSMA's L noise-level norms,
DiffPath's path statistics) score it by how unlikely those statistics are under a density fitted
on the ID training images. Three densities, one interface, all on scikit-learn:

- :class:`GMMDensity` — ``StandardScaler`` → ``GaussianMixture``; the component count and
  covariance type chosen by ``GridSearchCV`` (mean held-out log-likelihood, ``KFold``), the
  winner refitted on all features. Score: negative log-likelihood.
- :class:`KDEDensity` — Gaussian ``KernelDensity``, a fixed bandwidth or one chosen by
  cross-validated log-likelihood. Score: negative log-density.
- :class:`KNNDensity` — ``NearestNeighbors``: the Euclidean distance to the k-th nearest
  training vector. Score: that distance.

Conventions: ``fit(features (N, D))`` then ``score(features (M, D)) → (M,)`` float64, **higher =
more OOD**. Every random choice (GMM initialisation, shuffled folds) is seeded by ``seed``, so
the same features and seed give bit-identical scores. Negative log-likelihoods are of the
*unstandardised* features (the scaler's log-Jacobian is added back), so ``exp(−score)``
integrates to one over feature space.

Fitted state is plain arrays + JSON (:func:`save_densities` / :func:`load_densities`:
``np.savez`` read back with ``allow_pickle=False``), so a cache file cannot execute code.
"""
from __future__ import annotations

import abc
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KernelDensity, NearestNeighbors
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ood_bench.utils.errors import ConfigError, NonFiniteScoresError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def check_features(features: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    """``features`` as a float64 ``(N, D)`` array; raises a one-line error for NaN/inf entries,
    a wrong shape or (``dim``) a dimension other than the fitted one."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ConfigError(f"{what}: expected a non-empty (N, D) feature array, got shape {f.shape}")
    if dim is not None and f.shape[1] != dim:
        raise ConfigError(f"{what}: features have {f.shape[1]} dimensions, the density was fitted on {dim}")
    bad = ~np.isfinite(f).all(axis=1)
    if bad.any():
        raise NonFiniteScoresError(
            f"{what}: {int(bad.sum())} of {len(f)} feature vectors contain NaN or inf (first at row "
            f"{int(np.argmax(bad))}); the network produced non-finite outputs — check the base model and its inputs")
    return f


class Density(abc.ABC):
    """A density (or distance) fitted on ID feature vectors ``(N, D)``; ``score`` is higher for
    vectors less typical of them."""

    kind: ClassVar[str]

    def __init__(self) -> None:
        self.dim: int | None = None
        self.scaler_mean: np.ndarray | None = None  # (D,) when standardised
        self.scaler_scale: np.ndarray | None = None  # (D,) when standardised

    @abc.abstractmethod
    def fit(self, features: np.ndarray) -> "Density":
        """Fit on ``features (N, D)`` (finite); returns ``self``."""

    @abc.abstractmethod
    def _score(self, f: np.ndarray) -> np.ndarray:
        """Scores of checked float64 features ``(M, D)`` → ``(M,)``."""

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The constructor options, JSON-plain."""

    @abc.abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (with :meth:`params` and :meth:`report`, all of it)."""

    @abc.abstractmethod
    def set_arrays(self, arrays: dict[str, np.ndarray], report: dict[str, Any]) -> None:
        """Restore the state written by :meth:`arrays` (``report`` = the saved :meth:`report`)."""

    def report(self) -> dict[str, Any]:
        """What the fit chose (JSON-plain): e.g. the grid winner and the CV table."""
        return {}

    def score(self, features: np.ndarray) -> np.ndarray:
        """``(M, D)`` → ``(M,)`` float64, higher = more OOD."""
        if self.dim is None:
            raise RuntimeError(f"{self.kind} density used before fit/load")
        return self._score(check_features(features, f"{self.kind} density scoring", self.dim))

    # -- standardisation (fitted on the fit set) ------------------------------------------
    def _fit_scaler(self, f: np.ndarray) -> np.ndarray:
        sc = StandardScaler().fit(f)
        self.scaler_mean, self.scaler_scale = sc.mean_.copy(), sc.scale_.copy()
        return self._scale(f)

    def _scale(self, f: np.ndarray) -> np.ndarray:
        return f if self.scaler_mean is None else (f - self.scaler_mean) / self.scaler_scale

    def _log_jacobian(self) -> float:
        """``Σ log scale``: −log p(x) = −log p(z) + this, for z = (x − mean)/scale."""
        return 0.0 if self.scaler_scale is None else float(np.log(self.scaler_scale).sum())

    def _scaler_arrays(self) -> dict[str, np.ndarray]:
        if self.scaler_mean is None:
            return {}
        return {"scaler_mean": self.scaler_mean, "scaler_scale": self.scaler_scale}

    def _set_scaler(self, a: dict[str, np.ndarray]) -> None:
        self.scaler_mean, self.scaler_scale = a.get("scaler_mean"), a.get("scaler_scale")


def _folds(n: int, folds: int, shuffle: bool, seed: int, smallest_train: int, what: str) -> KFold:
    """A ``KFold`` after checking that every training fold keeps ≥ ``smallest_train`` samples."""
    if folds < 2:
        raise ConfigError(f"{what}: cv_folds must be ≥ 2, got {folds}")
    if n < folds:
        raise ConfigError(f"{what}: {n} feature vectors are too few for {folds}-fold cross-validation; "
                          f"fit on more ID training images or lower cv_folds")
    train_size = n - math.ceil(n / folds)
    if train_size < smallest_train:
        raise ConfigError(f"{what}: {folds}-fold cross-validation on {n} vectors leaves {train_size} per training "
                          f"fold, fewer than the {smallest_train} needed; fit on more ID training images, or lower "
                          f"cv_folds or the largest grid value")
    return KFold(n_splits=folds, shuffle=shuffle, random_state=seed if shuffle else None)


def _cv_table(search: GridSearchCV, names: dict[str, str]) -> list[dict[str, Any]]:
    res = search.cv_results_
    rows = []
    for i, p in enumerate(res["params"]):
        row = {names[k]: (v.item() if hasattr(v, "item") else v) for k, v in p.items()}
        row["mean_loglik"] = float(res["mean_test_score"][i])
        row["std_loglik"] = float(res["std_test_score"][i])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------- GMM
class GMMDensity(Density):
    """``StandardScaler`` (optional) → ``GaussianMixture``, chosen over ``components`` ×
    ``covariances`` by ``cv_folds``-fold CV on the mean held-out log-likelihood (the scaler
    refitted inside each fold), then refitted on every vector. A one-point grid skips the CV.

    Args:
        components: candidate numbers of mixture components.
        covariances: candidate ``covariance_type`` values (``full``, ``tied``, ``diag``, ``spherical``).
        cv_folds: folds of the grid search.
        shuffle: shuffle before splitting (seeded); ``False`` = contiguous folds.
        seed: ``random_state`` of every ``GaussianMixture`` and of shuffled folds.
        max_iter, tol, reg_covar, n_init: ``GaussianMixture`` options.
        standardize: standardise the features first (fitted on the fit set).
    Score: ``−log p(x)`` (higher = more OOD).
    """

    kind = "gmm"

    def __init__(self, components: tuple[int, ...] = (2, 4, 6, 8, 10, 12, 14, 16, 18, 20),
                 covariances: tuple[str, ...] = ("full",), cv_folds: int = 10, shuffle: bool = False,
                 seed: int = 0, max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6,
                 n_init: int = 1, standardize: bool = True) -> None:
        super().__init__()
        self.components = tuple(int(c) for c in components)
        self.covariances = tuple(covariances)
        if not self.components or min(self.components) < 1:
            raise ConfigError(f"gmm components must be a non-empty list of integers ≥ 1, got {list(components)}")
        bad = [c for c in self.covariances if c not in COVARIANCE_TYPES]
        if bad or not self.covariances:
            raise ConfigError(f"gmm covariances must be among {COVARIANCE_TYPES}, got {list(covariances)}")
        self.cv_folds, self.shuffle, self.seed = int(cv_folds), bool(shuffle), int(seed)
        self.max_iter, self.tol, self.reg_covar, self.n_init = int(max_iter), float(tol), float(reg_covar), int(n_init)
        self.standardize = bool(standardize)
        self.gmm: GaussianMixture | None = None
        self._report: dict[str, Any] = {}

    def _mixture(self, n: int = 1, cov: str = "full") -> GaussianMixture:
        return GaussianMixture(n_components=n, covariance_type=cov, max_iter=self.max_iter, tol=self.tol,
                               reg_covar=self.reg_covar, n_init=self.n_init, init_params="kmeans",
                               random_state=self.seed)

    def fit(self, features: np.ndarray) -> "GMMDensity":
        f = check_features(features, "gmm density fit")
        grid = [(k, c) for k in self.components for c in self.covariances]
        cv_table: list[dict[str, Any]] = []
        if len(grid) == 1:
            best_k, best_cov = grid[0]
            if len(f) < best_k:
                raise ConfigError(f"gmm density fit: {len(f)} feature vectors are fewer than the {best_k} components; "
                                  f"fit on more ID training images or use fewer components")
        else:
            folds = _folds(len(f), self.cv_folds, self.shuffle, self.seed, max(self.components), "gmm density fit")
            steps = [("gmm", self._mixture())]
            if self.standardize:
                steps.insert(0, ("scale", StandardScaler()))
            search = GridSearchCV(Pipeline(steps), {"gmm__n_components": list(self.components),
                                                    "gmm__covariance_type": list(self.covariances)},
                                  cv=folds, refit=False, error_score="raise")
            search.fit(f)
            best = search.best_params_
            best_k, best_cov = int(best["gmm__n_components"]), str(best["gmm__covariance_type"])
            cv_table = _cv_table(search, {"gmm__n_components": "components", "gmm__covariance_type": "covariance"})
        z = self._fit_scaler(f) if self.standardize else f
        self.gmm = self._mixture(best_k, best_cov).fit(z)
        self.dim = f.shape[1]
        self._report = {"components": best_k, "covariance": best_cov, "converged": bool(self.gmm.converged_),
                        "cv": cv_table}
        return self

    def _score(self, f: np.ndarray) -> np.ndarray:
        return -self.gmm.score_samples(self._scale(f)) + self._log_jacobian()

    def params(self) -> dict[str, Any]:
        return {"components": list(self.components), "covariances": list(self.covariances),
                "cv_folds": self.cv_folds, "shuffle": self.shuffle, "seed": self.seed, "max_iter": self.max_iter,
                "tol": self.tol, "reg_covar": self.reg_covar, "n_init": self.n_init, "standardize": self.standardize}

    def report(self) -> dict[str, Any]:
        return self._report

    def arrays(self) -> dict[str, np.ndarray]:
        g = self.gmm
        return {"weights": g.weights_, "means": g.means_, "covariances": g.covariances_,
                "precisions_cholesky": g.precisions_cholesky_, **self._scaler_arrays()}

    def set_arrays(self, arrays: dict[str, np.ndarray], report: dict[str, Any]) -> None:
        self._report = report
        g = self._mixture(int(report["components"]), str(report["covariance"]))
        g.weights_, g.means_ = arrays["weights"], arrays["means"]
        g.covariances_, g.precisions_cholesky_ = arrays["covariances"], arrays["precisions_cholesky"]
        g.n_features_in_ = arrays["means"].shape[1]
        g.converged_, g.n_iter_, g.lower_bound_ = bool(report.get("converged", True)), 0, -np.inf
        self.gmm, self.dim = g, int(arrays["means"].shape[1])
        self._set_scaler(arrays)


# ---------------------------------------------------------------------------- KDE
class KDEDensity(Density):
    """Gaussian ``KernelDensity`` on (optionally standardised) features.

    ``bandwidth`` > 0: fixed (DiffPath: 5.0 on its raw 1-D statistic). ``bandwidth`` = 0: chosen
    from ``bandwidth_grid`` × Scott's factor ``N^(−1/(D+4))`` (× the mean feature standard
    deviation when not standardised) by ``cv_folds``-fold CV (shuffled, seeded) on held-out
    log-likelihood. Score: ``−log p(x)``.
    """

    kind = "kde"

    def __init__(self, bandwidth: float = 0.0, bandwidth_grid: tuple[float, ...] = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0),
                 cv_folds: int = 5, seed: int = 0, standardize: bool = False) -> None:
        super().__init__()
        if bandwidth < 0 or not bandwidth_grid or min(bandwidth_grid) <= 0:
            raise ConfigError(f"kde bandwidth must be > 0 (or 0 = cross-validated over a positive grid), got {bandwidth}")
        self.bandwidth, self.bandwidth_grid = float(bandwidth), tuple(float(b) for b in bandwidth_grid)
        self.cv_folds, self.seed, self.standardize = int(cv_folds), int(seed), bool(standardize)
        self.data: np.ndarray | None = None
        self.kde: KernelDensity | None = None
        self._report: dict[str, Any] = {}

    def fit(self, features: np.ndarray) -> "KDEDensity":
        f = check_features(features, "kde density fit")
        z = self._fit_scaler(f) if self.standardize else f
        cv_table: list[dict[str, Any]] = []
        bw = self.bandwidth
        if bw == 0:
            folds = _folds(len(z), self.cv_folds, True, self.seed, 1, "kde density fit")
            spread = 1.0 if self.standardize else float(z.std(axis=0).mean()) or 1.0
            scott = spread * len(z) ** (-1.0 / (z.shape[1] + 4))
            grid = [scott * b for b in self.bandwidth_grid]
            search = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": grid}, cv=folds, refit=False,
                                  error_score="raise")
            search.fit(z)
            bw = float(search.best_params_["bandwidth"])
            cv_table = _cv_table(search, {"bandwidth": "bandwidth"})
        self._set(z, bw)
        self._report = {"bandwidth": bw, "cv": cv_table}
        return self

    def _set(self, z: np.ndarray, bw: float) -> None:
        self.data, self.dim = z, z.shape[1]
        self.kde = KernelDensity(kernel="gaussian", bandwidth=bw).fit(z)

    def _score(self, f: np.ndarray) -> np.ndarray:
        return -self.kde.score_samples(self._scale(f)) + self._log_jacobian()

    def params(self) -> dict[str, Any]:
        return {"bandwidth": self.bandwidth, "bandwidth_grid": list(self.bandwidth_grid), "cv_folds": self.cv_folds,
                "seed": self.seed, "standardize": self.standardize}

    def report(self) -> dict[str, Any]:
        return self._report

    def arrays(self) -> dict[str, np.ndarray]:
        return {"data": self.data, **self._scaler_arrays()}

    def set_arrays(self, arrays: dict[str, np.ndarray], report: dict[str, Any]) -> None:
        self._report = report
        self._set_scaler(arrays)
        self._set(arrays["data"], float(report["bandwidth"]))


# ---------------------------------------------------------------------------- kNN
class KNNDensity(Density):
    """Distance to the ``k``-th nearest fit vector (Euclidean, kd-tree), on raw features by
    default (MSMA) or standardised ones. Score: that distance (≥ 0, higher = more OOD)."""

    kind = "knn"

    def __init__(self, k: int = 5, standardize: bool = False) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"knn k must be ≥ 1, got {k}")
        self.k, self.standardize = int(k), bool(standardize)
        self.data: np.ndarray | None = None
        self.nn: NearestNeighbors | None = None

    def fit(self, features: np.ndarray) -> "KNNDensity":
        f = check_features(features, "knn density fit")
        if len(f) < self.k:
            raise ConfigError(f"knn density fit: {len(f)} feature vectors are fewer than k = {self.k}; "
                              f"fit on more ID training images or lower k")
        self._set(self._fit_scaler(f) if self.standardize else f)
        return self

    def _set(self, z: np.ndarray) -> None:
        self.data, self.dim = z, z.shape[1]
        self.nn = NearestNeighbors(n_neighbors=self.k, algorithm="kd_tree", metric="euclidean").fit(z)

    def _score(self, f: np.ndarray) -> np.ndarray:
        dist, _ = self.nn.kneighbors(self._scale(f), n_neighbors=self.k)
        return dist[:, -1]

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "standardize": self.standardize}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"data": self.data, **self._scaler_arrays()}

    def set_arrays(self, arrays: dict[str, np.ndarray], report: dict[str, Any]) -> None:
        self._set_scaler(arrays)
        self._set(arrays["data"])


DENSITY_TYPES: dict[str, type[Density]] = {c.kind: c for c in (GMMDensity, KDEDensity, KNNDensity)}


# ---------------------------------------------------------------------------- state on disk
def save_densities(densities: dict[str, Density], directory: Path, stem: str = "density") -> None:
    """Write fitted densities as ``<stem>.npz`` (arrays, no pickle) + ``<stem>.json``
    (kind, options and fit report of each, by name)."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for name, d in densities.items():
        if "." in name:
            raise ValueError(f"density names may not contain '.': {name!r}")
        for k, v in d.arrays().items():
            arrays[f"{name}.{k}"] = np.asarray(v)
        meta[name] = {"kind": d.kind, "params": d.params(), "report": d.report()}
    np.savez(Path(directory) / f"{stem}.npz", **arrays)
    (Path(directory) / f"{stem}.json").write_text(json.dumps(meta, indent=1))


def load_densities(directory: Path, stem: str = "density") -> dict[str, Density]:
    """Read what :func:`save_densities` wrote (``allow_pickle=False``)."""
    meta = json.loads((Path(directory) / f"{stem}.json").read_text())
    with np.load(Path(directory) / f"{stem}.npz", allow_pickle=False) as z:
        stored = {k: z[k] for k in z.files}
    out: dict[str, Density] = {}
    for name, m in meta.items():
        d = DENSITY_TYPES[m["kind"]](**m["params"])
        prefix = f"{name}."
        d.set_arrays({k[len(prefix):]: v for k, v in stored.items() if k.startswith(prefix)}, m["report"])
        out[name] = d
    return out
