"""LMD — Lift, Map, Detect (Liu et al., ICML 2023): OOD detection by diffusion inpainting.

Fit: train a DDPM (diffusers ``UNet2DModel`` + ``DDPMScheduler``, linear betas 1e-4..0.02,
T = 1000, ε-prediction, ``clip_sample=False``) on the ID training images in ``[-1, 1]`` —
AdamW (wd 0, i.e. Adam), lr 2e-4, warmup, gradient clipping 1, EMA 0.9999, horizontal flips — or
load a pretrained diffusers UNet folder (``unet_path``).

Score, per image: ``reps`` masks (:mod:`methods.lmd.masks`, default alternating checkerboards),
all repetitions inpainted as one batch (:mod:`methods.lmd.inpaint`), a distance between the image
and each inpainting (:mod:`methods.lmd.distances`), **median** over repetitions. Higher = more OOD.
Every distance in ``distances`` is a sub-score (the inpaintings are shared); ``score`` picks the
canonical one.

Deviation from the paper: the original model is a score-SDE with the sub-VP SDE (β 0.1..20,
N = 1000, Euler–Maruyama); here the VP discretisation of diffusers' DDPM (an analogue, not a
replica). The original runs repetitions one after another; here they are batched.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from diffusers import UNet2DModel

from benchmark.registry import register_method
from data.base import ImageDataset
from data.loading import materialize
from data.transforms import ImageTransform
from methods.base import BatchOutput, OODMethod
from methods.examples import N_EXAMPLES, save_grid
from methods.lmd.config import LMDConfig
from methods.lmd.distances import DISTANCE_TYPES, Distance, build_distance, check_lpips_weights
from methods.lmd.inpaint import inpaint
from methods.lmd.masks import make_masks
from methods.training import TrainSpec, train
from methods.unet import build_unet, ddpm_scheduler, epsilon_loss, load_unet, random_hflip


@register_method("lmd")
class LMD(OODMethod):
    """Diffusion inpainting of checkerboard-masked images; distance to the original. Unsupervised."""

    config_cls = LMDConfig
    needs_labels = False
    version = "1"
    default_batch_size = 32
    config: LMDConfig

    def __init__(self, config: LMDConfig, ctx) -> None:
        super().__init__(config, ctx)
        self._transform = ImageTransform(config.image_size, config.channels)
        self.scheduler = ddpm_scheduler(config.timesteps, config.beta_start, config.beta_end)
        self.unet: UNet2DModel | None = None
        self._distances: dict[str, Distance] | None = None
        self._examples: dict[str, torch.Tensor] = {}  # dataset fingerprint → (3, n, C, H, W) picture rows
        self._first_batch: torch.Tensor | None = None
        self.losses: list[float] = []

    @classmethod
    def with_budget(cls, config: LMDConfig, steps: int | None, reps: int | None) -> LMDConfig:
        return dataclasses.replace(config, **({"steps": steps} if steps else {}), **({"reps": reps} if reps else {}))

    def budget(self) -> dict[str, float]:
        return {"steps": float(self.config.steps), "reps": float(self.config.reps)}

    @classmethod
    def preflight(cls, config: LMDConfig) -> None:
        if "lpips" in config.distances:
            check_lpips_weights()
        if config.unet_path:
            load_unet(config.unet_path, config.image_size, config.channels)

    def transform(self, img) -> torch.Tensor:
        return self._transform(img)

    # ------------------------------------------------------------------ fit
    def fit(self, train_set: ImageDataset) -> None:
        c = self.config
        if c.unet_path:
            self.unet = load_unet(c.unet_path, c.image_size, c.channels).to(self.device).eval()
            self.log(f"using the pretrained UNet in {c.unet_path} (no training)")
            return
        x, _ = materialize(train_set, self.transform, self.ctx.batch_size * 8, self.ctx.workers)
        unet = build_unet(c.image_size, c.channels, c.base_channels, tuple(c.channel_mult), c.layers_per_block,
                          tuple(c.attention_resolutions), c.dropout, norm_num_groups=c.norm_groups)
        n_params = sum(p.numel() for p in unet.parameters())
        self.log(f"training a {n_params / 1e6:.2f} M-parameter UNet on {len(x)} images, {c.epochs} epochs")
        alphas = self.scheduler.alphas_cumprod.to(self.device)

        def loss_fn(model, batch, g):
            x0 = batch[0].float() / 127.5 - 1.0
            if c.hflip:
                x0 = random_hflip(x0, g)
            return epsilon_loss(model, x0, alphas, g)

        spec = TrainSpec(epochs=c.epochs, batch_size=c.train_batch_size, lr=c.lr, warmup_steps=c.warmup_steps,
                         grad_clip=c.grad_clip, ema_decay=c.ema_decay, checkpoint_every=c.checkpoint_every)
        res = train(unet, (x,), loss_fn, spec, self.device, self.ctx.seed, self.ctx.work_dir, desc="lmd UNet")
        self.unet, self.losses = res.model, res.epoch_losses

    # ------------------------------------------------------------------ score
    def distances(self) -> dict[str, Distance]:
        if self._distances is None:
            self._distances = {d: build_distance(d, self.device, self.config.feature_size)
                               for d in self.config.distances}
        return self._distances

    def lift_and_map(self, x: torch.Tensor, reps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks and inpaintings of ``x`` ``(B, C, H, W)`` in [0, 1]: ``(B·reps, 1, H, W)`` masks,
        ``(B·reps, C, H, W)`` inpaintings in [0, 1], image-major."""
        c = self.config
        masks = make_masks(c.mask, len(x), reps, c.image_size, c.mask_blocks, generator, patch=c.random_patch)
        x0 = (x * 2 - 1).repeat_interleave(reps, 0)
        rec = inpaint(self.unet, self.scheduler, x0, masks, c.steps, generator)
        return masks, ((rec + 1) / 2).clamp(0, 1)

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        reps = self.config.reps
        masks, rec = self.lift_and_map(x, reps, generator)
        if self._first_batch is None:  # keep the first batch's picture rows for save_examples
            self._first_batch = self._picture_rows(x, masks[::reps], rec[::reps])
        scores = {name: torch.quantile(d.pairwise(x, rec, reps), 0.5, dim=1)  # median, as np.median
                  for name, d in self.distances().items()}
        return BatchOutput(scores)

    def score(self, data: ImageDataset, desc: str | None = None):
        self._first_batch = None
        out = super().score(data, desc)
        self._examples = {data.fingerprint(): self._first_batch}
        return out

    @staticmethod
    def _picture_rows(x: torch.Tensor, masks: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        """(3, n, C, H, W): originals, masks, inpaintings of (at most) the first N_EXAMPLES images."""
        n = min(N_EXAMPLES, len(x))
        return torch.stack([x[:n], masks[:n].expand(-1, x.shape[1], -1, -1), rec[:n]]).cpu()

    def save_examples(self, data: ImageDataset, path: Path) -> bool:
        """Grid: row 1 originals, row 2 masked inputs (inpainted pixels grey), row 3 inpaintings."""
        stack = self._examples.get(data.fingerprint())
        if stack is None:  # scores came from the cache: inpaint a few images for the picture
            n = min(N_EXAMPLES, len(data))
            x = torch.stack([self.transform(data[i][0]) for i in range(n)]).to(self.device)
            masks, rec = self.lift_and_map(x, 1, self.batch_generator(data.fingerprint(), 0))
            stack = self._picture_rows(x, masks, rec)
        orig, mask, rec = stack
        save_grid([orig, orig * mask + 0.5 * (1 - mask), rec], path)
        return True

    # ------------------------------------------------------------------ state, cost
    def save(self, directory: Path) -> None:
        self.unet.save_pretrained(directory / "unet")  # a diffusers folder, reusable as unet_path

    def load(self, directory: Path) -> None:
        self.unet = UNet2DModel.from_pretrained(directory / "unet").to(self.device).eval()

    def cost(self) -> dict[str, float]:
        c = self.config
        out = {"unet": float(c.reps * c.steps)}
        for name in c.distances:
            n = DISTANCE_TYPES[name].evals_per_image(c.reps)
            if n:
                out[name] = n
        return out

    def fit_report(self) -> dict[str, float]:
        return {"final_train_loss": self.losses[-1]} if self.losses else {}
