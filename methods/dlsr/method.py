"""DLSR: diffusion-based layer-wise semantic reconstruction (Yang et al., NeurIPS 2024).

Fit: the multi-layer feature vector ``z0`` (:mod:`ood_bench.methods.features`) of every ID
training image with the frozen backbone — the shared ``"features"`` artifact
(:mod:`ood_bench.methods.feature_set`), extracted once for DLSR, Mahalanobis and kNN — then train the LFDN (:mod:`ood_bench.methods.dlsr.lfdn`) to
predict ``z0`` from ``z_t``, ``t ~ U{0..T-1}``, on the 100-step scaled-linear schedule
(diffusers ``DDPMScheduler``, ``prediction_type="sample"``). EMA weights after the first epoch
and at the end are kept.

Score (higher = more OOD for each):

- ``z_t = √ᾱ_t z0 + √(1−ᾱ_t) ε`` at the distortion step ``t`` (paper: 3), then deterministic DDIM
  (η = 0, diffusers ``DDIMScheduler``) evaluating the LFDN at ``t, t−1, …, 0``; the last step
  returns the model's ``x0`` prediction ``ẑ0``. That is ``t + 1`` LFDN evaluations.
- ``mse``   = mean over the ``c`` dimensions of ``(z0 − ẑ0)²``;
- ``mfsim`` = −(1/M) Σ_m cos(z0[m], ẑ0[m]) over **all** M layer slices;
- ``lr``    = err_final − err_first (``err`` = ``mse`` by default, ``lr_base``), the same noise
  for both models. The paper calls it a likelihood ratio: an image the final model reconstructs
  much better than the first-epoch model is typical of the ID data; OOD images gain less.

Differences from the released code (``xbyym/DLSR``), on purpose:

- its MFsim skips the first layer slice (a bug; the paper averages all layers) — we use all;
- its DDIM chain evaluates t = 3, 2, 1 with η = 1 and an off-by-one between the ᾱ used for
  ε and for the update, returning a sample at noise level ᾱ₀; ours is the clean η = 0 chain
  ending with the x0 prediction at t = 0 (one more evaluation);
- its MSE sums over dimensions (we average: same ranking); its LR script draws separate noise
  per model and subtracts ``first − final`` (we share the noise, and orient the score so that
  higher = more OOD, as for every score here);
- its LFDN applies SiLU to the input before the first Linear (see :mod:`ood_bench.methods.dlsr.lfdn`).

The same as the released code, and tested: the B4 backbone (``efficientnet_pytorch``'s static
padding, :func:`ood_bench.methods.backbones.static_same_padding`) and its five tapped blocks.
A trained LFDN pair is saved as diffusers folders ``lfdn/`` and ``lfdn_first/``;
``lfdn=<folder or hub repo id>`` loads them instead of training.
On CUDA the default arithmetic is the fast path (bf16 autocast, channels_last, ``torch.compile``:
:mod:`ood_bench.utils.device`); ``--precision fp32 --compile off`` is the released code's fp32.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ood_bench.utils.device import autocast
from ood_bench.utils.progress import log
from ood_bench.methods.registry import register_method
from ood_bench.data.base import ImageDataset
from ood_bench.data.transforms import ImageTransform
from ood_bench.methods.artifacts import ArtifactRequest
from ood_bench.methods.base import BatchOutput, OODMethod
from ood_bench.methods.feature_set import FeaturesArtifact, features_request
from ood_bench.methods.dlsr.config import DLSRConfig
from ood_bench.methods.features import MultiLayerFeatures, build_features, layerwise_cosine
from ood_bench.methods.pretrained import Weights, hub_weights, load_pretrained_model, pretrained_folder
from ood_bench.methods.training import TrainSpec, seed_network, train
from ood_bench.utils.errors import ConfigError

if TYPE_CHECKING:  # imported where used: see ood_bench.methods (imports)
    from diffusers import DDIMScheduler, DDPMScheduler
    from ood_bench.methods.dlsr.lfdn import LFDN


@register_method("dlsr")
class DLSR(OODMethod):
    """Feature-space diffusion reconstruction; unsupervised (labels are ignored)."""

    display_name = "DLSR"
    # t: DDIM steps back from the distortion level (paper t = 3); the LR score doubles the LFDN passes
    cost_knobs = {"t": (1, 3, 5, 10), "lr_score": (False, True)}

    config_cls = DLSRConfig
    needs_labels = False
    version = "2"  # 2: tf_efficientnet_b4 with the paper net's static padding
    config: DLSRConfig

    def __init__(self, config: DLSRConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.image_transform = ImageTransform(config.image_size, channels=3)
        self.features: MultiLayerFeatures | None = None
        self.model: LFDN | None = None
        self.first_model: LFDN | None = None
        self.losses: list[float] = []

    @classmethod
    def with_budget(cls, config: DLSRConfig, steps: int | None, reps: int | None) -> DLSRConfig:
        # steps = LFDN evaluations of the reconstruction chain (t + 1); one noise draw per image
        if reps is not None and reps != 1:  # said, not silently dropped: the budget row shows reps 1
            log(f"dlsr ignores --reps {reps}: it scores one noise draw per image (its paper's design)",
                logging.WARNING)
        return dataclasses.replace(config, t=steps - 1) if steps else config

    def budget(self) -> dict[str, float]:
        return {"steps": float(self.config.t + 1), "reps": 1.0}

    @classmethod
    def required_weights(cls, config: DLSRConfig) -> list[Weights]:
        return [*config.required_weights(), *hub_weights(config.lfdn)]

    @classmethod
    def preflight(cls, config: DLSRConfig) -> None:
        config.check_weights()
        if config.lfdn:
            cls.pretrained_lfdn(config)

    @staticmethod
    def pretrained_lfdn(c: DLSRConfig) -> tuple[LFDN, LFDN | None]:
        """The final and first-epoch LFDNs named by ``c.lfdn`` (the first is ``None`` when absent,
        allowed only without the LR score)."""
        from ood_bench.methods.dlsr.lfdn import LFDN
        final = load_pretrained_model(LFDN, c.lfdn, "lfdn", "LFDN")
        folder = pretrained_folder(c.lfdn, "LFDN")
        first = None
        if (folder / "lfdn_first" / "config.json").is_file():
            first = LFDN.from_pretrained(folder / "lfdn_first", low_cpu_mem_usage=False)
        elif c.lr_score:
            raise ConfigError(f"LFDN {c.lfdn} has no lfdn_first/ (the first-epoch model the LR score needs); "
                              f"set dlsr.lr_score=false or add it")
        return final, first

    # ------------------------------------------------------------------ pieces
    def noise_scheduler(self) -> DDPMScheduler:
        from diffusers import DDPMScheduler
        c = self.config
        return DDPMScheduler(num_train_timesteps=c.timesteps, beta_start=c.beta_start, beta_end=c.beta_end,
                             beta_schedule="scaled_linear", prediction_type="sample", clip_sample=False)

    @functools.cached_property
    def ddim(self) -> DDIMScheduler:
        """The stride-1 DDIM sampler, built once (its step is stateless; building it per batch
        cost host time on every batch)."""
        from diffusers import DDIMScheduler
        sched = DDIMScheduler.from_config(self.noise_scheduler().config, set_alpha_to_one=True)
        sched.set_timesteps(self.config.timesteps)  # stride 1: t → t−1 → … → 0 → clean
        return sched

    def requires(self) -> dict[str, ArtifactRequest]:
        # a pretrained LFDN needs the extractor only, not the training vectors
        return {} if self.config.lfdn else {"features": features_request(self.config)}

    def _ensure_features(self) -> MultiLayerFeatures:
        """The frozen extractor: the shared artifact's, or (pretrained LFDN, speed) one of its own."""
        if self.features is None:
            art: FeaturesArtifact | None = self.artifacts.get("features")
            self.features = art.extractor if art is not None else build_features(self.config, self.device)[0]
        return self.features

    def embed(self, data: ImageDataset) -> torch.Tensor:
        """The multi-layer feature vectors ``z0`` ``(N, c)`` of ``data`` (what the LFDN reconstructs)."""
        feats = self._ensure_features()

        def z0(x: torch.Tensor) -> torch.Tensor:
            with autocast(self.device):
                return feats(x).float()

        return self.map_batches(data, z0)

    # ------------------------------------------------------------------ contract
    def fit(self, train_set: ImageDataset) -> None:
        from ood_bench.methods.dlsr.lfdn import LFDN
        c = self.config
        if c.lfdn:
            self._use_pretrained()
            return
        work = self.ctx.work_dir
        z = self.artifacts["features"].vectors
        feats = self._ensure_features()
        self.log(f"training LFDN (dim {feats.dim}, width {c.width}, {c.blocks} blocks) on {len(z)} vectors")
        sched = self.noise_scheduler()
        alphas = sched.alphas_cumprod.to(self.device)

        def loss_fn(model, batch, g):
            (z0,) = batch
            t = torch.randint(0, c.timesteps, (len(z0),), device=z0.device, generator=g)
            eps = torch.randn(z0.shape, device=z0.device, generator=g)
            a = alphas[t].unsqueeze(1)
            zt = a.sqrt() * z0 + (1 - a).sqrt() * eps  # = sched.add_noise(z0, eps, t)
            return F.mse_loss(model(zt, t).float(), z0)

        spec = TrainSpec(epochs=c.epochs, batch_size=c.train_batch_size, lr=c.lr, weight_decay=c.weight_decay,
                         ema_decay=c.ema_decay, keep_first_epoch=True, drop_last=False)
        seed_network(self.ctx.seed, "dlsr LFDN")  # same initial weights whether the features were cached or not
        res = train(LFDN(feats.dim, c.width, c.blocks), (z,), loss_fn, spec, self.device,
                    self.ctx.seed, work, desc="dlsr LFDN", compile=self.training_compile())
        self.model = res.model
        self.first_model = LFDN(feats.dim, c.width, c.blocks).to(self.device).eval()
        self.first_model.load_state_dict(res.first_epoch_state)
        self.losses = res.epoch_losses

    def _use_pretrained(self) -> None:
        feats = self._ensure_features()
        final, first = self.pretrained_lfdn(self.config)
        if final.config.dim != feats.dim:
            raise ConfigError(f"LFDN {self.config.lfdn} is for {final.config.dim}-d features, but backbone "
                              f"{self.config.backbone} gives {feats.dim}; use the backbone it was trained on")
        self.model = final.to(self.device).eval()
        self.first_model = first.to(self.device).eval() if first is not None else None
        self.log(f"using the pretrained LFDN {self.config.lfdn} (no training)")

    def build_untrained(self, num_classes: int) -> None:
        from ood_bench.methods.dlsr.lfdn import LFDN
        c = self.config
        feats = self._ensure_features()
        self.model = LFDN(feats.dim, c.width, c.blocks).to(self.device).eval()
        self.first_model = LFDN(feats.dim, c.width, c.blocks).to(self.device).eval()

    def inference_networks(self) -> list[torch.nn.Module]:
        return [self.features, self.model, self.first_model]

    def reconstruct(self, model: LFDN, z0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Noise ``z0`` to ``t`` with ``eps`` and run the DDIM chain back to the x0 estimate."""
        sched = self.ddim
        t = self.config.t
        zt = sched.add_noise(z0, eps, torch.full((len(z0),), t, dtype=torch.long, device=z0.device))
        for s in range(t, -1, -1):
            with autocast(self.device):
                pred = model(zt, torch.full((len(z0),), s, device=z0.device)).float()
            zt = sched.step(pred, s, zt, eta=0.0).prev_sample
        return zt

    def _errors(self, z0: torch.Tensor, rec: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mse": ((z0 - rec) ** 2).mean(dim=1),
                "mfsim": -layerwise_cosine(z0, rec, self.features.slices)}

    def score_batch(self, x: torch.Tensor, generator: torch.Generator) -> BatchOutput:
        with autocast(self.device):
            # cloned: z0 is kept across the LFDN calls, and under CUDA graphs (--compile graphs) a
            # compiled network's output is a static buffer the next compiled call overwrites
            z0 = self.features(x).float().clone()
        eps = torch.randn(z0.shape, device=z0.device, generator=generator)
        scores = self._errors(z0, self.reconstruct(self.model, z0, eps))
        if self.config.lr_score:  # preflight guarantees a first-epoch model then
            first = self._errors(z0, self.reconstruct(self.first_model, z0, eps))
            base = self.config.lr_base
            scores["lr"] = scores[base] - first[base]
        return BatchOutput(scores)

    def save(self, directory: Path) -> None:
        # diffusers folders, reusable (and publishable) as dlsr.lfdn=<directory>
        self.model.save_pretrained(directory / "lfdn")
        if self.first_model is not None:
            self.first_model.save_pretrained(directory / "lfdn_first")
        (directory / "dlsr.json").write_text(json.dumps({"losses": self.losses}))

    def load(self, directory: Path) -> None:
        from ood_bench.methods.dlsr.lfdn import LFDN
        feats = self._ensure_features()
        self.model = LFDN.from_pretrained(directory / "lfdn", low_cpu_mem_usage=False).to(self.device).eval()
        if self.model.config.dim != feats.dim:
            raise RuntimeError(f"cached LFDN has dim {self.model.config.dim} but the backbone gives {feats.dim}")
        self.first_model = None
        if (directory / "lfdn_first").is_dir():
            self.first_model = LFDN.from_pretrained(directory / "lfdn_first", low_cpu_mem_usage=False)
            self.first_model = self.first_model.to(self.device).eval()
        self.losses = json.loads((directory / "dlsr.json").read_text())["losses"]

    def cost(self) -> dict[str, float]:
        lfdn = (self.config.t + 1) * (2 if self.config.lr_score else 1)
        return {"backbone": 1.0, "lfdn": float(lfdn)}

    def fit_report(self) -> dict[str, float]:
        return {"final_train_loss": self.losses[-1]} if self.losses else {}
