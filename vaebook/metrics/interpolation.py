"""Latent interpolation quality (Section 6.2, Table 5).

Pairs of test images are encoded (encoder means), their latents interpolated spherically (as
in RAE [22]) with ratio 0.5 ("mid-point") or U[0, 1] per pair ("random-point"), decoded, and
the FID of the decoded images against the reference statistics is reported.
"""
from __future__ import annotations

from typing import Iterator, Optional, Union

import torch

from vaebook._util import (ImagesLike, as_tensor, eval_mode, model_device, model_dtype, resolve_generator,
                           to_float_images)
from vaebook.latent import slerp


def random_pairs(n_images: int, n_pairs: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_pairs`` index pairs (i, j) with i ≠ j drawn uniformly (with replacement across pairs)."""
    if n_images < 2:
        raise ValueError("need at least 2 images to form pairs")
    i = torch.randint(n_images, (n_pairs,), generator=generator)
    j = (i + torch.randint(1, n_images, (n_pairs,), generator=generator)) % n_images
    return i, j


def _ratios(ratio: Union[str, float], n: int, generator: torch.Generator) -> torch.Tensor:
    if ratio == "mid":
        return torch.full((n,), 0.5, dtype=torch.float64)
    if ratio == "random":
        return torch.rand(n, generator=generator, dtype=torch.float64)
    if isinstance(ratio, (int, float)):
        return torch.full((n,), float(ratio), dtype=torch.float64)
    raise ValueError(f"ratio must be 'mid', 'random' or a number, got {ratio!r}")


@torch.no_grad()
def interpolated_images(
    model,
    images: ImagesLike,
    n_pairs: int = 10_000,
    ratio: Union[str, float] = "mid",
    seed: int = 0,
    batch_size: int = 500,
    generator: Optional[torch.Generator] = None,
) -> Iterator[torch.Tensor]:
    """Yield decoded slerp interpolations of ``n_pairs`` random pairs of ``images`` in batches (CPU tensors)."""
    g = resolve_generator(generator, seed)
    x = as_tensor(images)
    i, j = random_pairs(x.shape[0], n_pairs, g)
    t = _ratios(ratio, n_pairs, g)
    dev, dt = model_device(model), model_dtype(model)
    with eval_mode(model):
        for s in range(0, n_pairs, batch_size):
            ii, jj = i[s : s + batch_size], j[s : s + batch_size]
            z1 = model.encode(to_float_images(x[ii]).to(dev, dt)).mean
            z2 = model.encode(to_float_images(x[jj]).to(dev, dt)).mean
            z = slerp(z1, z2, t[s : s + batch_size].to(dev, z1.dtype))
            yield model.decode(z).cpu()


def interpolation_fid(
    model,
    images: ImagesLike,
    reference,
    n_pairs: int = 10_000,
    ratio: Union[str, float] = "mid",
    seed: int = 0,
    batch_size: int = 500,
    dims: int = 2048,
    fid_batch_size: int = 50,
    device: Optional[Union[str, torch.device]] = None,
    weights: Optional[str] = None,
    n_boot: int = 0,
) -> dict:
    """FID of decoded interpolations (Table 5) between random pairs of ``images`` (test set in the paper).

    ``reference``: Inception features (``N×dims`` array, e.g. :func:`vaebook.metrics.fid.reference_features`;
    then KID is computed too) or anything :func:`vaebook.metrics.fid.fid` accepts (``FIDStats``, images, ...).
    Returns ``fid``, ``n_pairs``, ``ratio`` (and ``kid``, ``kid_std`` with features). With features and
    ``n_boot`` > 0 also ``fid_boot``/``kid_boot``: the paired bootstrap replicates of
    :func:`vaebook.metrics.fid_spread.bootstrap_fid_kid` (same pairs for every model at the same seed), and the FID
    and KID are then its exact values on all features.
    """
    import numpy as np

    from .fid import fid as _fid
    from .fid import fid_kid

    gen = interpolated_images(model, images, n_pairs=n_pairs, ratio=ratio, seed=seed, batch_size=batch_size)
    if isinstance(reference, np.ndarray) and n_boot > 0:
        from .fid import fid_features
        from .fid_spread import bootstrap_fid_kid

        feats = fid_features(gen, fid_batch_size, device, reference.shape[1], weights)
        b = bootstrap_fid_kid(feats, reference, int(n_boot), seed)
        return {"fid": b["fid"], "kid": b["kid"], "kid_std": b["kid_sd"], "fid_boot": b["fid_boot"],
                "kid_boot": b["kid_boot"], "n_pairs": n_pairs, "ratio": ratio}
    if isinstance(reference, np.ndarray):
        r = fid_kid(gen, reference, batch_size=fid_batch_size, device=device, weights=weights, seed=seed)
        return {"fid": r["fid"], "kid": r["kid"], "kid_std": r["kid_std"], "n_pairs": n_pairs, "ratio": ratio}
    value = _fid(gen, reference=reference, dims=dims, batch_size=fid_batch_size, device=device, weights=weights)
    return {"fid": value, "n_pairs": n_pairs, "ratio": ratio}
