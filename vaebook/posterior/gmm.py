"""Gaussian-mixture density on the latent codes (ex-post density estimation, as in RAE [22]).

A scikit-learn ``GaussianMixture`` with full covariances (10 or 100 components in the paper)
is fitted to the encoder means μφ(x) of the training set; new latents are drawn from it and
decoded. Defaults follow the settings of RAE's released code (full covariances, ``max_iter=2000``,
``tol=1e-3``); the paper only says "the same settings as [22]". Sampling is done here from the fitted parameters with a ``torch.Generator`` so that
it is reproducible in the same way as the rest of vaebook.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch


class GMMSampler:
    """Full-covariance GMM fitted to latent codes; ``sample(n)`` returns ``n×d_z`` latents."""

    def __init__(self, n_components: int = 10, covariance_type: str = "full", seed: int = 0,
                 max_iter: int = 2000, tol: float = 1e-3, n_init: int = 1, reg_covar: float = 1e-6):
        self.n_components = n_components
        self.tol = tol
        self.covariance_type = covariance_type
        self.seed = seed
        self.max_iter = max_iter
        self.n_init = n_init
        self.reg_covar = reg_covar
        self.gmm = None
        self.source = f"gmm{n_components}"

    def fit(self, latents: torch.Tensor) -> "GMMSampler":
        from sklearn.mixture import GaussianMixture

        z = np.asarray(latents.detach().cpu().double() if isinstance(latents, torch.Tensor) else latents, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] < self.n_components:
            raise ValueError(f"GMM with {self.n_components} components needs at least that many N×d_z latents, got shape {z.shape}")
        self.gmm = GaussianMixture(
            n_components=self.n_components, covariance_type=self.covariance_type, random_state=self.seed,
            max_iter=self.max_iter, tol=self.tol, n_init=self.n_init, reg_covar=self.reg_covar,
        ).fit(z)
        self._weights = torch.as_tensor(self.gmm.weights_, dtype=torch.float64)
        self._means = torch.as_tensor(self.gmm.means_, dtype=torch.float64)
        cov = self._full_covariances()
        self._chol = torch.linalg.cholesky(torch.as_tensor(cov, dtype=torch.float64))
        self.d_z = z.shape[1]
        return self

    def _full_covariances(self) -> np.ndarray:
        g, k, d = self.gmm, self.n_components, self.gmm.means_.shape[1]
        if self.covariance_type == "full":
            return g.covariances_
        if self.covariance_type == "tied":
            return np.broadcast_to(g.covariances_, (k, d, d)).copy()
        if self.covariance_type == "diag":
            return np.stack([np.diag(c) for c in g.covariances_])
        if self.covariance_type == "spherical":
            return np.stack([c * np.eye(d) for c in g.covariances_])
        raise ValueError(f"unknown covariance_type {self.covariance_type!r}")

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` latents (float64, CPU): component by its weight, then mean + L·ε."""
        if self.gmm is None:
            raise RuntimeError("GMMSampler.sample called before fit()")
        comp = torch.multinomial(self._weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.d_z, generator=generator, dtype=torch.float64)
        return self._means[comp] + torch.einsum("nij,nj->ni", self._chol[comp], eps)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log density of the fitted mixture at ``z``."""
        return torch.as_tensor(self.gmm.score_samples(np.asarray(z.detach().cpu().double())))
