"""VAE with a discretised mixture-of-logistics decoder ("VAE w/ MoL", CelebA rows; PixelCNN++ [7]).

Each subpixel value v ∈ {0, …, 255} (image x ∈ [0, 1] → v = round(255·x)) has its own mixture of
K logistics with weights π, means m and scales s (all outputs of the Appendix-I decoder):

    P(v) = Σ_k π_k [σ((v/255 + 1/510 − m_k)/s_k) − σ((v/255 − 1/510 − m_k)/s_k)],

with the lower edge of bin 0 at −∞ and the upper edge of bin 255 at +∞, so the 256 masses
sum to 1. Choices the paper leaves open (it only cites [7]):

* ``n_mix = 10`` components (PixelCNN++'s released default);
* subpixels are **independent** given z: every colour channel has its own mixture weights and
  there is no autoregressive channel coupling (PixelCNN++ shares weights over the channels of a
  pixel and couples their means linearly; a VAE decoder has no autoregressive order);
* log-scales are clamped at −7 (as in PixelCNN++), means are unconstrained (decoder output + 0.5,
  so the untrained decoder starts at mid-grey).

Decoder channels: ``3·K·C`` laid out as ``[logits | means | log-scales]``, each ``C×K``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from vaebook.models.base import LossOutput, Needs, register_model
from vaebook.models.baselines._common import GaussianEncoderModel, per_image_sq_error

N_BINS = 256
LOG_SCALE_MIN = -7.0


def to_bins(x: torch.Tensor, n_bins: int = N_BINS) -> torch.Tensor:
    """Pixel values in [0, 1] → bin indices round((n_bins − 1)·x), as a float tensor in [0, n_bins − 1]."""
    return torch.round(x * (n_bins - 1)).clamp_(0, n_bins - 1)


def discretized_logistic_log_prob(v: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
                                  n_bins: int = N_BINS) -> torch.Tensor:
    """log P(bin v) of one discretised logistic per element (broadcasting); ``v`` holds bin indices.

    Numerically stable everywhere: with a = (upper − m)/s, b = (lower − m)/s,
    log(σ(a) − σ(b)) = −softplus(−a) − softplus(b) + log(−expm1(b − a)); bin 0 uses log σ(a),
    bin n_bins−1 uses log(1 − σ(b)) = −softplus(b).
    """
    half = 0.5 / (n_bins - 1)
    c = v / (n_bins - 1)
    inv_s = torch.exp(-log_scales)
    a = (c + half - means) * inv_s
    b = (c - half - means) * inv_s
    log_upper = -F.softplus(-a)  # log σ(a): mass of (−∞, upper]
    log_lower_tail = -F.softplus(b)  # log(1 − σ(b)): mass of [lower, ∞)
    mid = log_upper + log_lower_tail + torch.log(-torch.expm1(-2.0 * half * inv_s))  # b − a = −(bin width)/s
    return torch.where(v <= 0, log_upper, torch.where(v >= n_bins - 1, log_lower_tail, mid))


def mol_log_prob(x: torch.Tensor, logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
                 n_bins: int = N_BINS) -> torch.Tensor:
    """log P(x) per subpixel of a mixture of discretised logistics.

    ``x``: ``...×C×H×W`` in [0, 1]; parameters ``...×C×K×H×W`` (mixture axis −3) → ``...×C×H×W``.
    """
    v = to_bins(x, n_bins).unsqueeze(-3)
    lp = discretized_logistic_log_prob(v, means, log_scales.clamp(min=LOG_SCALE_MIN), n_bins)
    return torch.logsumexp(F.log_softmax(logits, dim=-3) + lp, dim=-3)


def mol_mean(logits: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Σ_k π_k m_k clipped to [0, 1] (mean of the continuous mixture; the edge bins' clipping is ignored)."""
    return (F.softmax(logits, dim=-3) * means).sum(-3).clamp(0.0, 1.0)


def mol_sample(logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
               generator: Optional[torch.Generator] = None, n_bins: int = N_BINS) -> torch.Tensor:
    """Draw each subpixel from its mixture: component by Gumbel-max, logistic by inverse CDF,
    then the bin round((n_bins−1)·y) (clamped), returned as a value in [0, 1]."""
    dev, dt = logits.device, logits.dtype
    u = torch.rand(logits.shape, generator=generator, device=dev, dtype=dt).clamp_(1e-12, 1 - 1e-7)
    k = torch.argmax(logits - torch.log(-torch.log(u)), dim=-3, keepdim=True)
    m = means.gather(-3, k).squeeze(-3)
    s = log_scales.clamp(min=LOG_SCALE_MIN).gather(-3, k).squeeze(-3).exp()
    u2 = torch.rand(m.shape, generator=generator, device=dev, dtype=dt).clamp_(1e-7, 1 - 1e-7)
    y = m + s * (torch.log(u2) - torch.log1p(-u2))
    return to_bins(y, n_bins) / (n_bins - 1)


@register_model("vae-mol", "VAE w/ MoL", "baseline", Needs(channels=(3,)))  # 8-bit colour images as in CelebA
class MoLVAE(GaussianEncoderModel):
    """Gaussian encoder (Eq. 2) + discretised-MoL decoder; loss = −log P(x|z) + KL, nats per image.

    ``decode`` gives the mixture mean (clipped to [0, 1]); :meth:`sample_pixels` draws pixels.
    """

    has_likelihood = True

    def __init__(self, arch: str = "celeba64", d_z: Optional[int] = None, n_mix: int = 10, n_samples: int = 1):
        from vaebook.nets import ARCHITECTURES

        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
        if int(n_mix) < 1:
            raise ValueError(f"n_mix must be a positive integer, got {n_mix!r}")
        self.n_mix = int(n_mix)
        c = ARCHITECTURES[arch].image_shape[0]
        super().__init__(arch, d_z, dec_channels=3 * self.n_mix * c)
        self.n_samples = int(n_samples)

    def mixture_params(self, z: torch.Tensor):
        """``...×d_z`` → (logits, means, log_scales), each ``...×C×K×H×W``."""
        out = self.decoder_raw(z)
        c, h, w = self.x_shape
        lead = out.shape[:-3]
        p = out.reshape(*lead, 3, c, self.n_mix, h, w)
        return p.select(-5, 0), p.select(-5, 1) + 0.5, p.select(-5, 2)

    def decode(self, z):
        logits, means, _ = self.mixture_params(z)
        return mol_mean(logits, means)

    @torch.no_grad()
    def sample_pixels(self, z: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Images drawn from p(x|z) (each subpixel from its mixture), values in {0, 1/255, …, 1}."""
        return mol_sample(*self.mixture_params(z), generator=generator)

    def loss(self, x, generator=None):
        q = self.encode(x)
        z = q.rsample(self.n_samples, generator)
        logits, means, log_scales = self.mixture_params(z)
        nll_x = -mol_log_prob(x, logits, means, log_scales).flatten(-3).sum(-1).mean()
        kl = q.kl_to_standard_normal().mean()
        total = nll_x + kl
        mse = per_image_sq_error(x, mol_mean(logits, means)).mean()
        return LossOutput(total, {"loss": total.detach(), "nll_x": nll_x.detach(), "kl": kl.detach(),
                                  "mse": mse.detach(), "bits_per_dim": (nll_x.detach() / (self.d_x * math.log(2)))})

    def decoder_log_prob(self, x, z):
        """log P(x|z) in nats per image (discrete, 256 bins per subpixel); ``z`` K×B×d_z → K×B."""
        return mol_log_prob(x, *self.mixture_params(z)).flatten(-3).sum(-1)
