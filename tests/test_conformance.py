"""Conformance with the released implementations, where one is installable.

DLSR's paper features come from lukemelas' ``efficientnet_pytorch`` EfficientNet-B4 (static
"same" padding computed for 380 px, fed 224-px images). Our ``tf_efficientnet_b4`` (timm +
:func:`static_same_padding`), loaded with the same (random) weights through our by-order
loader, must give the same multi-layer DLSR features.
"""
import pytest
import torch
from torch import nn

from ood_bench.methods.backbones import _same_pad, create_backbone
from ood_bench.methods.features import MultiLayerFeatures

# the last block of each of the five tapped stages in efficientnet_pytorch's B4 (the
# released code's ``outblocks``; channels 24, 32, 56, 160, 448 → 720)
B4_TAPS = (1, 5, 9, 21, 31)


class LukemelasTaps(nn.Module):
    """efficientnet_pytorch's B4 forward, returning the maps after the tapped blocks."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = self.net
        x = n._swish(n._bn0(n._conv_stem(x)))
        out = []
        for i, block in enumerate(n._blocks):
            x = block(x)
            if i in B4_TAPS:
                out.append(x)
        return out


def test_same_padding_of_the_one_b4_layer_that_differs_at_224():
    # blocks.2.0 (5x5, stride 2): 95 px at the 380-px design size, 56 px at 224
    assert _same_pad(95, 5, 2, 1) == (2, 2)  # static, what the paper's net uses at any input size
    assert _same_pad(56, 5, 2, 1) == (1, 2)  # what dynamic padding would use at 224


def test_b4_dlsr_features_match_efficientnet_pytorch_at_224():
    ep = pytest.importorskip("efficientnet_pytorch")
    torch.manual_seed(0)
    ref = ep.EfficientNet.from_name("efficientnet-b4").eval()
    with torch.no_grad():  # random BatchNorm statistics and affines too, so every tensor counts
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    file = "b4_random.pth"  # a lukemelas-format checkpoint, loaded by tensor order
    torch.save(ref.state_dict(), file)
    ours, cfg = create_backbone("tf_efficientnet_b4", file)
    assert cfg["channels"] == [24, 32, 56, 160, 448]
    ours_f = MultiLayerFeatures(ours, cfg["mean"], cfg["std"], cfg["channels"])
    ref_f = MultiLayerFeatures(LukemelasTaps(ref), cfg["mean"], cfg["std"], cfg["channels"])
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    a, b = ours_f(x), ref_f(x)
    assert a.shape == (1, 720)
    assert (a - b).abs().max() < 1e-5
