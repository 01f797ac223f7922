"""A linear-Gaussian VAE with closed forms, for checking the metrics against exact values.

Decoder p(x|z) = N(Wz + b, σ²I), prior p(z) = N(0, I), so the marginal is exactly
p(x) = N(b, WWᵀ + σ²I) and the true posterior is N(S Wᵀ(x − b)/σ², S) with
S = (I + WᵀW/σ²)⁻¹. The encoder is an arbitrary linear-Gaussian q(z|x) = N(Ax + c, diag(v)),
so it can be made deliberately imperfect. ``∇μθ = W`` everywhere, so ELS = ‖W‖²_F (Eq. 6)
and Δ²(s²) = 2s²‖W‖²_F (Eq. C.8) hold exactly.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from vaebook.models.base import GenerativeModel, LossOutput, Posterior


class LinearGaussianVAE(GenerativeModel):
    """Linear encoder/decoder with Gaussian noise; images are ``B×C×H×W`` with C·H·W = d_x."""

    label = "linear-Gaussian VAE"
    has_prior = True
    has_likelihood = True

    def __init__(
        self,
        W: torch.Tensor,
        b: torch.Tensor,
        sigma2: float,
        A: torch.Tensor,
        c: torch.Tensor,
        enc_var: Optional[torch.Tensor],
        image_shape: Optional[Sequence[int]] = None,
    ):
        super().__init__()
        d_x, d_z = W.shape
        self.d_z, self.d_x = d_z, d_x
        self.image_shape = tuple(image_shape) if image_shape is not None else (1, 1, d_x)
        if math.prod(self.image_shape) != d_x:
            raise ValueError(f"image_shape {self.image_shape} does not hold d_x = {d_x} values")
        self.W = nn.Parameter(W.clone())
        self.b = nn.Parameter(b.clone())
        self.A = nn.Parameter(A.clone())
        self.c = nn.Parameter(c.clone())
        self.sigma2 = float(sigma2)
        if enc_var is None:
            self.stochastic_encoder = False
            self.enc_var = None
        else:
            self.enc_var = nn.Parameter(torch.as_tensor(enc_var, dtype=W.dtype).clone())

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def random(
        cls,
        d_x: int = 6,
        d_z: int = 2,
        sigma2: float = 0.3,
        seed: int = 0,
        mean_scale: float = 1.0,
        var_scale: float = 1.0,
        dtype: torch.dtype = torch.float64,
        image_shape: Optional[Sequence[int]] = None,
    ) -> "LinearGaussianVAE":
        """Random W, b; encoder = true posterior with its mean map scaled by ``mean_scale`` and variances by ``var_scale``."""
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(d_x, d_z, generator=g, dtype=dtype)
        b = 0.5 * torch.randn(d_x, generator=g, dtype=dtype)
        m = cls(W, b, sigma2, torch.zeros(d_z, d_x, dtype=dtype), torch.zeros(d_z, dtype=dtype), torch.ones(d_z, dtype=dtype), image_shape)
        A, S = m.true_posterior()
        with torch.no_grad():
            m.A.copy_(mean_scale * A)
            m.c.copy_(-(mean_scale * A) @ b)
            m.enc_var.copy_(var_scale * torch.diagonal(S))
        return m

    # -- closed forms ---------------------------------------------------------------------
    @torch.no_grad()
    def true_posterior(self):
        """(A*, S): the exact posterior is N(A*(x − b), S)."""
        eye = torch.eye(self.d_z, dtype=self.W.dtype)
        S = torch.linalg.inv(eye + self.W.T @ self.W / self.sigma2)
        return S @ self.W.T / self.sigma2, S

    @torch.no_grad()
    def exact_log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(x; b, WWᵀ + σ²I) per example."""
        cov = self.W @ self.W.T + self.sigma2 * torch.eye(self.d_x, dtype=self.W.dtype)
        dist = torch.distributions.MultivariateNormal(self.b, covariance_matrix=cov)
        return dist.log_prob(x.reshape(x.shape[0], -1).to(self.W.dtype))

    @torch.no_grad()
    def exact_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """ELBO of the model's own encoder, in closed form, per example."""
        xf = x.reshape(x.shape[0], -1).to(self.W.dtype)
        post = self.encode(x)
        resid = xf - post.mean @ self.W.T - self.b
        tr = (self.W.pow(2) * post.var.unsqueeze(1)).sum((1, 2))  # tr(W diag(v) Wᵀ)
        e_rec = -0.5 * ((resid**2).sum(-1) + tr) / self.sigma2 - 0.5 * self.d_x * math.log(2 * math.pi * self.sigma2)
        return e_rec - post.kl_to_standard_normal()

    # -- GenerativeModel ----------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Posterior:
        xf = x.reshape(x.shape[0], -1).to(self.W.dtype)
        mean = xf @ self.A.T + self.c
        var = None if self.enc_var is None else self.enc_var.expand(x.shape[0], self.d_z)
        return Posterior(mean, var)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.W.T + self.b).reshape(z.shape[0], *self.image_shape)

    def decoder_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        xf = x.reshape(x.shape[0], -1).to(self.W.dtype)
        mu = z @ self.W.T + self.b  # K×B×d_x
        return -0.5 * ((xf.unsqueeze(0) - mu) ** 2).sum(-1) / self.sigma2 - 0.5 * self.d_x * math.log(2 * math.pi * self.sigma2)

    def loss(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> LossOutput:
        post = self.encode(x)
        z = post.rsample(1, generator=generator)
        rec = -self.decoder_log_prob(x, z)[0]
        kl = post.kl_to_standard_normal()
        return LossOutput(total=(rec + kl).mean(), terms={"rec": rec.mean().detach(), "kl": kl.mean().detach()})

    @torch.no_grad()
    def sample_data(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw ``n`` images from the model's exact marginal p(x)."""
        z = torch.randn(n, self.d_z, generator=generator, dtype=self.W.dtype)
        noise = torch.randn(n, self.d_x, generator=generator, dtype=self.W.dtype) * math.sqrt(self.sigma2)
        return (z @ self.W.T + self.b + noise).reshape(n, *self.image_shape)
