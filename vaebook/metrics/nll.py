"""Negative log-likelihood by importance weighting (Section 6.4, Table 7; Burda et al. [37]).

With z_1..z_k ~ q(z|x) and log w_i = log p(x|z_i) + log p(z_i) − log q(z_i|x),

    log p(x) ≥ L_k(x) = logsumexp_i log w_i − ln k   (IWAE bound, tightens as k grows),
    L_1 ≤ L_k,     E[mean_i log w_i] = ELBO(x).

Reported as NLL = −L_k in nats per image (positive = −log p, the sign of Table 7, which prints
"< value": an upper bound on the NLL). The k samples are drawn in chunks and combined with a
running log-sum-exp, so memory is O(batch × chunk × d_x) whatever k is.

**Which p(x|z).** By default the model's own ``decoder_log_prob`` ("paper protocol"). For the MLE -D shapes
(Iso-D, Diag-D) that evaluates N(x; μθ(z), Σ̂x(x)) with Σ̂x estimated from the reconstruction of the test
image x itself: not a normalised density of x, so the number is not a bound on −log p(x) (it can go towards
−∞ as ε shrinks). ``iwae_nll(..., sigma2=Σ)`` scores p(x|z) = N(μθ(z), diag Σ) with a variance fixed before the
test image is seen — a normalised density, hence a valid bound; :func:`train_fit_sigma2` fits that Σ on
training reconstructions. :func:`needs_train_fit` says for which models the two differ (for fixed, trainable
and MLE -I shapes the evaluation Σx already does not depend on x: their paper-protocol number is valid).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from vaebook._util import ImagesLike, eval_mode, iter_batches, model_device, model_dtype, resolve_generator


#: training images :func:`train_fit_sigma2` uses by default (the first ones of the split)
TRAIN_FIT_N = 1000


def _log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)


def needs_train_fit(model) -> bool:
    """Whether the model's evaluation Σx depends on the evaluated image (MLE Iso-D / Diag-D: ``needs_recon``), so
    its paper-protocol IWAE number is not a bound and a valid one needs :func:`train_fit_sigma2`."""
    return bool(getattr(getattr(model, "variance", None), "needs_recon", False))


@torch.no_grad()
def train_fit_sigma2(model, train_images: ImagesLike, n: int = TRAIN_FIT_N, batch_size: int = 100) -> torch.Tensor:
    """A decoder variance that does not depend on the test image, fitted on training images (ours; the paper has none).

    Over the first ``min(n, len(train_images))`` training images, the squared residual of the reconstruction
    r = x − μθ(μφ(x)) (model in eval mode) is averaged: per pixel for Diag-D (a Diag-I-like estimate), over pixels
    and images for Iso-D (an Iso-I-like one); plus the model's ``variance.eps``. Returns the per-pixel ``C×H×W``
    variance (constant for Iso-D), for ``iwae_nll(..., sigma2=...)``.
    """
    v = getattr(model, "variance", None)
    name = getattr(v, "name", "")
    if name not in ("iso-d", "diag-d"):
        raise ValueError("train_fit_sigma2 fits the MLE Iso-D / Diag-D variances; "
                         f"got {name or type(model).__name__!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    dev, dt = model_device(model), model_dtype(model)
    total, count = None, 0
    with eval_mode(model):
        for x in iter_batches(train_images, batch_size):
            x = x[: n - count].to(dev, dt)
            r2 = ((x - model.reconstruct(x)) ** 2).double().sum(0)
            total = r2 if total is None else total + r2
            count += x.shape[0]
            if count >= n:
                break
    if not count:
        raise ValueError("train_fit_sigma2: no training images were given")
    s2 = total / count
    if name == "iso-d":
        s2 = s2.mean().expand_as(s2).clone()
    return (s2 + v.eps).to(dt or s2.dtype)


def _decoder_log_prob(model, x: torch.Tensor, z: torch.Tensor, sigma2: Optional[torch.Tensor]) -> torch.Tensor:
    """log p(x|z) for ``z`` ``K×B×d_z`` → ``K×B``: the model's own, or N(μθ(z), diag ``sigma2``) (fixed Σx)."""
    if sigma2 is None:
        return model.decoder_log_prob(x, z)
    mu = model.decode(z)
    return model.variance.log_prob(x, mu, sigma2.to(mu.device, mu.dtype).expand(mu.shape[-3:]))


@torch.no_grad()
def iwae_log_weights_stats(model, x: torch.Tensor, k: int, k_chunk: int, generator: torch.Generator,
                           sigma2: Optional[torch.Tensor] = None):
    """For one batch: (IWAE bound L_k per example, mean log-weight per example = ELBO estimate); ``sigma2``: as
    :func:`iwae_nll`."""
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
        log_px = _decoder_log_prob(model, x, z, sigma2)
        log_w = (log_px + _log_standard_normal(z) - post.log_prob(z)).double()  # [kc, B]
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
    sigma2: Optional[torch.Tensor] = None,
) -> dict:
    """IWAE NLL bound with ``k`` importance samples (paper: k = 500, test set), in nats per image.

    ``sigma2``: None (paper protocol) scores p(x|z) with the model's ``decoder_log_prob``; a scalar or ``C×H×W``
    tensor (e.g. from :func:`train_fit_sigma2`) scores p(x|z) = N(μθ(z), diag ``sigma2``) through the model's
    ``variance.log_prob`` (a diagonal Σx), a normalised density whatever Σx the model was trained with. The
    importance samples depend only on ``seed`` / ``generator``, so two calls with the same seed use the same z.

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
            lk, el = iwae_log_weights_stats(model, x.to(dev, dt), k, k_chunk, g, sigma2)
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
