"""Small helpers shared by the metric, posterior and experiment modules: batching inputs, a model's device and dtype,
and switching to eval mode. They sit below :mod:`vaebook.metrics` and :mod:`vaebook.posterior`, so neither imports
the other for them."""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn

ImagesLike = Union[torch.Tensor, np.ndarray, Iterable]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free module)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> Optional[torch.dtype]:
    """The dtype of the model's first floating-point parameter; ``None`` (keep the input's dtype) if it has none."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def to_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (as ``vaebook.data`` stores them) → float32 in [0, 1]; float images pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def _as_tensor(batch) -> torch.Tensor:
    if isinstance(batch, (tuple, list)):  # (images, labels) from a DataLoader
        batch = batch[0]
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(batch)
    if not isinstance(batch, torch.Tensor):
        raise TypeError(
            f"expected image batches as torch.Tensor / numpy arrays (or (images, labels) tuples), got {type(batch).__name__}"
        )
    return batch


def iter_batches(images: ImagesLike, batch_size: int) -> Iterator[torch.Tensor]:
    """Yield image batches from a tensor/array (split into ``batch_size`` rows) or an iterable of batches.

    An iterable (e.g. a ``DataLoader``) is passed through batch by batch; ``(images, labels)``
    tuples yield their first element. uint8 batches are converted to float in [0, 1].
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(images, (torch.Tensor, np.ndarray)):
        t = _as_tensor(images)
        for i in range(0, t.shape[0], batch_size):
            yield to_float_images(t[i : i + batch_size])
    else:
        for b in images:
            yield to_float_images(_as_tensor(b))


def as_tensor(images: ImagesLike) -> torch.Tensor:
    """All of ``images`` as one tensor (a tensor/array as is, uint8 kept; batches concatenated)."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        return _as_tensor(images)
    parts = list(iter_batches(images, 1 << 30))
    if not parts:
        raise ValueError("no images were given (empty iterable)")
    return torch.cat(parts, 0)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put ``model`` in eval mode (BatchNorm uses running statistics) and restore the flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def encode_means(model, images: ImagesLike, batch_size: int = 500, with_var: bool = False):
    """Encoder means μφ(x) of all ``images`` as one ``N×d_z`` tensor (and variances when ``with_var``).

    The variances are ``None`` for a deterministic encoder.
    """
    dev, dt = model_device(model), model_dtype(model)
    means, variances = [], []
    with eval_mode(model):
        for x in iter_batches(images, batch_size):
            post = model.encode(x.to(dev, dt))
            means.append(post.mean)
            variances.append(post.var)
    if not means:
        raise ValueError("no images were given")
    mean = torch.cat(means, 0)
    if not with_var:
        return mean
    var = None if any(v is None for v in variances) else torch.cat(variances, 0)
    return mean, var


def flat_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over all dimensions but the first (per-image totals)."""
    return t.reshape(t.shape[0], -1).sum(-1)


def resolve_generator(generator: Optional[torch.Generator], seed: Optional[int]) -> torch.Generator:
    if generator is not None:
        return generator
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g
