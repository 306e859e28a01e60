"""Pixel-space diffusion models from diffusers: the UNet factory, the noise schedule, the loss,
and the config + training of a pixel-space UNet (:class:`PixelDiffusionConfig`, :func:`train_unet`),
which the shared DDPM artifacts (:mod:`ood_bench.methods.ddpm`) use.

The paper-size configuration (Ho et al.'s DDPM CIFAR-10 UNet, used by LMD and DiffOOD) is
``base_channels=128, channel_mult=(1, 2, 2, 2), layers_per_block=2, attention_resolutions=(16,),
dropout=0.1`` at 32×32 — the same architecture as diffusers' ``google/ddpm-cifar10-32``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import dataclasses
import time
from typing import TYPE_CHECKING, Callable

import torch

from ood_bench.utils.device import synchronize
from ood_bench.utils.errors import ConfigError
from ood_bench.utils.progress import log
from ood_bench.methods.base import MethodConfig, fit_option
from ood_bench.methods.pretrained import load_pretrained_model
from ood_bench.methods.training import TrainResult, TrainSpec, seed_network, train

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers import DDPMScheduler, UNet2DModel


def build_unet(image_size: int, channels: int, base_channels: int, channel_mult: tuple[int, ...],
               layers_per_block: int, attention_resolutions: tuple[int, ...], dropout: float,
               num_class_embeds: int | None = None, norm_num_groups: int = 32) -> UNet2DModel:
    """A ``UNet2DModel``: one down/up level per ``channel_mult`` entry, attention at the listed
    feature-map resolutions (e.g. 16 for the 16×16 level of a 32×32 model).

    ``num_class_embeds`` adds a class embedding to the time embedding (class-conditional model).
    """
    from diffusers import UNet2DModel
    if image_size % (2 ** (len(channel_mult) - 1)):
        raise ConfigError(f"image_size {image_size} is not divisible by 2^{len(channel_mult) - 1} "
                          f"(one halving per channel_mult level after the first)")
    widths = tuple(base_channels * m for m in channel_mult)
    if any(w % norm_num_groups for w in widths):
        raise ConfigError(f"UNet widths {widths} must be multiples of norm_num_groups={norm_num_groups}")
    res = [image_size // 2 ** i for i in range(len(channel_mult))]
    down = tuple("AttnDownBlock2D" if r in attention_resolutions else "DownBlock2D" for r in res)
    up = tuple("AttnUpBlock2D" if r in attention_resolutions else "UpBlock2D" for r in reversed(res))
    return UNet2DModel(
        sample_size=image_size, in_channels=channels, out_channels=channels,
        block_out_channels=widths, layers_per_block=layers_per_block,
        down_block_types=down, up_block_types=up, dropout=dropout,
        norm_num_groups=norm_num_groups, attention_head_dim=None,
        num_class_embeds=num_class_embeds,
    )


def load_unet(ref: str, image_size: int, channels: int) -> UNet2DModel:
    """A pretrained diffusers ``UNet2DModel``: a local folder (``config.json`` + weights, or a
    saved pipeline with ``unet/``) or a Hugging Face repo id such as ``google/ddpm-cifar10-32``
    (see :mod:`ood_bench.methods.pretrained`)."""
    from diffusers import UNet2DModel
    unet = load_pretrained_model(UNet2DModel, ref, "unet", "UNet")
    if unet.config.sample_size not in (image_size, None) or unet.config.in_channels != channels:
        raise ConfigError(f"UNet {ref} is for {unet.config.in_channels}×{unet.config.sample_size}² images, "
                          f"but the method is configured for {channels}×{image_size}²; set image_size/channels to match")
    return unet


def ddpm_scheduler(timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> DDPMScheduler:
    """Linear-beta DDPM schedule with epsilon prediction, no sample clipping (LMD, DiffOOD)."""
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=timesteps, beta_schedule="linear", beta_start=beta_start,
                         beta_end=beta_end, prediction_type="epsilon", clip_sample=False)


LOSS_REDUCTIONS = ("mean", "sum")


def epsilon_loss(unet: UNet2DModel, x0: torch.Tensor, alphas_cumprod: torch.Tensor, g: torch.Generator,
                 class_labels: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Simple DDPM loss: ``‖ε − ε_θ(√ᾱ_t x0 + √(1−ᾱ_t) ε, t)‖²`` with ``t ~ U{0..T−1}``.

    ``reduction="mean"`` averages over batch and C×H×W (Ho et al.; LMD's ``reduce_mean=True``);
    ``"sum"`` sums over C×H×W and averages over the batch (DiffOOD's released code): the same
    minimiser, a loss 3·H·W times larger — under gradient clipping at 1 the clip is then almost
    always active, i.e. training takes normalised-gradient steps."""
    t = torch.randint(0, len(alphas_cumprod), (len(x0),), device=x0.device, generator=g)
    eps = torch.randn(x0.shape, device=x0.device, generator=g)
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    pred = unet(xt, t, class_labels=class_labels).sample
    if reduction == "sum":
        return (pred.float() - eps).pow(2).flatten(1).sum(1).mean()
    return torch.nn.functional.mse_loss(pred.float(), eps)


