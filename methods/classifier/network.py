"""The classifier of DiffOOD, MSP and energy: ResNet-18 for 32×32 inputs (OpenOOD's ``ResNet18_32x32``).

A 3×3 stride-1 stem without max-pool, then four stages of two timm ``BasicBlock``s with widths
``(w, 2w, 4w, 8w)`` (w = 64 in the paper) and strides (1, 2, 2, 2), global average pooling and a
linear head. (timm's ``ResNet`` class fixes a 64-channel stem, so the stages are assembled here
from its blocks.) Inputs are images in ``[0, 1]`` of any side; :class:`Classifier` resizes them
(bilinear) to its ``input_size`` (32: the network's design resolution, where the last stage is
4×4 before pooling) and applies the ID training set's per-channel mean/std normalisation.
``forward`` returns ``(logits (B, K), features (B, 8w))``.

OpenOOD checkpoints hold the same tensors in the same order (their ``shortcut`` is our
``downsample``), so :func:`ood_bench.methods.backbones.load_by_order` loads them.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ood_bench.methods.backbones import load_by_order
from ood_bench.methods.features import FeatureOptions, MultiLayerFeatures, build_features
from ood_bench.methods.pretrained import load_weights, pretrained_folder
from ood_bench.methods.training import TrainSpec, fixed_threads, seed_network, train
from ood_bench.utils.errors import MissingWeightsError
from ood_bench.methods.unet import random_hflip

if TYPE_CHECKING:
    from timm.models.resnet import BasicBlock
    from ood_bench.methods.classifier.options import ClassifierOptions


def _stage(inplanes: int, planes: int, stride: int, blocks: int = 2) -> nn.Sequential:
    from timm.models.resnet import BasicBlock
    down = None
    if stride != 1 or inplanes != planes:
        down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
    layers = [BasicBlock(inplanes, planes, stride=stride, downsample=down)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet18x32(nn.Module):
    """The network alone (no normalisation): ``(B, C, H, W) → (logits, features)``."""

    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 64) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_chans, w, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.layer1 = _stage(w, w, 1)
        self.layer2 = _stage(w, 2 * w, 2)
        self.layer3 = _stage(2 * w, 4 * w, 2)
        self.layer4 = _stage(4 * w, 8 * w, 2)
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        feats = h.mean(dim=(2, 3))
        return self.fc(feats), feats


class FrozenFeatureNet(nn.Module):
    """A frozen :class:`~ood_bench.methods.features.MultiLayerFeatures` extractor (DLSR's
    per-layer standardised vectors, ``(B, c)``) under a linear head: ``(B, C, H, W)`` in
    ``[0, 1]`` (one channel is repeated to three) → ``(logits (B, K), features (B, c))``.
    Only ``fc`` trains; the extractor stays in eval mode."""

    def __init__(self, features: MultiLayerFeatures, num_classes: int) -> None:
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.fc = nn.Linear(features.dim, num_classes)

    def train(self, mode: bool = True) -> "FrozenFeatureNet":
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)
        return self.fc(feats), feats


class Classifier(nn.Module):
    """:class:`ResNet18x32` (or a given ``net`` with the same output, e.g. :class:`FrozenFeatureNet`)
    behind resizing to ``input_size`` (0 = keep the input's size) and the ID set's mean/std
    normalisation; inputs ``(B, C, H, W)`` in ``[0, 1]``."""

    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 64, input_size: int = 32,
                 net: nn.Module | None = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.net = net if net is not None else ResNet18x32(num_classes, in_chans, width)
        self.register_buffer("mean", torch.zeros(1, in_chans, 1, 1))
        self.register_buffer("std", torch.ones(1, in_chans, 1, 1))

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean.view_as(self.mean))
        self.std.copy_(std.view_as(self.std))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.input_size
        if size and x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return self.net((x - self.mean) / self.std)


def random_crop(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Per-sample random crop after zero padding by ``pad`` (the CIFAR "pad 4, crop 32")."""
    if pad <= 0:
        return x
    b, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=g)
    ox = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=g)
    rows = (oy.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1).expand(-1, x.shape[1], -1, xp.shape[-1])
    xp = xp.gather(2, rows)
    cols = (ox.view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w).expand(-1, x.shape[1], h, -1)
    return xp.gather(3, cols)


CHECKPOINT_PATTERNS = ("*.pt", "*.pth", "*.ckpt")


def classifier_file(ref: str) -> Path:
    """The checkpoint named by ``classifier_path``: a file; or, in a folder or Hugging Face repo
    id, ``classifier.pt`` (what :func:`save_classifier` writes) or the folder's only checkpoint."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    folder = pretrained_folder(ref, "classifier", CHECKPOINT_PATTERNS)
    if (folder / "classifier.pt").is_file():
        return folder / "classifier.pt"
    found = sorted(f for pat in CHECKPOINT_PATTERNS for f in folder.glob(pat))
    if len(found) != 1:
        raise MissingWeightsError(f"classifier {ref}: expected classifier.pt or exactly one .pt/.pth/.ckpt file in "
                                  f"{folder}, found {len(found)}; pass the checkpoint file itself")
    return found[0]


def save_classifier(clf: Classifier, folder: Path) -> None:
    """``folder/classifier.pt``: the state dict (network + normalisation), reusable as ``classifier_path``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(clf.state_dict(), folder / "classifier.pt")


