"""The variational bound of a DDPM on 8-bit images, in closed form (Ho et al. 2020, §3;
Nichol & Dhariwal 2021, ``_vb_terms_bpd``/``calc_bpd_loop`` of ``openai/improved-diffusion``).

Conventions (all of them pinned by ``tests/test_likelihood.py``):

- Paper step ``t = 1..T``; diffusers index ``i = t − 1`` (``alphas_cumprod[i]`` = ᾱ_t, the UNet is
  called with ``i``). The schedule is held in float64 with ᾱ_0 = 1 and
  β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) (β̃_1 = 0).
- Data: a ``uint8`` image ``k`` ↦ x₀ = 2k/255 − 1 ∈ [−1, 1]; bins of half-width 1/255.
- Every term is computed in **nats, summed over the D = C·H·W dimensions of one image**, in
  float64. :func:`nats_to_bits` / :func:`nats_to_bpd` convert once (÷ ln 2, ÷ D) at the end.
- The bound, per image: ``L_T + Σ_{t=2..T} KL_t + L_0`` with
  L_T = KL(q(x_T|x₀) ‖ N(0, I)) (no network),
  KL_t = KL(q(x_{t−1}|x_t, x₀) ‖ p_θ(x_{t−1}|x_t)) with p_θ's fixed variance σ_t²
  (``fixed_small`` = β̃_t, ``fixed_large`` = β_t) and mean from the ε-prediction,
  L_0 = −ln P(k | x₁), the discretised Gaussian decoder with mean x̂₀(x₁) and standard deviation
  √β̃_2 (improved-diffusion's convention for both variance types: β̃_1 = 0 is unusable).
  It upper-bounds −ln P_θ(k), a code length of the 8-bit image (no dequantisation offset).

Estimators of Σ_t KL_t (:func:`timestep_plan`):

- **full** (default, ``timesteps = 0``): every t = 2..T, T − 1 network calls (+ 1 for L_0).
  Only the noise ε is random: the bound is exact in t.
- **stratified** (``timesteps = K < T − 1``): t = 2..T cut into K contiguous strata of (nearly)
  equal size n_k; one t drawn uniformly in each, weighted by n_k. Unbiased for the full sum
  (E[n_k KL_t] = Σ_{t ∈ stratum} KL_t for each stratum), but it adds per-image variance —
  KL_t falls by orders of magnitude across the first strata, so the draw in the first stratum
  dominates it — which lowers AUROC relative to ``full``. L_T and L_0 stay exact. Cost K + 1
  network calls per image and noise draw.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

LN2 = math.log(2.0)
BIN_HALF_WIDTH = 1.0 / 255.0
VARIANCES = ("fixed_small", "fixed_large")
DECODER_CDFS = ("exact", "tanh")
LOG_P_FLOOR = math.log(1e-12)  # −ln P per dimension is capped at 27.6 nats (improved-diffusion's clamp)

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (N,C,H,W), i (N,) long) → ε̂ (N,C,H,W)


# ----------------------------------------------------------------------------- units
def nats_to_bits(nats: torch.Tensor | float) -> torch.Tensor | float:
    """Natural-log code length → bits (÷ ln 2). The only place the base changes."""
    return nats / LN2


def nats_to_bpd(nats: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    """Whole-image nats → bits per dimension (÷ ln 2 ÷ D)."""
    return nats_to_bits(nats) / dims


def uint8_to_x0(k: torch.Tensor) -> torch.Tensor:
    """``uint8``-valued tensor (any float/int dtype holding 0..255) → x₀ = 2k/255 − 1, float64."""
    return k.to(torch.float64) * (2.0 / 255.0) - 1.0


def quantize01(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (what the loaders yield) → the 8-bit values scored, ``uint8``: rounded,
    so a resized (non-grid) input is first put back on the grid and then used by every term."""
    return (x.detach().to(torch.float64) * 255.0).round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class Schedule:
    """A DDPM schedule in float64, indexed by diffusers index ``i = t − 1`` (tensors ``(T,)``).

    ``alphas_cumprod_prev[i]`` = ᾱ_{t−1} (1 for t = 1); ``posterior_variance[i]`` = β̃_t (0 for t = 1).
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    posterior_variance: torch.Tensor

    @property
    def T(self) -> int:
        return len(self.betas)

    @classmethod
    def from_betas(cls, betas: torch.Tensor | np.ndarray | Sequence[float]) -> "Schedule":
        b = torch.as_tensor(np.asarray(betas, dtype=np.float64))
        if b.ndim != 1 or len(b) < 2 or not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must be a 1-D sequence of at least 2 values in (0, 1)")
        a = 1.0 - b
        ac = torch.cumprod(a, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        post = b * (1.0 - prev) / (1.0 - ac)
        return cls(b, a, ac, prev, post)

    @classmethod
    def linear(cls, T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> "Schedule":
        """Ho et al.'s linear schedule (diffusers ``beta_schedule="linear"``), in float64."""
        return cls.from_betas(np.linspace(beta_start, beta_end, T, dtype=np.float64))

    @classmethod
    def from_scheduler(cls, scheduler) -> "Schedule":
        """A diffusers ``DDPMScheduler``'s betas, in float64 (recomputed from its config when the
        schedule is linear, so float32 storage does not leak in)."""
        cfg = scheduler.config
        if getattr(cfg, "beta_schedule", "") == "linear" and getattr(cfg, "trained_betas", None) is None:
            return cls.linear(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end)
        return cls.from_betas(scheduler.betas.double().cpu().numpy())

    def variance(self, kind: str) -> torch.Tensor:
        """σ_t² of p_θ(x_{t−1}|x_t) by index ``i`` ``(T,)``: ``fixed_small`` = β̃_t, ``fixed_large`` = β_t.
        (Index 0 is never used for a KL term: t = 1 is the decoder.)"""
        if kind == "fixed_small":
            return self.posterior_variance
        if kind == "fixed_large":
            return self.betas
        raise ValueError(f"variance must be one of {VARIANCES}, got {kind!r}")

    @property
    def decoder_std(self) -> float:
        """Standard deviation of the decoder p(x₀|x₁): √β̃_2 (both variance types)."""
        return float(self.posterior_variance[1].sqrt())


