"""t-SNE maps of the latent space (Figures D.4, E.5, J.6): encoder means coloured by label, plus prior samples.

The "pink dots" of the figures are draws from the prior N(0, I), embedded jointly with the codes,
which shows where the prior puts mass the codes do not cover (and vice versa).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ._util import ImagesLike, encode_means


def tsne_latents(model, images: ImagesLike, labels, n_prior: int = 500, seed: int = 0,
                 perplexity: float = 30.0, batch_size: int = 500, latents: Optional[torch.Tensor] = None,
                 max_iter: int = 1000) -> dict:
    """Joint 2-D t-SNE of μφ(x) for ``images`` and ``n_prior`` prior draws (scikit-learn).

    Returns ``embedding`` (``(N + n_prior)×2``), ``labels`` (the given labels, −1 for prior
    draws) and ``is_prior`` (bool), all NumPy arrays. ``latents`` skips encoding (precomputed codes).
    """
    from sklearn.manifold import TSNE

    z = (latents if latents is not None else encode_means(model, images, batch_size)).detach().cpu().double()
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    if labels.shape[0] != z.shape[0]:
        raise ValueError(f"tsne_latents: {labels.shape[0]} labels for {z.shape[0]} images")
    g = torch.Generator().manual_seed(seed)
    prior = torch.randn(n_prior, z.shape[1], generator=g, dtype=torch.float64)
    allz = torch.cat([z, prior]).numpy()
    perplexity = min(perplexity, max(1.0, (allz.shape[0] - 1) / 3.0))
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=max_iter).fit_transform(allz)
    return {
        "embedding": emb,
        "labels": np.concatenate([labels.astype(np.int64), -np.ones(n_prior, dtype=np.int64)]),
        "is_prior": np.concatenate([np.zeros(z.shape[0], bool), np.ones(n_prior, bool)]),
    }


def plot_tsne(result: dict, ax=None, title: Optional[str] = None, point_size: float = 3.0, prior_color: str = "hotpink"):
    """Scatter plot of :func:`tsne_latents` output: codes coloured by label (tab10), prior draws in pink."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    emb, lab, pri = result["embedding"], result["labels"], result["is_prior"]
    cmap = plt.get_cmap("tab10")
    for c in np.unique(lab[~pri]):
        sel = (~pri) & (lab == c)
        ax.scatter(emb[sel, 0], emb[sel, 1], s=point_size, color=cmap(int(c) % 10), label=str(c), linewidths=0)
    if pri.any():
        ax.scatter(emb[pri, 0], emb[pri, 1], s=point_size, color=prior_color, label="prior", linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax
