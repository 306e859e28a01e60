"""Converting dataset images to what a method's network takes.

Datasets return PIL images in their native size and mode; :class:`ImageTransform` makes them a
float tensor ``(channels, size, size)`` in ``[0, 1]``. Normalisation (ImageNet mean/std, the ID
set's mean/std, ``[-1, 1]`` for diffusion) is the method's business and is done on the device.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF


@dataclass(frozen=True)
class ImageTransform:
    """PIL image → float tensor ``(channels, size, size)``, values in ``[0, 1]``.

    Grayscale images become 3 channels by repetition when ``channels == 3``, colour images are
    converted to luminance when ``channels == 1``. The shorter side is resized to ``size``
    (bilinear, antialiased when shrinking) and the centre ``size``×``size`` crop is kept.
    """

    size: int
    channels: int = 3

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = img.convert("RGB" if self.channels == 3 else "L")
        t = TF.to_dtype(TF.pil_to_tensor(img), torch.float32, scale=True)
        if t.shape[-2:] != (self.size, self.size):
            t = TF.resize(t, [self.size], interpolation=InterpolationMode.BILINEAR, antialias=True)
            t = TF.center_crop(t, [self.size, self.size])
        return t.clamp_(0.0, 1.0)
