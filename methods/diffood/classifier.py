"""The classifier under DiffOOD: ResNet-18 for 32×32 inputs (OpenOOD's ``ResNet18_32x32``).

A 3×3 stride-1 stem without max-pool, then four stages of two timm ``BasicBlock``s with widths
``(w, 2w, 4w, 8w)`` (w = 64 in the paper) and strides (1, 2, 2, 2), global average pooling and a
linear head. (timm's ``ResNet`` class fixes a 64-channel stem, so the stages are assembled here
from its blocks.) Inputs are images in ``[0, 1]`` of any side; :class:`Classifier` resizes them
(bilinear) to its ``input_size`` (32: the network's design resolution, where the last stage is
4×4 before pooling) and applies the ID training set's per-channel mean/std normalisation.
``forward`` returns ``(logits (B, K), features (B, 8w))``.

OpenOOD checkpoints hold the same tensors in the same order (their ``shortcut`` is our
``downsample``), so :func:`methods.backbones.load_by_order` loads them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.resnet import BasicBlock
from torch import nn


def _stage(inplanes: int, planes: int, stride: int, blocks: int = 2) -> nn.Sequential:
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


class Classifier(nn.Module):
    """:class:`ResNet18x32` behind resizing to ``input_size`` (0 = keep the input's size) and the
    ID set's mean/std normalisation; inputs ``(B, C, H, W)`` in ``[0, 1]``."""

    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 64, input_size: int = 32) -> None:
        super().__init__()
        self.input_size = input_size
        self.net = ResNet18x32(num_classes, in_chans, width)
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
