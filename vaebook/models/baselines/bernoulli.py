"""VAE with a Bernoulli decoder ("VAE w/ Bernoulli", MNIST rows of Tables 4, 5).

p(x|z) = Π_i Bern(x_i | sigmoid(ℓ_i(z))) with logits ℓ from the Appendix-I.1 decoder; loss =
−E_q log p(x|z) + KL(q(z|x) ‖ N(0, I)) (the ELBO of Eq. 3 with a Bernoulli likelihood), in nats per
image. MNIST is used as grey levels in [0, 1], not binarised (the paper does not say it binarises),
so the "log-likelihood" is the continuous-target cross-entropy −BCE(x, sigmoid ℓ): it is what the
model is trained on but not a normalised density over [0, 1]^784, so its IWAE "NLL" is not
comparable with the Gaussian models' (Table 7 does not list it either).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from vaebook.models.base import LossOutput, Needs, register_model
from vaebook.models.baselines._common import GaussianEncoderModel, per_image_sq_error


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Σ_pixels [x log σ(ℓ) + (1 − x) log(1 − σ(ℓ))] = −BCE-with-logits summed per image.
    ``logits`` is ``B×C×H×W`` or ``K×B×C×H×W`` (``x`` broadcast) → ``B`` or ``K×B``."""
    x = x.expand_as(logits)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(-3).sum(-1)


@register_model("vae-bernoulli", "VAE w/ Bernoulli", "baseline", Needs(channels=(1,)))  # grey levels as in MNIST
class BernoulliVAE(GaussianEncoderModel):
    """Gaussian encoder (Eq. 2), Bernoulli decoder; ``decode`` returns the mean image sigmoid(ℓ(z))."""

    has_likelihood = True

    def __init__(self, arch: str = "mnist", d_z: Optional[int] = None, n_samples: int = 1):
        super().__init__(arch, d_z)
        self.n_samples = int(n_samples)

    def decode(self, z):
        return torch.sigmoid(self.decoder_raw(z))

    def loss(self, x, generator=None):
        q = self.encode(x)
        z = q.rsample(self.n_samples, generator)  # n×B×d_z
        logits = self.decoder_raw(z)
        rec = -bernoulli_log_prob(x, logits).mean()
        kl = q.kl_to_standard_normal().mean()
        total = rec + kl
        mse = per_image_sq_error(x, torch.sigmoid(logits)).mean()
        return LossOutput(total, {"loss": total.detach(), "bce": rec.detach(), "kl": kl.detach(), "mse": mse.detach()})

    def decoder_log_prob(self, x, z):
        """−BCE(x, sigmoid ℓ(z)) per image (continuous [0, 1] targets; see module docstring); K×B."""
        return bernoulli_log_prob(x, self.decoder_raw(z))