def random_hflip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Flip each image of ``(B, C, H, W)`` left-right with probability 1/2."""
    flip = torch.rand(len(x), device=x.device, generator=g) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


# ------------------------------------------------------------------ the model and its training, as config
@dataclass
class PixelDiffusionConfig(MethodConfig):
    """Options of a pixel-space DDPM UNet and its training, shared by LMD and DiffOOD.

    Defaults: Ho et al.'s CIFAR-10 DDPM (the model size both papers use), linear betas
    1e-4..0.02 over 1000 steps, AdamW (weight decay 0, i.e. Adam) at lr 2e-4 with 5000 warmup
    steps, gradient clipping 1, EMA 0.9999, horizontal flips.
    """

    image_size: int = fit_option(32, "side the images are resized to")
    channels: int = fit_option(3, "image channels (grayscale is repeated to 3, as the papers)")
    unet: str = fit_option("", "a pretrained diffusers UNet instead of training: a folder (save_pretrained / a saved "
                                "pipeline) or a Hugging Face repo id, e.g. google/ddpm-cifar10-32; its scheduler "
                                "config, when present, replaces the schedule options")
    base_channels: int = fit_option(128, "UNet width of the first level")
    channel_mult: tuple[int, ...] = fit_option((1, 2, 2, 2), "UNet width multipliers per level")
    layers_per_block: int = fit_option(2, "residual blocks per level")
    attention_resolutions: tuple[int, ...] = fit_option((16,), "feature-map sides with self-attention")
    dropout: float = fit_option(0.1, "UNet dropout")
    norm_groups: int = fit_option(32, "GroupNorm groups")
    diffusion_steps: int = fit_option(1000, "diffusion steps T of the schedule")
    beta_start: float = fit_option(1e-4, "linear schedule start")
    beta_end: float = fit_option(0.02, "linear schedule end")
    epochs: int = fit_option(500, "UNet training epochs (500 ≈ 195k steps on CIFAR-10 at batch 128)")
    lr: float = fit_option(2e-4, "AdamW learning rate")
    train_batch_size: int = fit_option(128, "UNet training batch size")
    warmup_steps: int = fit_option(5000, "linear lr warmup steps")
    grad_clip: float = fit_option(1.0, "gradient-norm clip")
    loss_reduction: str = fit_option("mean", "ε-loss over C×H×W: mean (Ho et al., LMD) | sum (DiffOOD's released code)")
    ema_decay: float = fit_option(0.9999, "EMA decay (EMA weights are used at test time)")
    hflip: bool = fit_option(True, "random horizontal flips in training (papers: CIFAR yes; MNIST, KMNIST, SVHN no)")
    checkpoint_every: int = fit_option(10, "epochs between resumable training checkpoints")

    def scheduler(self) -> DDPMScheduler:
        return ddpm_scheduler(self.diffusion_steps, self.beta_start, self.beta_end)

    def check_pixel_options(self) -> None:
        """Raise ``ValueError`` for options of this class that cannot work together."""
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {self.loss_reduction!r}")


def unet_from_config(c: PixelDiffusionConfig, num_class_embeds: int | None = None) -> UNet2DModel:
    return build_unet(c.image_size, c.channels, c.base_channels, tuple(c.channel_mult), c.layers_per_block,
                      tuple(c.attention_resolutions), c.dropout, num_class_embeds=num_class_embeds,
                      norm_num_groups=c.norm_groups)


def train_unet(c: PixelDiffusionConfig, images: torch.Tensor, device: torch.device, seed: int,
               work_dir: Path | None, desc: str, labels: torch.Tensor | None = None,
               num_classes: int | None = None, label_dropout: float = 0.0, compile: str | None = None,
               seed_name: str | None = None, on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train a UNet on uint8 images ``(N, C, H, W)`` with the simple ε loss; class-conditional
    when ``labels``/``num_classes`` are given (index ``num_classes`` = null class, used with
    probability ``label_dropout``). The initial weights are seeded by (``seed``, ``seed_name``;
    default ``desc``), the name that also labels the log lines and checkpoints."""
    seed_network(seed, seed_name or desc)
    unet = unet_from_config(c, None if labels is None else num_classes + 1)
    alphas = c.scheduler().alphas_cumprod.to(device)

    def loss_fn(model, batch, g):
        x0 = batch[0].float() / 127.5 - 1.0
        if c.hflip:
            x0 = random_hflip(x0, g)
        y = None
        if labels is not None:
            drop = torch.rand(len(x0), device=x0.device, generator=g) < label_dropout
            y = torch.where(drop, torch.full_like(batch[1], num_classes), batch[1])
        return epsilon_loss(model, x0, alphas, g, class_labels=y, reduction=c.loss_reduction)

    n_params = sum(p.numel() for p in unet.parameters())
    log(f"{desc}: training a {n_params / 1e6:.2f} M-parameter UNet on {len(images)} images, {c.epochs} epochs")
    spec = TrainSpec(epochs=c.epochs, batch_size=c.train_batch_size, lr=c.lr, warmup_steps=c.warmup_steps,
                     grad_clip=c.grad_clip, ema_decay=c.ema_decay, checkpoint_every=c.checkpoint_every)
    tensors = (images,) if labels is None else (images, labels)
    return train(unet, tensors, loss_fn, spec, device, seed, work_dir, desc=desc,
                 checkpoint_name=f"{desc.replace(' ', '_')}_state", compile=compile, on_step=on_step)


