"""LFDN: the latent feature diffusion network of DLSR — an MLP denoiser on feature vectors.

Shapes: ``x`` is ``(B, c)`` (c = total feature dimension, 720 for EfficientNet-B4), ``t`` is
``(B,)`` integer timesteps; the output is ``(B, c)``, the predicted clean vector ``x0``.
The time embedding uses diffusers' sinusoidal ``Timesteps`` (``width`` dims) +
``TimestepEmbedding`` (Linear → SiLU → Linear to ``c`` dims), added in every residual block,
as in the reference code. Deviation: the reference applies a SiLU to the input vector before
the input Linear; we follow the paper's description (Linear only), since SiLU would squash the
negative half of standardised features.

The network is a diffusers ``ModelMixin``/``ConfigMixin``: ``save_pretrained(folder)`` writes
``config.json`` + weights, and ``LFDN.from_pretrained(folder)`` (or ``dlsr.lfdn=<folder or
Hugging Face repo id>``) rebuilds it, so a trained LFDN can be published and reused.
"""
from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn


def zero_linear(i: int, o: int) -> nn.Linear:
    """A Linear initialised to zero, so each residual block starts as the identity."""
    lin = nn.Linear(i, o)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class ResBlock(nn.Module):
    """``h = W1 SiLU(GN(x)); h += Wt SiLU(temb); h = W2 SiLU(GN(h)); return x + h`` (W2 zero-init)."""

    def __init__(self, width: int, temb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(1, width)
        self.lin1 = nn.Linear(width, width)
        self.temb = nn.Linear(temb_dim, width)
        self.norm2 = nn.GroupNorm(1, width)
        self.lin2 = zero_linear(width, width)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.lin1(self.act(self.norm1(x)))
        h = h + self.temb(self.act(temb))
        h = self.lin2(self.act(self.norm2(h)))
        return x + h


class LFDN(ModelMixin, ConfigMixin):
    """MLP diffusion model over ``dim``-dimensional features (paper: width 1440, 16 blocks, ≈ 87 M
    parameters for dim 720). Unconditional; predicts ``x0``."""

    @register_to_config
    def __init__(self, dim: int, width: int = 1440, num_blocks: int = 16) -> None:
        super().__init__()
        self.dim, self.width, self.n_blocks = dim, width, num_blocks
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(width, dim)
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(ResBlock(width, dim) for _ in range(num_blocks))
        self.out = nn.Sequential(nn.GroupNorm(1, width), nn.SiLU(), zero_linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        temb = self.time_embed(self.time_proj(t).to(x.dtype))
        h = self.inp(x)
        for blk in self.blocks:
            h = blk(h, temb)
        return self.out(h)
