"""The faces page's pictures (:mod:`vaebook.experiments.faces`): test faces against each model's reconstructions,
prior samples per model, and Diag-I's fitted per-pixel σx² as a map. Faces are drawn 64 px to about 100 px of
screen (nearest-neighbour, so what is smooth is the model's, not the display's)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

FACE_IN = 1.05  # inches per face at the save dpi (150): ≈ 160 px in the file, ≈ 100 px on a 1280-px page
LABEL_PT = 12


def _hwc(x) -> np.ndarray:
    """A ``C×H×W`` image in [0, 1] (tensor or array) as ``H×W×C`` (grey: ``H×W``) for ``imshow``."""
    a = torch.as_tensor(x).detach().float().clamp(0, 1).cpu().numpy()
    if a.ndim != 3:
        raise ValueError(f"an image must be C×H×W, got shape {tuple(a.shape)}")
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def _grid(rows: Sequence[tuple], title: str):
    """One row of faces per ``(label, images)``; the label in words at the row's left."""
    if not rows:
        raise ValueError("rows must hold at least one (label, images) pair")
    ncol = max(len(imgs) for _, imgs in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(ncol * FACE_IN + 1.9, len(rows) * FACE_IN + 0.5),
                             squeeze=False)
    for i, (label, imgs) in enumerate(rows):
        for j in range(ncol):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(imgs):
                ax.imshow(_hwc(imgs[j]), interpolation="nearest", cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=LABEL_PT, labelpad=8)
    fig.suptitle(title, fontsize=LABEL_PT + 1)
    fig.subplots_adjust(left=1.9 / (ncol * FACE_IN + 1.9), right=0.995, top=1 - 0.45 / (len(rows) * FACE_IN + 0.5),
                        bottom=0.01, wspace=0.03, hspace=0.05)
    return fig


def recon_grid(test, images: Mapping[str, dict], labels: Mapping[str, str]):
    """Test faces (first row), then each model's reconstruction of the same faces."""
    rows = [("test faces", list(test))]
    rows += [(labels.get(k, k), list(v["recon"])) for k, v in images.items() if v.get("recon") is not None]
    return _grid(rows, "The same test faces, reconstructed by each model (μθ(μφ(x)))")


def sample_grid(images: Mapping[str, dict], labels: Mapping[str, str]):
    """Each model's first prior samples (μθ(z), z ~ N(0, I)); the same latent draws for every model."""
    rows = [(labels.get(k, k), list(v["samples"])) for k, v in images.items() if v.get("samples") is not None]
    return _grid(rows, "Samples from the prior (the same z for every model)")


def sigma2_map(sigma2_map: Sequence[Sequence[float]], iso: Optional[float] = None, title: str = ""):
    """Diag-I's fitted per-pixel σx² (mean over the colour channels) with a colour bar; ``iso``: Iso-I's scalar,
    marked on the bar for comparison."""
    a = np.asarray(sigma2_map, dtype=float)
    if a.ndim != 2 or not np.isfinite(a).all():
        raise ValueError(f"sigma2_map must be a finite H×W array, got shape {a.shape}")
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    im = ax.imshow(a, cmap="cividis", interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("σx² per pixel (pixel values in [0, 1])", fontsize=11)
    cb.ax.tick_params(labelsize=10)
    if iso is not None and a.min() <= iso <= a.max():
        cb.ax.axhline(iso, color="white", lw=2)
        cb.ax.text(-0.4, iso, "Iso-I", color="black", fontsize=10, ha="right", va="center",
                   transform=cb.ax.get_yaxis_transform())
    ax.set_title(title or "Diag-I's fitted σx² (mean over R, G, B)", fontsize=12)
    fig.tight_layout()
    return fig


__all__ = ["recon_grid", "sample_grid", "sigma2_map"]
