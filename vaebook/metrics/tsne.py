"""t-SNE maps of the latent space (Figures D.4, E.5, J.6): encoder means coloured by label, plus prior samples.

The paper's "pink dots" are draws from the prior N(0, I), embedded jointly with the codes (drawn here as black
crosses, apart from every digit's colour),
which shows where the prior puts mass the codes do not cover (and vice versa).
"""
from __future__ import annotations

from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from vaebook._util import ImagesLike, encode_means


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


#: class colours: seaborn's colour-blind-safe palette (Okabe–Ito based), one per digit
CLASS_PALETTE = "colorblind"
#: prior draws: black crosses, a shape and a colour no class has (the paper's pink collides with digit 6)
PRIOR_STYLE = dict(color="black", marker="x", label="prior N(0, I)")
#: columns of a stored t-SNE map (``tsne_frame``): one row per point, ``panel`` names the map
FRAME_COLUMNS = ("panel", "x", "y", "label", "is_prior")


def plot_tsne(result: dict, ax=None, title: Optional[str] = None, point_size: float = 4.0):
    """Scatter plot of :func:`tsne_latents` output: codes coloured by label (colour-blind-safe palette), prior
    draws as black crosses under them, so they read apart from every class."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    emb, lab, pri = (np.asarray(result[k]) for k in ("embedding", "labels", "is_prior"))
    pri = pri.astype(bool)
    colours = sns.color_palette(CLASS_PALETTE, 10)
    if pri.any():
        ax.scatter(emb[pri, 0], emb[pri, 1], s=point_size * 1.5, linewidths=0.6, alpha=0.7, zorder=1, **PRIOR_STYLE)
    for c in np.unique(lab[~pri]):
        sel = (~pri) & (lab == c)
        ax.scatter(emb[sel, 0], emb[sel, 1], s=point_size, color=colours[int(c) % 10], label=str(c), linewidths=0,
                   zorder=2)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def tsne_grid(maps: list, ncols: int = 2, panel_in: float = 3.6):
    """One figure of t-SNE maps, ``maps`` a list of ``(title, result)``, ``ncols`` panels a row at about the page's
    width, one legend (digits and the prior) under them all; titles at 11 pt."""
    ncols = max(1, min(ncols, len(maps)))
    nrows = max(1, -(-len(maps) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_in * ncols, panel_in * nrows + 0.6), squeeze=False)
    for ax, (title, r) in zip(axes.flat, maps):
        plot_tsne(r, ax=ax, title=title)
        ax.title.set_fontsize(11)
    for ax in list(axes.flat)[len(maps):]:
        ax.axis("off")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    digits = sorted((k for k in handles if k.isdigit()), key=int)
    order = digits + [k for k in handles if not k.isdigit()]
    fig.tight_layout()
    fig.legend([handles[k] for k in order], [f"digit {k}" if k.isdigit() else k for k in order],
               loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(6, len(order)), fontsize=10, markerscale=2.5,
               frameon=False)  # under the panels (saved with bbox_inches="tight")
    return fig


def tsne_frame(maps: dict):
    """The points of several t-SNE maps as one table (``FRAME_COLUMNS``), for ``results/`` (a CSV), so the figure
    can be re-drawn without re-running t-SNE."""
    parts = [pd.DataFrame({"panel": name, "x": np.asarray(r["embedding"])[:, 0], "y": np.asarray(r["embedding"])[:, 1],
                           "label": np.asarray(r["labels"]).astype(int), "is_prior": np.asarray(r["is_prior"]).astype(bool)})
             for name, r in maps.items()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(FRAME_COLUMNS))


def maps_from_frame(df) -> list:
    """``[(panel, result)]`` of a :func:`tsne_frame` table, in the table's order."""
    out = []
    for name in dict.fromkeys(df["panel"]):
        g = df[df["panel"] == name]
        out.append((str(name), {"embedding": g[["x", "y"]].to_numpy(float), "labels": g["label"].to_numpy(int),
                                "is_prior": g["is_prior"].astype(str).str.lower().isin(["true", "1"]).to_numpy()}))
    return out
