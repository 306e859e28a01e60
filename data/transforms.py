"""Converting dataset images to what a method's network takes.

Datasets return PIL images in their native size and mode; :class:`ImageTransform` makes them a
float tensor ``(channels, size, size)`` in ``[0, 1]``. Normalisation (ImageNet mean/std, the ID
set's mean/std, ``[-1, 1]`` for diffusion) is the method's business and is done on the device.

The transform has two halves so that the GPU data path can split them between processes:
:meth:`ImageTransform.decode` (PIL → ``uint8`` tensor at the native size; runs in the loader's
workers) and :meth:`ImageTransform.finish` (``uint8`` → float, resize, crop; runs on the device,
on whole batches). On a CPU both halves run per image in the loader, exactly as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image


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
        return self.finish(self.decode(img))

    def decode(self, img: Image.Image) -> torch.Tensor:
        """The image in the method's colour mode at its native size: ``uint8 (channels, H, W)``."""
        from torchvision.transforms.v2 import functional as TF  # deferred: see ood_bench.methods (imports)
        return TF.pil_to_tensor(img.convert("RGB" if self.channels == 3 else "L"))

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """``uint8`` images ``(C, H, W)`` or ``(B, C, H, W)`` (any device) → float in ``[0, 1]`` at
        ``size``×``size``, on the same device."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF
        t = TF.to_dtype(x, torch.float32, scale=True)
        if t.shape[-2:] != (self.size, self.size):
            t = TF.resize(t, [self.size], interpolation=InterpolationMode.BILINEAR, antialias=True)
            t = TF.center_crop(t, [self.size, self.size])
        return t.clamp_(0.0, 1.0)
