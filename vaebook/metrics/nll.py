"""Negative log-likelihood by importance weighting (Section 6.4, Table 7; Burda et al. [37]).

With z_1..z_k ~ q(z|x) and log w_i = log p(x|z_i) + log p(z_i) − log q(z_i|x),

    log p(x) ≥ L_k(x) = logsumexp_i log w_i − ln k   (IWAE bound, tightens as k grows),
    L_1 ≤ L_k,     E[mean_i log w_i] = ELBO(x).

Reported as NLL = −L_k in nats per image (positive = −log p, the sign of Table 7, which prints
"< value": an upper bound on the NLL). The k samples are drawn in chunks and combined with a
running log-sum-exp, so memory is O(batch × chunk × d_x) whatever k is.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ._util import ImagesLike, eval_mode, iter_batches, model_device, model_dtype, resolve_generator


def _log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)


@torch.no_grad()
def iwae_log_weights_stats(model, x: torch.Tensor, k: int, k_chunk: int, generator: torch.Generator):
    """For one batch: (IWAE bound L_k per example, mean log-weight per example = ELBO estimate)."""
    post = model.encode(x)
    if post.var is None:
        raise ValueError(f"{getattr(model, 'label', type(model).__name__)} has a deterministic encoder: no q(z|x) to importance-sample from")
    lse = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    std = post.var.sqrt()
    for start in range(0, k, k_chunk):
        kc = min(k_chunk, k - start)
        eps = torch.randn((kc, *post.mean.shape), generator=generator, dtype=torch.float64).to(post.mean.device, post.mean.dtype)
        z = post.mean.unsqueeze(0) + eps * std.unsqueeze(0)
        log_w = (model.decoder_log_prob(x, z) + _log_standard_normal(z) - post.log_prob(z)).double()  # [kc, B]
        if not torch.isfinite(log_w).all():
            raise FloatingPointError("iwae: non-finite log-weights (check decoder_log_prob / encoder variances)")
        lse = torch.logaddexp(lse, torch.logsumexp(log_w, 0))
        total += log_w.sum(0)
    return lse - math.log(k), total / k


def iwae_nll(
    model,
    images: ImagesLike,
    k: int = 500,
    batch_size: int = 100,
    k_chunk: int = 100,
    generator: Optional[torch.Generator] = None,
    seed: int = 0,
) -> dict:
    """IWAE NLL bound with ``k`` importance samples (paper: k = 500, test set), in nats per image.

    Returns ``nll`` (mean −L_k, upper bound on the NLL), ``nll_stderr`` (over images),
    ``elbo`` (mean ELBO estimate from the same samples, a lower bound on log p),
    ``nll_elbo`` = −elbo, per-image tensors ``nll_per_image``/``elbo_per_image``, ``k``, ``n``.
    """
    if not getattr(model, "has_likelihood", False):
        raise ValueError(f"{getattr(model, 'label', type(model).__name__)} defines no likelihood p(x|z) (has_likelihood=False)")
    if k < 1 or k_chunk < 1:
        raise ValueError(f"k and k_chunk must be >= 1, got k={k}, k_chunk={k_chunk}")
    g = resolve_generator(generator, seed)
    dev, dt = model_device(model), model_dtype(model)
    bounds, elbos = [], []
    with eval_mode(model):
        for x in iter_batches(images, batch_size):
            lk, el = iwae_log_weights_stats(model, x.to(dev, dt), k, k_chunk, g)
            bounds.append(lk.cpu())
            elbos.append(el.cpu())
    if not bounds:
        raise ValueError("iwae_nll: no images were given")
    lk = torch.cat(bounds)
    el = torch.cat(elbos)
    n = lk.numel()
    return {
        "nll": float(-lk.mean()),
        "nll_stderr": float(lk.std() / math.sqrt(n)) if n > 1 else float("nan"),
        "elbo": float(el.mean()),
        "nll_elbo": float(-el.mean()),
        "nll_per_image": -lk,
        "elbo_per_image": el,
        "k": k,
        "n": n,
    }