def scheduler_variance(scheduler) -> str:
    """The fixed variance a diffusers scheduler samples with (``fixed_small``/``fixed_large``);
    learned variances are refused (their bound needs the model's variance output)."""
    v = str(getattr(scheduler.config, "variance_type", "fixed_small"))
    v = v.removesuffix("_log")
    if v not in VARIANCES:
        raise ValueError(f"the scheduler's variance_type {v!r} is learned; the bound here supports {VARIANCES}")
    return v


# ----------------------------------------------------------------------------- terms (nats)
def normal_kl(mean1: torch.Tensor, var1: torch.Tensor | float, mean2: torch.Tensor,
              var2: torch.Tensor | float) -> torch.Tensor:
    """Elementwise KL(N(mean1, var1) ‖ N(mean2, var2)) in nats (broadcasting)."""
    var1 = torch.as_tensor(var1, dtype=torch.float64)
    var2 = torch.as_tensor(var2, dtype=torch.float64)
    return 0.5 * (torch.log(var2 / var1) + var1 / var2 + (mean1 - mean2) ** 2 / var2 - 1.0)


def prior_kl(x0: torch.Tensor, sched: Schedule) -> torch.Tensor:
    """L_T = KL(q(x_T|x₀) ‖ N(0, I)) in nats, summed over dims: ``(B, …)`` → ``(B,)`` float64.
    No network call (≈ 2e-5 nats/dim for the linear 1000-step schedule)."""
    a = sched.alphas_cumprod[-1]
    x0 = x0.to(torch.float64)
    per = 0.5 * (a * x0 ** 2 + (1.0 - a) - 1.0 - torch.log1p(-a))
    return per.flatten(1).sum(1)


