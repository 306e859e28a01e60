"""The image classifier DiffOOD guides with and MSP/energy score with: its network (ResNet-18
32×32), options, training, and the shared ``"classifier"`` artifact."""
from ood_bench.methods.classifier.artifact import ClassifierArtifact, classifier_request
from ood_bench.methods.classifier.options import ClassifierOptions, ClassifierRecipe

__all__ = ["ClassifierArtifact", "ClassifierOptions", "ClassifierRecipe", "classifier_request"]
