"""The classifier's options (DiffOOD's ResNet-18 32×32 and its OpenOOD training recipe), shared by
DiffOOD, MSP and energy: one set of options, so they can ask for one classifier artifact."""
from __future__ import annotations

from dataclasses import dataclass

from ood_bench.methods.base import MethodConfig, fit_option


@dataclass
class ClassifierOptions(MethodConfig):
    """DiffOOD's classifier and its training (the paper's ResNet-18 32x32, OpenOOD recipe).

    Shared with the MSP and energy baselines, so they score with the same network and recipe.
    The image options the training reads (``image_size``, ``channels``, ``hflip``) come from the
    method's config: see :class:`ClassifierRecipe`.
    """

    classifier_path: str = fit_option("", "a trained classifier instead of training (ours or OpenOOD's ResNet18_32x32): "
                                          "a checkpoint file, or a folder / Hugging Face repo id holding classifier.pt")
    classifier_width: int = fit_option(64, "ResNet-18 stem/first-stage width")
    classifier_size: int = fit_option(32, "side the classifier sees: images are resized (bilinear) to it, "
                                          "the ResNet-18 32x32's design resolution (0 = the image size)")
    classifier_epochs: int = fit_option(100, "SGD epochs")
    classifier_lr: float = fit_option(0.1, "SGD learning rate (cosine schedule)")
    classifier_momentum: float = fit_option(0.9, "SGD momentum (Nesterov)")
    classifier_weight_decay: float = fit_option(5e-4, "SGD weight decay")
    classifier_batch_size: int = fit_option(128, "classifier batch size")
    classifier_crop_pad: int = fit_option(4, "random-crop padding at 32 px (0 = no crop augmentation)")
    classifier_backbone: str = fit_option("", "'' = the ResNet-18 32x32 trained from scratch (paper); a timm backbone "
                                              "(tf_efficientnet_lite0, tf_efficientnet_b4, resnet50) = its frozen "
                                              "multi-layer features (DLSR's, at classifier_size px) under a trained "
                                              "linear head (width, crop and flips then do not apply)")
    classifier_weights: str = fit_option("auto", "weights of classifier_backbone: auto | <file.pth> | timm | random")


@dataclass
class ClassifierRecipe(ClassifierOptions):
    """Everything that determines a trained classifier: :class:`ClassifierOptions` plus the image
    options its training reads (the recipe of a ``"classifier"`` artifact)."""

    image_size: int = fit_option(32, "side the images are resized to before the classifier's own resize")
    channels: int = fit_option(3, "image channels")
    hflip: bool = fit_option(True, "random horizontal flips in training")
    checkpoint_every: int = fit_option(10, "epochs between resumable training checkpoints")
