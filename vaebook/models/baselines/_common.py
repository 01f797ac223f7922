"""Pieces shared by the Section-6 baselines: the Appendix-I networks and the encoders.

Every baseline uses the *same* encoder/decoder networks as the proposed models
(:func:`vaebook.nets.build_nets`, Appendix I), so Tables 4–7 compare objectives, not networks.
Only the encoder head width (``d_z`` for a deterministic encoder, ``2·d_z`` for a Gaussian one)
and the decoder's output channels (1 or 3 for a mean image, more for mixture parameters) differ.
Per-dataset hyperparameters (WAE's λ, RAE's β/λ and gradient-penalty cost) are builder arguments;
the values used for each dataset are in its registration (``model_defaults`` in :mod:`vaebook.data`).
"""
from __future__ import annotations

from typing import Optional

import torch

from vaebook.models.base import GenerativeModel, Posterior
from vaebook.nets import ARCHITECTURES, build_nets


def per_image_sq_error(x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """‖x − μ‖² summed over pixels; ``mu`` is ``B×C×H×W`` or ``K×B×C×H×W`` → ``B`` or ``K×B``."""
    if mu.dim() == x.dim() + 1:
        x = x.unsqueeze(0)
    return ((x - mu) ** 2).flatten(-3).sum(-1)


class BaselineModel(GenerativeModel):
    """Builds the Appendix-I nets for ``arch`` and stores ``arch``, ``x_shape``, ``d_z``."""

    def __init__(self, arch: str = "mnist", d_z: Optional[int] = None, enc_out_per_dim: int = 1,
                 dec_channels: Optional[int] = None):
        super().__init__()
        spec = ARCHITECTURES.get(arch)
        if spec is None:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
        self.arch, self.x_shape = arch, spec.image_shape
        self.d_z = spec.default_d_z if d_z is None else int(d_z)
        self.encoder, self.decoder = build_nets(arch, self.d_z, enc_out=enc_out_per_dim * self.d_z,
                                                dec_channels=self.x_shape[0] if dec_channels is None else dec_channels)

    @property
    def d_x(self) -> int:
        c, h, w = self.x_shape
        return c * h * w

    def decoder_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-activation decoder output for ``...×d_z`` latents → ``...×C_out×H×W``."""
        lead = z.shape[:-1]
        out = self.decoder(z.reshape(-1, self.d_z))
        return out.reshape(*lead, *out.shape[1:])


class GaussianEncoderModel(BaselineModel):
    """q(z|x) = N(μφ(x), diag σφ²(x)) (Eq. 2): the encoder's last layer gives the mean and log σφ²."""

    def __init__(self, arch: str = "mnist", d_z: Optional[int] = None, dec_channels: Optional[int] = None):
        super().__init__(arch, d_z, enc_out_per_dim=2, dec_channels=dec_channels)

    def encode(self, x: torch.Tensor) -> Posterior:
        mean, logvar = self.encoder(x).chunk(2, dim=-1)
        return Posterior(mean, logvar.exp())


class DeterministicAutoencoder(BaselineModel):
    """z = μφ(x) (no encoder noise), x̂ = μθ(z) = sigmoid(decoder(z)). Base of AE, RAE, WAE."""

    stochastic_encoder = False
    has_prior = False

    def encode(self, x: torch.Tensor) -> Posterior:
        return Posterior(self.encoder(x), None)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder_raw(z))
