"""Mutual information between data and latents on an evaluation batch (Appendix D, Eq. D.1).

With the empirical data distribution of a batch {x_j}, j = 1..N, the aggregated posterior is
the Gaussian mixture q(z) = (1/N) Σ_j N(z; μ_j, Σ_j), and

    I(x; z) = E_{x, z~q(z|x)}[log q(z|x) − log q(z)],
    log q(z) = logsumexp_j log N(z; μ_j, Σ_j) − ln N.

For the Section-4 encoder (one isotropic σz² shared by all x) this reduces to Eq. (D.1):

    −E_{q(z)}[ln (1/N) Σ_j exp(−‖z − μ_j‖² / (2σz²))] − d_z/2,

because E‖z − μ_i‖²/(2σz²) = d_z/2 under q(z|x_i). The paper prints ``d_x/2``; ``d_z/2``
is the term that makes the estimate ≈ 0 at posterior collapse (row 0.0 of Table 1).
Both forms are bounded by ln N (the mixture contains the component j = i), so with the
paper's N = 10,000 no value can exceed ln 10⁴ ≈ 9.21 nats; the larger values printed in
Tables 1 and E.8 cannot come from this estimator (see ``tables/README.md``). The result
therefore carries ``ln_n`` next to the estimate.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from vaebook._util import ImagesLike, encode_means, iter_batches, resolve_generator


def _log_normal_matrix(z: torch.Tensor, mean: torch.Tensor, prec: torch.Tensor, logdet_term: torch.Tensor) -> torch.Tensor:
    """``[M, N]`` matrix of log N(z_m; μ_n, diag(1/prec_n)) via matrix products (float64)."""
    quad = (z * z) @ prec.T - 2.0 * z @ (mean * prec).T + (mean * mean * prec).sum(-1)
    return -0.5 * quad.clamp_min(0.0) + logdet_term


def gaussian_mixture_mi(
    mean: torch.Tensor,
    var: torch.Tensor | float,
    n_z: int = 1,
    generator: Optional[torch.Generator] = None,
    row_chunk: int = 1024,
) -> dict:
    """MI of the batch {x_j} with z ~ N(μ_j, diag(var_j)): Monte-Carlo over z, exact mixture density.

    ``mean`` is ``N×d``; ``var`` is ``N×d``, ``N×1``, ``d`` or a scalar. Returns ``mi`` (the
    general estimator), ``mi_d1`` (Eq. D.1 with d_z/2; ``None`` unless all variances are one
    shared scalar), their standard errors over the z draws, ``ln_n`` and ``n``.
    """
    mean = mean.detach().to("cpu", torch.float64)
    n, d = mean.shape
    var_t = torch.as_tensor(var, dtype=torch.float64).detach().cpu()
    var_full = torch.broadcast_to(var_t, (n, d)).contiguous()
    if (var_full <= 0).any():
        raise ValueError("gaussian_mixture_mi: all encoder variances must be > 0 (a deterministic encoder has no q(z|x))")
    isotropic = bool(torch.allclose(var_full, var_full[0, 0].expand_as(var_full), rtol=1e-6, atol=0.0))
    g = resolve_generator(generator, None)

    prec = 1.0 / var_full
    logdet = -0.5 * (torch.log(2 * math.pi * var_full)).sum(-1)  # [N]
    eps = torch.randn(n_z, n, d, generator=g, dtype=torch.float64)
    z = (mean.unsqueeze(0) + eps * var_full.sqrt().unsqueeze(0)).reshape(n_z * n, d)
    owner = torch.arange(n).repeat(n_z)
    log_cond = (-0.5 * (eps**2).sum(-1)).reshape(-1) + logdet[owner]  # log q(z|x_i)

    log_marg = torch.empty(n_z * n, dtype=torch.float64)
    d1_terms = torch.empty(n_z * n, dtype=torch.float64) if isotropic else None
    for i in range(0, n_z * n, row_chunk):
        zc = z[i : i + row_chunk]
        lm = _log_normal_matrix(zc, mean, prec, logdet)
        log_marg[i : i + row_chunk] = torch.logsumexp(lm, dim=1) - math.log(n)
        if isotropic:
            # lm − logdet = −‖z − μ_j‖² / (2σz²): the exponent of Eq. (D.1)
            d1_terms[i : i + row_chunk] = -(torch.logsumexp(lm - logdet, dim=1) - math.log(n)) - d / 2.0

    per = log_cond - log_marg
    m = per.numel()
    out = {
        "mi": float(per.mean()),
        "mi_stderr": float(per.std() / math.sqrt(m)) if m > 1 else float("nan"),
        "mi_d1": None,
        "mi_d1_stderr": None,
        "ln_n": math.log(n),
        "n": n,
        "d_z": d,
        "isotropic": isotropic,
    }
    if isotropic:
        out["mi_d1"] = float(d1_terms.mean())
        out["mi_d1_stderr"] = float(d1_terms.std() / math.sqrt(m)) if m > 1 else float("nan")
    return out


def mi_upper_bound(
    model,
    images: ImagesLike,
    batch_size: int = 10_000,
    n_z: int = 1,
    sigma_z2: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    seed: int = 0,
    encode_batch_size: int = 500,
    row_chunk: int = 1024,
) -> dict:
    """The "upper bound of the MI I(x'; z)" of Tables 1/E.8, per evaluation batch (paper: 10,000), averaged.

    The encoder's own variances are used (isotropic σz² of Section 4, or per-example diagonal
    variances). For a deterministic encoder, q(z|x) does not exist; pass ``sigma_z2`` to
    evaluate Eq. (D.1) with an assumed isotropic kernel width (the paper does not say what it
    did for its "deterministic encoding" MI column). Returns the batch-size-weighted means of
    the fields of :func:`gaussian_mixture_mi`, with ``ln_n`` for the largest batch (the cap).
    """
    g = resolve_generator(generator, seed)
    results, sizes = [], []
    for x in iter_batches(images, batch_size):
        mean, var = encode_means(model, x, encode_batch_size, with_var=True)
        if sigma_z2 is not None:
            var = torch.full_like(mean, float(sigma_z2))
        elif var is None:
            raise ValueError(
                "mi_upper_bound: the model's encoder is deterministic (Posterior.var is None); "
                "pass sigma_z2=<assumed isotropic variance> to evaluate Eq. (D.1) anyway"
            )
        results.append(gaussian_mixture_mi(mean, var, n_z=n_z, generator=g, row_chunk=row_chunk))
        sizes.append(mean.shape[0])
    if not results:
        raise ValueError("mi_upper_bound: no images were given")
    w = torch.tensor(sizes, dtype=torch.float64) / sum(sizes)

    def wmean(key):
        vals = [r[key] for r in results]
        if any(v is None for v in vals):
            return None
        return float(sum(wi * v for wi, v in zip(w.tolist(), vals)))

    return {
        "mi": wmean("mi"),
        "mi_d1": wmean("mi_d1"),
        "ln_n": max(r["ln_n"] for r in results),
        "n": sum(sizes),
        "batch_sizes": sizes,
        "d_z": results[0]["d_z"],
        "isotropic": all(r["isotropic"] for r in results),
    }
