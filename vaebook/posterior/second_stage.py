"""Second-stage VAE on the latent codes (Dai & Wipf [18], "2nd VAE" columns of Tables 4 and 6).

A small fully connected VAE u → z is trained on the encoder means z = μφ(x) of the training
set; to generate, u ~ N(0, I) is decoded by the second decoder's mean and then by the first
decoder. As in [18], the second decoder is Gaussian with one trainable variance γ
(log-parameterised), which lets the second stage fit a near-degenerate latent distribution.

Paper-scale networks: ``depth=3`` hidden layers of ``width=1024`` for encoder and decoder
(as in [18]); tests use tiny ones. Choices the paper does not state (ours): the latent dimension of
the second stage equals d_z, latents are standardised per dimension before fitting
(``standardize=True``; an affine map, undone when sampling), Adam with ``lr=1e-3``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


def _mlp(d_in: int, width: int, depth: int, d_out: int) -> nn.Sequential:
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


class SecondStageVAE(nn.Module):
    """Fully connected Gaussian VAE on ``d_z``-dimensional codes with trainable decoder variance γ."""

    source = "2nd-vae"

    def __init__(self, d_z: int, d_u: Optional[int] = None, width: int = 1024, depth: int = 3,
                 standardize: bool = True, init_log_gamma: float = 0.0):
        super().__init__()
        self.d_z, self.d_u = d_z, d_u or d_z
        self.encoder = _mlp(d_z, width, depth, 2 * self.d_u)
        self.decoder = _mlp(self.d_u, width, depth, d_z)
        self.log_gamma = nn.Parameter(torch.tensor(float(init_log_gamma)))
        self.standardize = standardize
        self.register_buffer("shift", torch.zeros(d_z))
        self.register_buffer("scale", torch.ones(d_z))
        self.history: list[float] = []

    def loss(self, z: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Negative ELBO per example (nats, averaged over the batch), on standardised codes."""
        h = self.encoder(z)
        mu, logvar = h[:, : self.d_u], h[:, self.d_u :]
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        u = mu + eps * torch.exp(0.5 * logvar)
        zhat = self.decoder(u)
        gamma = torch.exp(self.log_gamma)
        rec = 0.5 * ((z - zhat) ** 2).sum(-1) / gamma + 0.5 * self.d_z * (self.log_gamma + math.log(2 * math.pi))
        kl = 0.5 * (torch.exp(logvar) + mu**2 - logvar - 1.0).sum(-1)
        return (rec + kl).mean()

    def fit(self, latents: torch.Tensor, epochs: int = 50, batch_size: int = 64, lr: float = 1e-3,
            generator: Optional[torch.Generator] = None, seed: int = 0, max_steps: Optional[int] = None) -> "SecondStageVAE":
        """Adam on the negative ELBO of the codes ``latents`` (``N×d_z``)."""
        g = generator if generator is not None else torch.Generator().manual_seed(seed)
        dev = self.log_gamma.device
        z_all = latents.detach().to(dev, torch.float32)
        if z_all.dim() != 2 or z_all.shape[1] != self.d_z:
            raise ValueError(f"SecondStageVAE.fit expects N×{self.d_z} latents, got {tuple(z_all.shape)}")
        if self.standardize:
            self.shift.copy_(z_all.mean(0))
            self.scale.copy_(z_all.std(0).clamp_min(1e-6))
        z_all = (z_all - self.shift) / self.scale
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        self.train()
        step, n = 0, z_all.shape[0]
        for _ in range(epochs):
            perm = torch.randperm(n, generator=g).to(dev)
            for s in range(0, n, batch_size):
                loss = self.loss(z_all[perm[s : s + batch_size]], generator=g)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.history.append(loss.item())
                step += 1
                if max_steps is not None and step >= max_steps:
                    break
            if max_steps is not None and step >= max_steps:
                break
        self.eval()
        return self

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` codes: u ~ N(0, I) → second decoder mean → undo the standardisation (CPU tensor)."""
        dev = self.log_gamma.device
        u = torch.randn(n, self.d_u, generator=generator).to(dev)
        return (self.decoder(u) * self.scale + self.shift).cpu()

    @property
    def gamma(self) -> float:
        return float(torch.exp(self.log_gamma.detach()))