def _per_index(values: torch.Tensor, i: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.to(i.device)[i].view(-1, *([1] * (ndim - 1)))


def step_kl(eps: torch.Tensor, eps_hat: torch.Tensor, i: torch.Tensor, sched: Schedule, variance: str) -> torch.Tensor:
    """KL_t for t = i + 1 ≥ 2, closed form for a fixed variance σ_t², nats summed over dims:

        KL_t = (D/2)[ln(σ_t²/β̃_t) + β̃_t/σ_t² − 1] + β_t² ‖ε − ε̂‖² / (2 σ_t² α_t (1 − ᾱ_t)),

    since μ̃_t − μ_θ = β_t (ε̂ − ε) / (√α_t √(1 − ᾱ_t)). ``eps``, ``eps_hat`` ``(N, C, H, W)``,
    ``i`` ``(N,)`` long (all ≥ 1) → ``(N,)`` float64.
    """
    if bool((i < 1).any()):
        raise ValueError("step_kl is for t ≥ 2 (index ≥ 1); t = 1 is the decoder term")
    d = eps[0].numel()
    var = sched.variance(variance)
    s2, bt = var.to(i.device)[i], sched.posterior_variance.to(i.device)[i]
    b, a, ac = (v.to(i.device)[i] for v in (sched.betas, sched.alphas, sched.alphas_cumprod))
    const = 0.5 * d * (torch.log(s2 / bt) + bt / s2 - 1.0)
    sq = (eps.to(torch.float64) - eps_hat.to(torch.float64)).pow(2).flatten(1).sum(1)
    return const + b ** 2 * sq / (2.0 * s2 * a * (1.0 - ac))


def predicted_x0(xt: torch.Tensor, eps_hat: torch.Tensor, i: torch.Tensor, sched: Schedule,
                 clip: bool = False) -> torch.Tensor:
    """x̂₀ = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t, float64, optionally clipped to [−1, 1]."""
    ac = _per_index(sched.alphas_cumprod, i, xt.ndim)
    x0 = (xt.to(torch.float64) - (1.0 - ac).sqrt() * eps_hat.to(torch.float64)) / ac.sqrt()
    return x0.clamp(-1.0, 1.0) if clip else x0


def posterior_mean(x0: torch.Tensor, xt: torch.Tensor, i: torch.Tensor, sched: Schedule) -> torch.Tensor:
    """μ̃_t(x_t, x₀) = (√ᾱ_{t−1} β_t x₀ + √α_t (1 − ᾱ_{t−1}) x_t) / (1 − ᾱ_t), float64."""
    b, a, ac, prev = (_per_index(v, i, xt.ndim) for v in
                      (sched.betas, sched.alphas, sched.alphas_cumprod, sched.alphas_cumprod_prev))
    return (prev.sqrt() * b * x0.to(torch.float64) + a.sqrt() * (1.0 - prev) * xt.to(torch.float64)) / (1.0 - ac)


def step_kl_general(x0: torch.Tensor, xt: torch.Tensor, eps_hat: torch.Tensor, i: torch.Tensor, sched: Schedule,
                    variance: str, clip_x0: bool) -> torch.Tensor:
    """KL_t with μ_θ = μ̃_t(x_t, x̂₀) (x̂₀ clipped to [−1, 1] when ``clip_x0``): the general
    Gaussian KL, nats summed over dims ``(N,)``. Without clipping it equals :func:`step_kl`."""
    x0_hat = predicted_x0(xt, eps_hat, i, sched, clip=clip_x0)
    mu_q = posterior_mean(x0, xt, i, sched)
    mu_p = posterior_mean(x0_hat, xt, i, sched)
    s2 = _per_index(sched.variance(variance), i, xt.ndim)
    bt = _per_index(sched.posterior_variance, i, xt.ndim)
    return normal_kl(mu_q, bt, mu_p, s2).flatten(1).sum(1)


def _approx_std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_log_prob(x0: torch.Tensor, mean: torch.Tensor, std: float | torch.Tensor,
                         cdf: str = "exact") -> torch.Tensor:
    """ln P(x₀) per dimension under N(mean, std²) discretised to the 256 bins of half-width 1/255
    on [−1, 1] (the edge bins extend to ∓∞), floored at ln 1e-12. float64, elementwise.

    ``cdf="exact"``: the normal CDF in log space (``log_ndtr``, with the upper tail reflected),
    accurate far into both tails. ``"tanh"``: improved-diffusion's approximation and clamps.
    """
    x0 = x0.to(torch.float64)
    z = (x0 - mean.to(torch.float64)) / std
    h = BIN_HALF_WIDTH / std
    lo_edge, hi_edge = x0 <= -1.0 + 1e-9, x0 >= 1.0 - 1e-9
    if cdf == "exact":
        inf = torch.tensor(math.inf, dtype=torch.float64, device=x0.device)
        a = torch.where(lo_edge, -inf, z - h)
        b = torch.where(hi_edge, inf, z + h)
        ln = torch.special.log_ndtr
        # ln(Φ(b) − Φ(a)); for a > 0 use Φ(−a) − Φ(−b) (both small: no cancellation near 1)
        low = ln(b) + torch.log1p(-torch.exp(ln(a) - ln(b)))
        high = ln(-a) + torch.log1p(-torch.exp(ln(-b) - ln(-a)))
        logp = torch.where(a > 0, high, low)
    elif cdf == "tanh":
        cdf_plus, cdf_min = _approx_std_normal_cdf(z + h), _approx_std_normal_cdf(z - h)
        log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
        log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
        mid = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
        logp = torch.where(x0 < -0.999, log_cdf_plus, torch.where(x0 > 0.999, log_one_minus_cdf_min, mid))
    else:
        raise ValueError(f"cdf must be one of {DECODER_CDFS}, got {cdf!r}")
    return logp.clamp(min=LOG_P_FLOOR)


def decoder_nll(x0: torch.Tensor, x0_hat: torch.Tensor, std: float, cdf: str = "exact") -> torch.Tensor:
    """L_0 = −ln P(k | x₁) in nats summed over dims, ``(N, …)`` → ``(N,)``: the discretised
    Gaussian with mean x̂₀(x₁) and standard deviation ``std``."""
    return -discretized_log_prob(x0, x0_hat, std, cdf).flatten(1).sum(1)


# ----------------------------------------------------------------------------- estimator
def timestep_plan(T: int, timesteps: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Which KL steps one image evaluates, and their weights: indices ``i`` (t = i + 1, all ≥ 1)
    ``(K,)`` long ascending and float64 weights ``(K,)`` whose weighted sum estimates
    Σ_{t=2..T} KL_t. ``timesteps`` 0 or ≥ T − 1: every step, weight 1 (``generator`` unused).
    Otherwise ``timesteps`` = K strata, one uniform draw each from ``generator`` (on the CPU)."""
    n = T - 1
    if timesteps <= 0 or timesteps >= n:
        return torch.arange(1, T), torch.ones(n, dtype=torch.float64)
    strata = np.array_split(np.arange(1, T), timesteps)
    sizes = torch.tensor([len(s) for s in strata], dtype=torch.float64)
    starts = torch.tensor([int(s[0]) for s in strata])
    u = torch.rand(timesteps, generator=generator, dtype=torch.float64)
    offs = (u * sizes).floor().long().clamp(max=(sizes - 1).long())
    return starts + offs, sizes


# ----------------------------------------------------------------------------- the whole bound
@dataclass(frozen=True)
class BoundOptions:
    """Options of :func:`variational_bound` (see the module docstring)."""

    variance: str = "fixed_small"
    timesteps: int = 0
    n_noise: int = 1
    clip_x0: bool = False
    decoder_cdf: str = "exact"
    pairs_per_call: int = 256

    def __post_init__(self) -> None:
        if self.variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}, got {self.variance!r}")
        if self.decoder_cdf not in DECODER_CDFS:
            raise ValueError(f"decoder_cdf must be one of {DECODER_CDFS}, got {self.decoder_cdf!r}")
        if self.timesteps < 0 or self.n_noise < 1 or self.pairs_per_call < 1:
            raise ValueError("timesteps must be ≥ 0, n_noise ≥ 1 and pairs_per_call ≥ 1")

    def evaluations(self, T: int) -> int:
        """Network calls per image: (KL steps + 1 decoder step) × noise draws."""
        k = T - 1 if self.timesteps <= 0 or self.timesteps >= T - 1 else self.timesteps
        return (k + 1) * self.n_noise


@dataclass
class BoundTerms:
    """Per-image terms of the bound, nats summed over the image's D dimensions, float64 ``(B,)``."""

    prior: torch.Tensor
    kl: torch.Tensor
    decoder: torch.Tensor
    dims: int

    @property
    def total(self) -> torch.Tensor:
        return self.prior + self.kl + self.decoder

    def bpd(self) -> dict[str, torch.Tensor]:
        """The terms in bits per dimension: ``prior_bpd``, ``kl_bpd``, ``decoder_bpd``, ``nll_bpd``."""
        return {"prior_bpd": nats_to_bpd(self.prior, self.dims), "kl_bpd": nats_to_bpd(self.kl, self.dims),
                "decoder_bpd": nats_to_bpd(self.decoder, self.dims), "nll_bpd": nats_to_bpd(self.total, self.dims)}


Decoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x₀ (N,…), x̂₀ (N,…)) → nats (N,)


def variational_bound(eps_model: EpsModel, k: torch.Tensor, sched: Schedule, generators: Sequence[torch.Generator],
                      options: BoundOptions = BoundOptions()) -> BoundTerms:
    """The bound of 8-bit images ``k`` ``(B, C, H, W)`` (values 0..255, any dtype, on the model's
    device): :func:`bound_terms` of x₀ = 2k/255 − 1 with the discretised decoder."""
    std = sched.decoder_std
    return bound_terms(eps_model, uint8_to_x0(k), sched, generators, options,
                       decoder=lambda x0, mean: decoder_nll(x0, mean, std, options.decoder_cdf))


def bound_terms(eps_model: EpsModel, x0: torch.Tensor, sched: Schedule, generators: Sequence[torch.Generator],
                options: BoundOptions, decoder: Decoder) -> BoundTerms:
    """The bound's terms for data ``x0`` ``(B, C, H, W)`` in [−1, 1] (on the model's device) under
    the ε-model, one generator per image (on that device); ``decoder`` gives L_0 from x₀ and x̂₀(x₁).

    Image b draws, for each of ``n_noise`` repetitions in turn, from ``generators[b]`` only: the
    stratified steps (on the CPU, from a generator seeded by the image's generator) then
    ε ``(1 + K, C, H, W)`` (row 0 for x₁ of the decoder, then one per KL step) — so an image's
    bound does not depend on the other images of its batch. (image, step) pairs of the whole
    batch go through the model ``pairs_per_call`` at a time. Returns nats summed over dims.
    """
    if len(generators) != len(x0):
        raise ValueError(f"{len(generators)} generators for {len(x0)} images")
    dev = x0.device
    x0 = x0.to(torch.float64)
    B, dims = len(x0), x0[0].numel()
    T = sched.T
    prior = prior_kl(x0, sched)
    kl = torch.zeros(B, dtype=torch.float64, device=dev)
    dec = torch.zeros(B, dtype=torch.float64, device=dev)
    for _ in range(options.n_noise):
        img, idx, wts, noise = [], [], [], []
        for b, g in enumerate(generators):
            cpu_gen = None
            if 0 < options.timesteps < T - 1:
                cpu_gen = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=g, device=g.device)))
            ii, ww = timestep_plan(T, options.timesteps, cpu_gen)
            ii = torch.cat([torch.zeros(1, dtype=torch.long), ii])  # index 0 = t = 1: the decoder
            ww = torch.cat([torch.ones(1, dtype=torch.float64), ww])
            noise.append(torch.randn((len(ii), *x0.shape[1:]), generator=g, device=dev, dtype=torch.float32))
            img.append(torch.full((len(ii),), b, dtype=torch.long))
            idx.append(ii)
            wts.append(ww)
        img_t, idx_t = torch.cat(img).to(dev), torch.cat(idx).to(dev)
        w_t, eps_all = torch.cat(wts).to(dev), torch.cat(noise)
        for s in range(0, len(img_t), options.pairs_per_call):
            sl = slice(s, s + options.pairs_per_call)
            bi, ii, ww, eps = img_t[sl], idx_t[sl], w_t[sl], eps_all[sl]
            x0b = x0[bi]
            ac = _per_index(sched.alphas_cumprod, ii, x0b.ndim)
            xt = ac.sqrt() * x0b + (1.0 - ac).sqrt() * eps.to(torch.float64)
            eps_hat = eps_model(xt.to(torch.float32), ii).to(torch.float64)
            is_dec = ii == 0
            terms = torch.zeros(len(ii), dtype=torch.float64, device=dev)
            if bool(is_dec.any()):
                m = is_dec
                mean = predicted_x0(xt[m], eps_hat[m], ii[m], sched, clip=options.clip_x0)
                terms[m] = decoder(x0b[m], mean)
                dec.index_add_(0, bi[m], terms[m])
            if bool((~is_dec).any()):
                m = ~is_dec
                if options.clip_x0:
                    klv = step_kl_general(x0b[m], xt[m], eps_hat[m], ii[m], sched, options.variance, True)
                else:
                    klv = step_kl(eps[m], eps_hat[m], ii[m], sched, options.variance)
                kl.index_add_(0, bi[m], ww[m] * klv)
    n = float(options.n_noise)
    return BoundTerms(prior=prior, kl=kl / n, decoder=dec / n, dims=dims)
