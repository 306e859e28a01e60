"""``diffusion-nll`` and ``diffusion-ic``: the ID DDPM's variational bound as an OOD score, and
input complexity (Serrà et al., ICLR 2020) on top of it. Both: higher = more OOD.

- ``diffusion-nll``: −log₂ P_θ(k) ≤ bound, in **bits per dimension** (D = C·H·W) of the 8-bit image
  k the model sees (:mod:`ood_bench.methods.likelihood.bound`). Sub-scores ``prior_bpd``,
  ``kl_bpd``, ``decoder_bpd`` (summing to ``nll_bpd``).
- ``diffusion-ic``: S = NLL_bits − L(k), **bits per image**, L = 8 × bytes of the lossless file
  (:mod:`ood_bench.methods.likelihood.compress`; PNG at level 9 by default). Large when the ID
  model codes the image worse than a generic compressor. Sub-scores ``ic_bpd`` (= S / D),
  ``nll_bits``, ``png_bits``, ``png_bpd`` (the compressed length alone: a complexity score).

The ID DDPM is the run's shared artifact ``"ddpm-unet"`` (:mod:`ood_bench.methods.ddpm`): diffusers
``UNet2DModel`` + ``DDPMScheduler`` with the recipe of :class:`PixelDiffusionConfig` (LMD's), trained
once on ID train minus the validation hold-out, or a pretrained diffusers UNet (``unet``); LMD and
both methods here get the same object when their recipes agree.

Noise: each image draws from its own generator, seeded by (run seed, dataset fingerprint, image
index), so its bits do not depend on batch size, batch composition or order. The two methods
compute an image's bound once per process (:mod:`ood_bench.methods.likelihood.reuse`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch

from ood_bench.data.base import ImageDataset
from ood_bench.methods.artifacts import ArtifactRequest
from ood_bench.methods.base import BatchOutput
from ood_bench.methods.ddpm import DDPMArtifact, ddpm_request
from ood_bench.methods.likelihood import bound as B
from ood_bench.methods.likelihood.compress import check_compressor, compressed_bits
from ood_bench.methods.likelihood.config import DiffusionICConfig, DiffusionNLLConfig
from ood_bench.methods.likelihood.reuse import MEMO, image_digests, new_reader_id, weights_digest
from ood_bench.methods.registry import register_method
from ood_bench.methods.pixel_diffusion import PixelDiffusionMethod
from ood_bench.methods.unet import load_unet
from ood_bench.utils.device import autocast, fast_path
from ood_bench.utils.errors import ConfigError


def image_seed(seed: int, fingerprint: str, index: int) -> int:
    """The noise seed of image ``index`` of the set with ``fingerprint`` (63-bit)."""
    digest = hashlib.sha1(f"{seed}:{fingerprint}:image:{index}".encode()).hexdigest()
    return int(digest[:15], 16)


class DiffusionLikelihood(PixelDiffusionMethod):
    """Shared part: the ID DDPM, per-image noise, the bound (computed once per image and process)."""

    config: DiffusionNLLConfig
    version = "1"
    cost_knobs = {"timesteps": (10, 20, 50, 100, 250, 0)}  # 0 = every step (T − 1 KL calls)
    example_rows = ()

    def __init__(self, config: DiffusionNLLConfig, ctx) -> None:
        super().__init__(config, ctx)
        self._origin: tuple[int, str, int] | None = None  # (batch seed, fingerprint, first index)
        self._model_key: str | None = None
        self._memo_id = new_reader_id()

    @classmethod
    def preflight(cls, config: DiffusionNLLConfig) -> None:
        if config.unet:
            load_unet(config.unet, config.image_size, config.channels)

    # ------------------------------------------------------------------ the shared ID DDPM
    def requires(self) -> dict[str, ArtifactRequest]:
        return {"ddpm": ddpm_request(self.config)}

    def fit(self, train_set: ImageDataset) -> None:
        self.use_ddpm()

    def use_ddpm(self) -> None:
        """Take the shared ID DDPM's UNet and schedule (the engine filled ``self.artifacts``)."""
        ddpm: DDPMArtifact = self.artifacts["ddpm"]
        self.unet, self.scheduler = ddpm.unet, ddpm.scheduler
        self._check_schedule()

    def save(self, directory: Path) -> None:
        """Nothing of its own: the UNet is the shared artifact."""

    def load(self, directory: Path) -> None:
        self.use_ddpm()

    def build_untrained(self, num_classes: int) -> None:
        super().build_untrained(num_classes)
        self._check_schedule()

    def _check_schedule(self) -> None:
        self.sched = B.Schedule.from_scheduler(self.scheduler)
        try:
            self.variance = self.config.variance or B.scheduler_variance(self.scheduler)
        except ValueError as e:
            raise ConfigError(f"{e}; set variance=fixed_small or fixed_large") from None
        self.bound_options = self.config.bound_options(self.variance)
        self._model_key = None

    def save_examples(self, data: ImageDataset, path: Path) -> bool:
        return False  # nothing to picture: the score is a code length

    def fit_report(self) -> dict[str, float]:
        ddpm = self.artifacts.get("ddpm")
        return ddpm.fit_report() if ddpm is not None else {}

    def cost(self) -> dict[str, float]:
        """UNet calls per image: T (T − 1 KL steps + the decoder's x₁) per noise draw; K + 1 stratified."""
        return {"unet": float(self.config.bound_options("fixed_small").evaluations(self.config.diffusion_steps))}

    @classmethod
    def with_budget(cls, config: DiffusionNLLConfig, steps: int | None, reps: int | None) -> DiffusionNLLConfig:
        """``--steps``: KL timesteps per image (≥ T − 1 = every step; fewer = stratified);
        ``--reps``: noise draws per image."""
        changes: dict = {"n_noise": reps} if reps else {}
        if steps:
            changes["timesteps"] = 0 if steps >= config.diffusion_steps - 1 else steps
        return dataclasses.replace(config, **changes)

    def budget(self) -> dict[str, float]:
        c = self.config
        k = c.diffusion_steps - 1 if c.timesteps <= 0 or c.timesteps >= c.diffusion_steps - 1 else c.timesteps
        return {"steps": float(k), "reps": float(c.n_noise)}

    # ------------------------------------------------------------------ per-image noise
    def batch_seed(self, fingerprint: str, start: int) -> int:
        """The provided :meth:`score` seeds each batch's generator with this right before calling
        :meth:`score_batch`; the batch's dataset and first index are kept so that every image gets
        its own generator (:func:`image_seed`). A direct ``score_batch`` call with a generator
        seeded otherwise (``ood-bench speed``) seeds its images from that generator's seed."""
        seed = super().batch_seed(fingerprint, start)
        self._origin = (seed, fingerprint, start)
        return seed

    def _image_keys(self, n: int, generator: torch.Generator) -> tuple[list[tuple[str, int]], bool]:
        """Each image's (dataset fingerprint, index), and whether they came from :meth:`score`
        (only those are shared with the other method through the memo)."""
        seed = generator.initial_seed()
        if self._origin is not None and self._origin[0] == seed:
            _, fp, start = self._origin
            return [(fp, start + j) for j in range(n)], True
        return [(f"generator:{seed}", j) for j in range(n)], False

    def _model_digest(self) -> str:
        if self._model_key is None:
            betas = self.sched.betas.numpy().tobytes()
            self._model_key = weights_digest(self.unet, betas)
        return self._model_key

    # ------------------------------------------------------------------ the bound
    def eps_model(self, xt: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        with autocast(self.device):
            return self.unet(xt, i).sample.float()

    def bound_nats(self, k: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(prior, kl, decoder) nats summed over dims, float64 ``(B,)``, of ``uint8`` images ``k``
        on the device; images whose bound another method instance of this process already
        computed (same model, options, seed, set, index and pixels) are read, not recomputed."""
        keys, shared = self._image_keys(len(k), generator)
        opts = self.bound_options
        full: list[tuple] = []
        if shared:
            common = (self._model_digest(), opts, self.device.type, fast_path(self.device), self.ctx.seed)
            full = [common + key + (d,) for key, d in zip(keys, image_digests(k))]
        have = [MEMO.get(f, self._memo_id) for f in full] if shared else [None] * len(k)
        todo = [j for j, h in enumerate(have) if h is None]
        if todo:
            gens = [torch.Generator(device=self.device).manual_seed(image_seed(self.ctx.seed, *keys[j])) for j in todo]
            terms = B.variational_bound(self.eps_model, k[todo], self.sched, gens, opts)
            rows = torch.stack([terms.prior, terms.kl, terms.decoder], 1).cpu().tolist()
            for j, row in zip(todo, rows):
                have[j] = tuple(row)
                if shared:
                    MEMO.put(full[j], have[j], self._memo_id)
        out = torch.tensor(have, dtype=torch.float64, device=self.device)
        return out[:, 0], out[:, 1], out[:, 2]

    def bound_terms(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, B.BoundTerms]:
        """``x`` ``(B, C, H, W)`` in [0, 1] → the scored 8-bit images and their bound (nats)."""
        k = B.quantize01(x)
        prior, kl, dec = self.bound_nats(k, generator)
        return k, B.BoundTerms(prior, kl, dec, dims=k[0].numel())


@register_method("diffusion-nll")
class DiffusionNLL(DiffusionLikelihood):
    """Negative log-likelihood bound of the ID DDPM, bits/dim (higher = more OOD)."""

    display_name = "Diffusion NLL"
    config_cls = DiffusionNLLConfig

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        _, terms = self.bound_terms(x, generator)
        return BatchOutput({k: v.float() for k, v in terms.bpd().items()})


@register_method("diffusion-ic")
class DiffusionIC(DiffusionLikelihood):
    """Input complexity: NLL bits − lossless compressed bits, per image (higher = more OOD)."""

    display_name = "Diffusion IC"
    config_cls = DiffusionICConfig
    config: DiffusionICConfig

    @classmethod
    def preflight(cls, config: DiffusionICConfig) -> None:
        check_compressor(config.compressor)
        super().preflight(config)

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        k, terms = self.bound_terms(x, generator)
        dims = terms.dims
        nll_bits = B.nats_to_bits(terms.total)
        arr = k.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, C) uint8, what the bound scored
        comp = torch.tensor([compressed_bits(np.ascontiguousarray(a), self.config.compressor) for a in arr],
                            dtype=torch.float64, device=self.device)
        ic = nll_bits - comp
        name = self.config.compressor
        return BatchOutput({"ic_bits": ic.float(), "ic_bpd": (ic / dims).float(), "nll_bits": nll_bits.float(),
                            f"{name}_bits": comp.float(), f"{name}_bpd": (comp / dims).float()})
