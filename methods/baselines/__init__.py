"""Simple baselines beside the diffusion detectors, registered like any method.

- ``pixel-mahalanobis``: a Gaussian on raw pixels (:mod:`.mahalanobis`);
- ``mahalanobis``, ``knn``: a Gaussian, resp. the k-th nearest neighbour (Sun et al., ICML 2022),
  on the *same* multi-layer backbone features DLSR reconstructs (:mod:`.feature_space`), so a
  reader sees what DLSR's diffusion model adds on top of its features;
- ``msp``, ``energy``: maximum softmax probability (Hendrycks & Gimpel, 2017) and the energy
  score (Liu et al., NeurIPS 2020) of DiffOOD's classifier (:mod:`.classifier_scores`); they
  need a labelled ID set.
"""
from ood_bench.methods.baselines.classifier_scores import MSP, Energy
from ood_bench.methods.baselines.feature_space import KNN, FeatureMahalanobis
from ood_bench.methods.baselines.mahalanobis import PixelMahalanobis

__all__ = ["Energy", "FeatureMahalanobis", "KNN", "MSP", "PixelMahalanobis"]