def new_classifier(c: ClassifierOptions, num_classes: int) -> Classifier:
    """An untrained :class:`Classifier` at the configured width and input size; with
    ``classifier_backbone``, a :class:`FrozenFeatureNet` on that backbone's weights (its own
    normalisation, so the classifier's stays the identity)."""
    if c.classifier_backbone:
        feats, _ = build_features(FeatureOptions(backbone=c.classifier_backbone, weights=c.classifier_weights,
                                                 image_size=c.classifier_size), torch.device("cpu"))
        return Classifier(num_classes, c.channels, input_size=c.classifier_size, net=FrozenFeatureNet(feats, num_classes))
    return Classifier(num_classes, c.channels, c.classifier_width, c.classifier_size)


def _fit_head(clf: Classifier, c: ClassifierOptions, x: torch.Tensor, y: torch.Tensor, device: torch.device,
              seed: int, work_dir: Path | None, compile: str | None) -> float:
    """Train ``clf.net.fc`` (cross-entropy, the classifier's SGD recipe) on the frozen features of
    uint8 images ``x``, extracted once; returns the last epoch's mean loss."""
    net = clf.net.to(device)
    with torch.no_grad():
        feats = torch.cat([clf(xb.to(device).float() / 255)[1].float().cpu() for xb in x.split(256)])

    def loss_fn(model, batch, g):
        return F.cross_entropy(model(batch[0]).float(), batch[1])

    spec = TrainSpec(epochs=c.classifier_epochs, batch_size=c.classifier_batch_size, lr=c.classifier_lr,
                     weight_decay=c.classifier_weight_decay, optimizer="sgd", momentum=c.classifier_momentum,
                     nesterov=True, schedule="cosine", checkpoint_every=c.checkpoint_every)
    res = train(net.fc, (feats, y), loss_fn, spec, device, seed, work_dir,
                desc="classifier head", checkpoint_name="classifier_state", compile=compile)
    net.fc = res.model
    return res.epoch_losses[-1]


def fit_classifier(c: ClassifierOptions, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                   device: torch.device, seed: int, work_dir: Path | None,
                   log: Callable[[str], None], compile: str | None = None) -> tuple[Classifier, dict[str, float]]:
    """Train (or load, with ``classifier_path``) the classifier on uint8 images ``x (N, C, H, W)``
    with labels ``y (N,)``; returns it in eval mode on ``device`` and a report (train accuracy,
    final loss). Normalisation uses the training images' per-channel mean/std. ``compile``:
    the ``torch.compile`` backend of the training steps, ``None`` = eager (see :func:`~ood_bench.methods.training.train`)."""
    seed_network(seed, "classifier")
    clf = new_classifier(c, num_classes)
    xf = x.float() / 255
    if not c.classifier_backbone:
        with fixed_threads(torch.device("cpu")):  # a reduction: its last bits depend on the thread count
            clf.set_normalization(xf.mean(dim=(0, 2, 3)), xf.std(dim=(0, 2, 3)).clamp_min(1e-3))
    if c.classifier_path:
        state = load_weights(classifier_file(c.classifier_path), "classifier_path")
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if any(k.startswith("net.") for k in state):
            clf.load_state_dict(state)
        else:  # OpenOOD / torchvision naming: the network only, same tensor order
            load_by_order(clf.net, state, source=c.classifier_path)
        log(f"using the classifier in {c.classifier_path}")
        return clf.to(device).eval(), {}
    if c.classifier_backbone:
        log(f"training a linear head on frozen {c.classifier_backbone} features ({c.classifier_size} px) of "
            f"{len(x)} images, {num_classes} classes, {c.classifier_epochs} epochs")
        with fixed_threads(device):
            loss = _fit_head(clf, c, x, y, device, seed, work_dir, compile)
        clf = clf.to(device).eval()
        with torch.no_grad():
            pred = torch.cat([clf(xb.to(device).float() / 255)[0].argmax(1).cpu() for xb in x.split(512)])
        return clf, {"classifier_train_acc": float((pred == y).float().mean()), "classifier_final_loss": loss}
    pad = c.classifier_crop_pad * c.image_size // 32

    def loss_fn(model, batch, g):
        xb, yb = batch[0].float() / 255, batch[1]
        xb = random_crop(xb, pad, g)
        if c.hflip:
            xb = random_hflip(xb, g)
        return F.cross_entropy(model(xb)[0].float(), yb)

    log(f"training the ResNet-18 classifier (width {c.classifier_width}, "
        f"{c.classifier_size or c.image_size} px) on {len(x)} images, "
        f"{num_classes} classes, {c.classifier_epochs} epochs")
    spec = TrainSpec(epochs=c.classifier_epochs, batch_size=c.classifier_batch_size, lr=c.classifier_lr,
                     weight_decay=c.classifier_weight_decay, optimizer="sgd", momentum=c.classifier_momentum,
                     nesterov=True, schedule="cosine", checkpoint_every=c.checkpoint_every)
    res = train(clf, (x, y), loss_fn, spec, device, seed, work_dir,
                desc="classifier", checkpoint_name="classifier_state", compile=compile)
    clf = res.model.eval()
    with torch.no_grad():
        pred = torch.cat([clf(xb.to(device).float() / 255)[0].argmax(1).cpu() for xb in x.split(512)])
    return clf, {"classifier_train_acc": float((pred == y).float().mean()),
                 "classifier_final_loss": res.epoch_losses[-1]}
