"""Reconstruction error and KL term (Tables 1, 4, 6, E.8).

The paper's "MSE" is E‖x' − x‖²₂ with x' = μθ(μφ(x)): the squared error **summed over
the pixels of one image** (784 values for MNIST) and averaged over images, not a per-pixel
mean (see ``tables/README.md``).
"""
from __future__ import annotations

import torch

from vaebook._util import ImagesLike, eval_mode, flat_sum, iter_batches, model_device, model_dtype


@torch.no_grad()
def mse_per_image(model, images: ImagesLike, batch_size: int = 500) -> torch.Tensor:
    """Per-image ‖x − μθ(μφ(x))‖²₂ summed over pixels (shape ``N``, on the CPU, float64)."""
    dev, dt = model_device(model), model_dtype(model)
    out = []
    with eval_mode(model):
        for x in iter_batches(images, batch_size):
            x = x.to(dev, dt)
            recon = model.decode(model.encode(x).mean)
            if recon.shape != x.shape:
                raise ValueError(f"decoder output shape {tuple(recon.shape)} differs from the input shape {tuple(x.shape)}")
            out.append(flat_sum((recon - x) ** 2).double().cpu())
    if not out:
        raise ValueError("mse_per_image: no images were given")
    return torch.cat(out)


def mean_mse(model, images: ImagesLike, batch_size: int = 500) -> float:
    """The paper's MSE: mean over images of :func:`mse_per_image`."""
    return float(mse_per_image(model, images, batch_size).mean())


@torch.no_grad()
def kl_per_image(model, images: ImagesLike, batch_size: int = 500) -> torch.Tensor:
    """Per-image D_KL(q(z|x) || N(0, I)) in nats (closed form, the regulariser of Eq. 3)."""
    if not getattr(model, "stochastic_encoder", True):
        raise ValueError(f"{getattr(model, 'label', type(model).__name__)} has a deterministic encoder: KL to the prior is undefined")
    dev, dt = model_device(model), model_dtype(model)
    out = []
    with eval_mode(model):
        for x in iter_batches(images, batch_size):
            post = model.encode(x.to(dev, dt))
            out.append(post.kl_to_standard_normal().double().cpu())
    if not out:
        raise ValueError("kl_per_image: no images were given")
    return torch.cat(out)


def mean_kl(model, images: ImagesLike, batch_size: int = 500) -> float:
    """E_x D_KL(q(z|x) || p(z)) in nats (the KL column of Tables 1 and E.8)."""
    return float(kl_per_image(model, images, batch_size).mean())


#: a model whose reconstructions vary less than this across test images (mean over pixels of the per-pixel
#: variance, images in [0, 1]; MNIST's own is ≈ 0.1) ignores its input: it did not train
RECON_VAR_MIN = 1e-4


@torch.no_grad()
def reconstruction_variance(model, images: ImagesLike, batch_size: int = 500) -> float:
    """Mean over pixels of the variance across ``images`` of the reconstruction μθ(E[z|x]) (eval mode): 0 for
    a decoder whose output does not depend on its input."""
    dev, s, sq, n = model_device(model), 0, 0, 0
    with eval_mode(model):
        for x in iter_batches(images, batch_size):
            y = model.decode(model.encode(x.to(dev, model_dtype(model))).mean).double().cpu()  # μθ(μφ(x))
            s, sq, n = s + y.sum(0), sq + (y ** 2).sum(0), n + len(y)
    return float((sq / n - (s / n) ** 2).clamp_min(0).mean()) if n else float("nan")


def constant_output_reason(recon_var: float) -> str:
    """"did not train: …" when reconstructions with variance ``recon_var`` across test images ignore the input
    (< :data:`RECON_VAR_MIN`), else ""."""
    import math

    if recon_var is not None and math.isfinite(recon_var) and recon_var < RECON_VAR_MIN:
        return (f"did not train: its reconstructions do not depend on the input (variance across test images "
                f"{recon_var:.1e} < {RECON_VAR_MIN:g})")
    return ""
