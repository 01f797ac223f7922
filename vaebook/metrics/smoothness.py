"""Decoder smoothness around the encodings (Section 4.2, Eqs. 5–6 and Appendix C).

* Expected gap (Eq. 5): Δ²(s²) = E_x E_{ε,ε'~N(0,s²I)} ‖μθ(μφ(x)+ε) − μθ(μφ(x)+ε')‖²₂, estimated
  by Monte Carlo with a seeded generator.
* Expected local smoothness (Eq. 6): E_x ‖∇μθ(μφ(x))‖²_F, computed exactly from the decoder
  Jacobian (forward mode: ``torch.func.jvp`` along the latent basis, ``vmap``-ed over examples
  and directions, chunked to bound memory).

For a locally linear decoder Δ²(s²) = 2 s² E‖∇μθ‖²_F (Eq. C.8). Table 1/E.8 print ELS divided
by d_z (the K²θ of Eq. C.7; ``tables/README.md``): :func:`expected_local_smoothness` returns
both ``els_frobenius`` (Eq. 6) and ``els_per_dim`` (= the printed column), and
:func:`expected_gap` returns ``ratio_per_dim`` = Δ²(s²)/(2 d_z s²), which tends to
``els_per_dim`` as s² → 0.

Both run the model in eval mode (BatchNorm with running statistics, as ``vmap`` requires).
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import torch

from vaebook._util import (ImagesLike, encode_means, eval_mode, flat_sum, iter_batches, model_device, model_dtype,
                           resolve_generator)
from vaebook.latent import jacobian_sq_frobenius


@torch.no_grad()
def expected_gap(
    model,
    images: ImagesLike,
    s2: float,
    n_draws: int = 1,
    batch_size: int = 500,
    generator: Optional[torch.Generator] = None,
    seed: int = 0,
) -> dict:
    """Monte-Carlo Δ²(s²) of Eq. (5) with ``n_draws`` (ε, ε') pairs per image.

    Returns ``gap`` (per image, summed over pixels), its standard error ``gap_stderr``,
    ``ratio_per_dim`` = gap / (2 d_z s²), ``s2``, ``n`` (number of (x, ε, ε') triples).
    """
    if s2 <= 0:
        raise ValueError(f"expected_gap: the perturbation variance s2 must be > 0, got {s2}")
    g = resolve_generator(generator, seed)
    dev, dt = model_device(model), model_dtype(model)
    sd = math.sqrt(s2)
    vals = []
    d_z = None
    with eval_mode(model):
        for x in iter_batches(images, batch_size):
            mu = model.encode(x.to(dev, dt)).mean
            d_z = mu.shape[1]
            for _ in range(n_draws):
                e1 = (torch.randn(mu.shape, generator=g, dtype=torch.float64) * sd).to(mu.device, mu.dtype)
                e2 = (torch.randn(mu.shape, generator=g, dtype=torch.float64) * sd).to(mu.device, mu.dtype)
                diff = model.decode(mu + e1) - model.decode(mu + e2)
                vals.append(flat_sum(diff.double() ** 2).cpu())
    if not vals:
        raise ValueError("expected_gap: no images were given")
    v = torch.cat(vals)
    gap = float(v.mean())
    return {
        "gap": gap,
        "gap_stderr": float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else float("nan"),
        "ratio_per_dim": gap / (2.0 * d_z * s2),
        "s2": float(s2),
        "n": v.numel(),
        "d_z": d_z,
    }


def expected_local_smoothness(
    model,
    images: ImagesLike,
    batch_size: int = 500,
    max_items: Optional[int] = None,
) -> dict:
    """ELS of Eq. (6) at z = μφ(x), exact (Jacobian), averaged over ``images``.

    Returns ``els_frobenius`` = E‖∇μθ‖²_F (Eq. 6), ``els_per_dim`` = that / d_z (Table 1's
    printed ELS, Eq. C.7), the standard error ``els_frobenius_stderr`` over images, ``n``.
    """
    vals = []
    d_z = None
    with eval_mode(model):
        for x in iter_batches(images, batch_size):
            mu = encode_means(model, x, batch_size)
            d_z = mu.shape[1]
            if max_items is None:  # ≈ 2²⁰ decoded pixels per block
                with torch.no_grad():
                    d_x = model.decode(mu[:1]).numel()
                max_items = max(1, (1 << 20) // max(d_x, 1))
            with torch.no_grad():
                vals.append(jacobian_sq_frobenius(model.decode, mu, max_items=max_items).double().cpu())
    if not vals:
        raise ValueError("expected_local_smoothness: no images were given")
    v = torch.cat(vals)
    els = float(v.mean())
    return {
        "els_frobenius": els,
        "els_per_dim": els / d_z,
        "els_frobenius_stderr": float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else float("nan"),
        "n": v.numel(),
        "d_z": d_z,
    }


def smoothness_report(
    model,
    images: ImagesLike,
    s2_values: Iterable[float] = (1e-2, 1e-3),
    n_draws: int = 1,
    batch_size: int = 500,
    seed: int = 0,
    max_items: Optional[int] = None,
) -> dict:
    """Table-1 smoothness columns: ``gap_<s2>`` and ``ratio_per_dim_<s2>`` per s², ``els`` (= per-d_z, as printed),
    ``els_frobenius``, and ``gap_over_c8_<s2>`` = Δ²(s²) / (2 s² E‖∇μθ‖²_F) (≈ 1 where Eq. C.8 holds)."""
    g = resolve_generator(None, seed)
    els = expected_local_smoothness(model, images, batch_size=batch_size, max_items=max_items)
    out = {"els": els["els_per_dim"], "els_frobenius": els["els_frobenius"], "d_z": els["d_z"]}
    for s2 in s2_values:
        gap = expected_gap(model, images, s2, n_draws=n_draws, batch_size=batch_size, generator=g)
        key = f"{s2:g}"
        out[f"gap_{key}"] = gap["gap"]
        out[f"gap_stderr_{key}"] = gap["gap_stderr"]
        out[f"ratio_per_dim_{key}"] = gap["ratio_per_dim"]
        out[f"gap_over_c8_{key}"] = gap["gap"] / (2.0 * s2 * els["els_frobenius"]) if els["els_frobenius"] > 0 else float("nan")
    return out
