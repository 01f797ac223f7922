"""How far below posterior collapse the optimum of Section 4's linear VAE lies (the collapse question).

For the linear model of :mod:`vaebook.theory.linear_vae` (x ~ N(0, C), μθ(z) = Wz, q(z|x) = N(Vx, σz² I), one
shared σz²), the collapsed solution W = 0, V = 0, σz² = 1 has J_collapse = tr(C)/(2σx²) (every pixel's variance
is reconstruction error; KL = 0). :func:`collapse_margin` gives J_collapse − J* with J* the global optimum
(closed form, Theorem 2's derivation): a small margin means a nearly flat landscape between the two, where the
optimiser rather than the objective decides whether a network collapses. The margin is 0 exactly when
σx² ≥ λ_max(C) (collapse is then the optimum).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from vaebook.theory._nets import DTYPE
from vaebook.theory.linear_vae import closed_form


def collapse_margin(C: torch.Tensor, d_z: int, sigma_x2: float) -> dict:
    """``J_collapse``, ``J_opt`` (nats per example, without the constant (d_x/2)·ln 2πσx²), their difference
    ``margin`` and the optimum's σz² and number of active latent directions."""
    C = torch.as_tensor(C, dtype=DTYPE)
    opt = closed_form(C, d_z, sigma_x2)
    j_collapse = float(torch.trace(C)) / (2 * sigma_x2)
    return {"sigma_x2": float(sigma_x2), "J_collapse": j_collapse, "J_opt": opt.J, "margin": j_collapse - opt.J,
            "sigma_z2_opt": opt.sigma_z2, "active": opt.active}


def margin_sweep(C: torch.Tensor, d_z: int, sigma_x2s: Sequence[float]) -> list[dict]:
    return [collapse_margin(C, d_z, s) for s in sigma_x2s]


def data_covariance(x: torch.Tensor) -> torch.Tensor:
    """Covariance (float64, d_x × d_x) of images ``N×C×H×W`` (uint8 or float in [0, 1]), centred."""
    x = x.reshape(x.shape[0], -1).to(DTYPE)
    if x.max() > 1.5:
        x = x / 255.0
    x = x - x.mean(0, keepdim=True)
    return (x.T @ x) / x.shape[0]


__all__ = ["collapse_margin", "margin_sweep", "data_covariance"]
