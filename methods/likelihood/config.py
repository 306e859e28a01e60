"""Options of ``diffusion-nll`` and ``diffusion-ic``. The UNet and its training are
:class:`~ood_bench.methods.unet.PixelDiffusionConfig` (the ID DDPM shared with LMD and the other
pixel-diffusion detectors); the rest are score options of the bound (Ho et al. 2020; Nichol &
Dhariwal 2021) and of the compressor (Serrà et al. 2020). Every score is in bits."""
from __future__ import annotations

from dataclasses import dataclass

from ood_bench.methods.base import score_option
from ood_bench.methods.likelihood.bound import DECODER_CDFS, VARIANCES, BoundOptions
from ood_bench.methods.likelihood.compress import COMPRESSORS
from ood_bench.methods.unet import PixelDiffusionConfig

NLL_SCORES = ("nll_bpd", "prior_bpd", "kl_bpd", "decoder_bpd")


@dataclass
class DiffusionNLLConfig(PixelDiffusionConfig):
    """The bound in bits per dimension. Defaults: every timestep, the scheduler's variance,
    one noise draw, no x̂₀ clipping, the exact normal CDF."""

    score: str = score_option("nll_bpd", f"canonical sub-score, bits/dim: {', '.join(NLL_SCORES)}")
    timesteps: int = score_option(0, "KL timesteps evaluated per image: 0 = every t = 2..T (the exact sum; "
                                     "T network calls per image); K < T-1 = stratified estimator, one uniform t in "
                                     "each of K equal strata, weighted by the stratum size (unbiased, noisier; K+1 calls)")
    variance: str = score_option("", f"p_θ's fixed variance: '' = the scheduler's variance_type, or one of {', '.join(VARIANCES)}")
    n_noise: int = score_option(1, "noise draws per image, averaged (multiplies the cost)")
    clip_x0: bool = score_option(False, "clip x̂₀ to [-1, 1] in the KL means and the decoder (improved-diffusion's image_nll.py)")
    decoder_cdf: str = score_option("exact", f"normal CDF of the discretised decoder: {', '.join(DECODER_CDFS)} "
                                             "(tanh = improved-diffusion's approximation)")
    unet_batch: int = score_option(256, "(image, timestep) pairs per UNet call")

    def __post_init__(self) -> None:
        self.check_pixel_options()
        self.check_bound_options()
        if self.score not in self.score_names():
            raise ValueError(f"score must be one of {', '.join(self.score_names())}, got {self.score!r}")

    def score_names(self) -> tuple[str, ...]:
        return NLL_SCORES

    def check_bound_options(self) -> None:
        if self.variance not in ("",) + VARIANCES:
            raise ValueError(f"variance must be '' (the scheduler's) or one of {', '.join(VARIANCES)}, got {self.variance!r}")
        if self.timesteps < 0 or self.n_noise < 1 or self.unet_batch < 1:
            raise ValueError("timesteps must be ≥ 0 (0 = every step), n_noise ≥ 1 and unet_batch ≥ 1")
        if self.decoder_cdf not in DECODER_CDFS:
            raise ValueError(f"decoder_cdf must be one of {', '.join(DECODER_CDFS)}, got {self.decoder_cdf!r}")

    def bound_options(self, variance: str) -> BoundOptions:
        """The bound's options, with ``variance`` resolved (the scheduler's when the option is '')."""
        return BoundOptions(variance=self.variance or variance, timesteps=self.timesteps, n_noise=self.n_noise,
                            clip_x0=self.clip_x0, decoder_cdf=self.decoder_cdf, pairs_per_call=self.unet_batch)


@dataclass
class DiffusionICConfig(DiffusionNLLConfig):
    """Input complexity S = NLL_bits − L (whole image, bits); L = the lossless ``compressor``'s length."""

    score: str = score_option("ic_bits", "canonical sub-score: ic_bits, ic_bpd, nll_bits, <compressor>_bits, <compressor>_bpd")
    compressor: str = score_option("png", f"lossless codec of L(x): {', '.join(COMPRESSORS)} (png at compress_level 9 = the paper's)")

    def score_names(self) -> tuple[str, ...]:
        return ("ic_bits", "ic_bpd", "nll_bits", f"{self.compressor}_bits", f"{self.compressor}_bpd")

    def __post_init__(self) -> None:
        if self.compressor not in COMPRESSORS:
            raise ValueError(f"compressor must be one of {', '.join(COMPRESSORS)}, got {self.compressor!r}")
        super().__post_init__()