def unet_training_throughput(c: PixelDiffusionConfig, device: torch.device, steps: tuple[int, int] = (5, 25),
                             compile: str | None = None, num_classes: int | None = None,
                             label_dropout: float = 0.0) -> float:
    """Training img/s of ``c``'s UNet at ``c.train_batch_size`` on random images, in steady state:
    one training of ``steps[1]`` steps (one epoch), timed from the end of step ``steps[0]``
    (the warm-up: compilation, cuDNN/cuBLAS set-up, allocator growth) to the end of the last,
    device synchronised at both ends: ``img/s = batch · (s₂ − s₁) / (t(s₂) − t(s₁))``. One-off
    costs of the first steps and the final EMA copy stay outside the timed span, however large
    (a first ``torch.compile`` in a process takes far longer than a later one of the same
    network, so differencing two separate trainings does not cancel them). ``compile``: the
    ``torch.compile`` backend (``None``: eager). ``num_classes``: train a class-conditional UNet
    with random labels (null class with probability ``label_dropout``)."""
    warm, total = steps
    if not 0 < warm < total:
        raise ValueError(f"need 0 < warm-up steps < steps, got {steps}")
    bs, stamps = c.train_batch_size, {}
    cfg = dataclasses.replace(c, epochs=1, checkpoint_every=10**9)
    x = torch.randint(0, 256, (bs * total, c.channels, c.image_size, c.image_size), dtype=torch.uint8)
    labels = None if num_classes is None else torch.randint(0, num_classes, (len(x),))

    def on_step(step: int) -> None:  # step is 0-based: step warm − 1 ends the warm-up
        if step + 1 in (warm, total):
            synchronize(device)
            stamps[step + 1] = time.perf_counter()

    train_unet(cfg, x, device, 0, None, desc="unet speed", compile=compile, labels=labels,
               num_classes=num_classes, label_dropout=label_dropout, on_step=on_step)
    return bs * (total - warm) / max(stamps[total] - stamps[warm], 1e-9)
