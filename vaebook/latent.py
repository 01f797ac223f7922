"""Latent-space maths that models and metrics share: spherical interpolation (:func:`slerp`, Section 6.2) and the
squared Frobenius norm of a row-wise map's Jacobian (:func:`jacobian_sq_frobenius`: Eq. (6)'s integrand and the RAE
gradient penalty). It sits below :mod:`vaebook.models` and :mod:`vaebook.metrics`, so a model never imports a
metric; both metric modules re-export these names."""
from __future__ import annotations

import warnings
from typing import Optional, Union

import torch
from torch.func import jvp, vmap


def slerp(z1: torch.Tensor, z2: torch.Tensor, ratio: Union[float, torch.Tensor] = 0.5, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation between the rows of ``z1`` and ``z2`` (``B×d`` or ``d``).

    slerp(z1, z2; t) = sin((1−t)ω)/sin ω · z1 + sin(tω)/sin ω · z2, with ω the angle between
    z1 and z2. ``ratio`` is a scalar or one value per row (``B`` or ``B×1``). For (nearly)
    parallel or anti-parallel rows (sin ω < ``eps``) the formula is ill-conditioned and linear
    interpolation is used instead. t = 0 gives z1, t = 1 gives z2; for equal-norm inputs the
    output keeps that norm and its angle to z1 is t·ω.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"slerp: z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)} must have the same shape")
    squeeze = z1.dim() == 1
    if squeeze:
        z1, z2 = z1.unsqueeze(0), z2.unsqueeze(0)
    t = torch.as_tensor(ratio, dtype=z1.dtype, device=z1.device)
    if t.dim() == 0:
        t = t.expand(z1.shape[0])
    t = t.reshape(-1, 1)
    if t.shape[0] != z1.shape[0]:
        raise ValueError(f"slerp: got {t.shape[0]} ratios for {z1.shape[0]} rows")
    n1 = z1.norm(dim=-1, keepdim=True)
    n2 = z2.norm(dim=-1, keepdim=True)
    cos = ((z1 * z2).sum(-1, keepdim=True) / (n1 * n2).clamp_min(torch.finfo(z1.dtype).tiny)).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    so = torch.sin(omega)
    ok = so > eps
    safe = torch.where(ok, so, torch.ones_like(so))
    w1 = torch.where(ok, torch.sin((1.0 - t) * omega) / safe, 1.0 - t)
    w2 = torch.where(ok, torch.sin(t * omega) / safe, t)
    out = w1 * z1 + w2 * z2
    return out.squeeze(0) if squeeze else out


def jacobian_sq_frobenius(f, z: torch.Tensor, directions="exact", generator: Optional[torch.Generator] = None,
                          max_items: Optional[int] = None) -> torch.Tensor:
    """‖∂f(z)_b/∂z_b‖²_F for every row ``z_b`` of ``z`` → ``B``, for a row-wise ``f`` (``B×d_z → B×…``).

    ``"exact"``: the sum over the d_z basis directions of ‖J e_k‖² (forward-mode JVPs, vmapped) — Eq. (6)'s
    integrand (ELS) and the RAE gradient penalty; an int n: the unbiased estimate (1/n) Σ_p ‖J v_p‖², v_p ~ N(0, I).
    Differentiable (reverse-over-forward). ``max_items`` bounds the (rows × directions) evaluated at once
    (rows are then taken in chunks, directions vmapped in chunks).
    """
    b, d_z = z.shape
    if directions == "exact":
        tangents, scale = torch.eye(d_z, dtype=z.dtype, device=z.device).unsqueeze(1).expand(d_z, b, d_z), 1.0
    else:
        n = int(directions) if not isinstance(directions, bool) else 0
        if n < 1:
            raise ValueError(f"directions must be 'exact' or a positive int, got {directions!r}")
        tangents, scale = torch.randn((n, b, d_z), generator=generator, dtype=z.dtype, device=z.device), 1.0 / n
    p = tangents.shape[0]
    rows = b if max_items is None else max(1, int(max_items) // p)
    chunk = None if max_items is None else max(1, min(p, int(max_items)))
    out = []
    with warnings.catch_warnings():
        # torch's own forward-AD decompositions still call torch.jit.script on first use
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=DeprecationWarning)
        for i in range(0, b, rows):
            zc, tc = z[i:i + rows], tangents[:, i:i + rows]
            jv = vmap(lambda t: jvp(f, (zc,), (t,))[1], chunk_size=chunk)(tc)  # P×rows×…
            out.append(jv.pow(2).flatten(2).sum(-1).sum(0) * scale)
    return torch.cat(out)


__all__ = ["slerp", "jacobian_sq_frobenius"]
