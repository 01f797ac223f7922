"""The low-rank page's figures (:mod:`vaebook.experiments.lowrank`; not an experiment, no ``EXPERIMENT``): the
top columns of Û as images, the residual spectrum, reconstructions and samples."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from vaebook.experiments import _section6 as scale
from vaebook.lab.display import PAGE_IN, fmt, grid_figure, reading_style


def eigen_figure(eig: dict):
    """Top columns of Û as images, one strip per low-rank model (each image scaled to its own ±max, grey = 0)."""
    blocks = []
    for m, v in eig.items():
        u = v["eigen_images"]
        scale_ = u.flatten(1).abs().amax(1).clamp_min(1e-12).reshape(-1, 1, 1, 1)
        fitted = "" if v.get("fitted") else "\n(U not fitted yet: burn-in)"
        blocks.append((f"{scale.display(m)}\nσ̂² = {fmt(v.get('sigma2'), '.2g')}{fitted}", 0.5 + 0.5 * u / scale_))
    return grid_figure(blocks, title="Top columns of Û (Σx = σ̂²I + ÛÛᵀ), grey = 0, each scaled to its own range",
                       cell=0.75)


def spectrum_figure(eig: dict):
    """Eigenvalues of each low-rank model's running residual second moment S, with its σ̂²."""
    with reading_style():
        fig, ax = plt.subplots(figsize=(PAGE_IN, 4.4))
        for m, v in sorted(eig.items(), key=lambda kv: kv[1].get("rank", 0)):
            spec = [max(s, 1e-12) for s in v["spectrum"]]
            line, = ax.plot(range(1, len(spec) + 1), spec, label=scale.display(m), lw=1.5)
            ax.axhline(v["sigma2"], color=line.get_color(), ls=":", lw=1)
            ax.axvline(v["rank"], color=line.get_color(), ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel("eigenvalue index j")
        ax.set_ylabel("λ_j of the running S = E[r rᵀ]\n(pixel values in [0, 1])")
        ax.set_title("Residual spectrum (dotted: σ̂², dashed: rank r)")
        ax.legend()
        fig.tight_layout()
    return fig


def samples_figure(imgs: dict, gt: torch.Tensor):
    """Test images, then per model its reconstructions and prior / GMM-10 samples."""
    blocks = [("test images", gt)]
    for m, im in imgs.items():
        for k, lab in (("recon", "recon"), ("prior", "prior"), ("gmm10", "GMM-10")):
            if k in im:
                blocks.append((f"{scale.display(m)}: {lab}", im[k]))
    return grid_figure(blocks, title="Reconstructions and samples")
