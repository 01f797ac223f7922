"""Noisy MNIST of Section 5.3 (Table 3).

Partitions: S = digits 0–4, B = digits 5–9; U = rows 0–13 (upper half), L = rows 14–27
(lower half).  Their intersections give SU, SL, BU, BL.  Noise patterns (Sec. 5.3):

* ``uniform``: SU+SL+BU+BL;  * ``spatial``: SU+BU;
* ``conditional``: SU+SL;    * ``spatial-conditional``: SU.

The paper does not state the exact half split (rows 0–13 / 14–27 assumed), whether noise is
re-drawn (here: drawn once, from a seeded ``torch.Generator``), or whether noisy pixels are
clipped (here: **not clipped**; clipping to [0, 1] would shrink the injected variance below
s_x², most of all on the black background, and bias the estimates that Table 3 compares to
s_x² + 0.007).
"""
from __future__ import annotations

import math
import numbers

import torch

from .errors import InvalidArgumentError, unknown

PARTITIONS = ("SU", "SL", "BU", "BL")
NOISE_PATTERNS = {
    "uniform": ("SU", "SL", "BU", "BL"),
    "spatial": ("SU", "BU"),
    "conditional": ("SU", "SL"),
    "spatial-conditional": ("SU",),
}
SMALL_DIGITS = (0, 1, 2, 3, 4)


def noisy_pattern_partitions(pattern: str) -> tuple:
    """The partitions that receive noise under ``pattern`` (Sec. 5.3)."""
    if pattern not in NOISE_PATTERNS:
        raise unknown("noise pattern", pattern, NOISE_PATTERNS)
    return NOISE_PATTERNS[pattern]


def partition_masks(labels: torch.Tensor, height: int = 28, width: int = 28) -> dict:
    """``{"SU","SL","BU","BL"} -> bool tensor N×1×H×W``; the four masks tile every pixel once."""
    labels = torch.as_tensor(labels)
    small = (labels <= SMALL_DIGITS[-1]).view(-1, 1, 1, 1)
    upper = (torch.arange(height, device=labels.device) < height // 2).view(1, 1, height, 1)
    shape = (labels.shape[0], 1, height, width)
    return {
        "SU": (small & upper).expand(shape).clone(),
        "SL": (small & ~upper).expand(shape).clone(),
        "BU": (~small & upper).expand(shape).clone(),
        "BL": (~small & ~upper).expand(shape).clone(),
    }


def noise_mask(labels: torch.Tensor, pattern: str) -> torch.Tensor:
    """Union of the noisy partitions' masks for ``pattern``."""
    parts = noisy_pattern_partitions(pattern)
    masks = partition_masks(labels)
    out = torch.zeros_like(masks["SU"])
    for p in parts:
        out |= masks[p]
    return out


def make_noisy_mnist(images_float: torch.Tensor, labels: torch.Tensor, pattern: str, s2: float,
                     seed: int) -> torch.Tensor:
    """Add N(0, s2) noise on the noisy partitions of ``pattern``; clean pixels are unchanged.

    One standard-normal tensor of the full image shape is drawn from
    ``torch.Generator().manual_seed(seed)`` (on CPU, so it is device-independent) and is the
    same for every pattern; no clipping (see module docstring).
    """
    mask = noise_mask(labels, pattern)
    if not images_float.is_floating_point():
        raise TypeError(f"make_noisy_mnist expects float images in [0, 1], got dtype {images_float.dtype}; "
                        "use load_mnist(..., as_float=True).")
    if isinstance(s2, bool) or not isinstance(s2, numbers.Real) or not (math.isfinite(s2) and s2 >= 0):
        raise InvalidArgumentError(f"make_noisy_mnist: argument 's2' = {s2!r}; expected a finite noise variance >= 0. "
                                   "Fix: use Sec. 5.3's 0.01 or 0.1.")
    if images_float.shape != mask.shape:
        raise ValueError(f"images have shape {tuple(images_float.shape)}, expected {tuple(mask.shape)} (N×1×28×28).")
    g = torch.Generator().manual_seed(int(seed))
    eps = torch.randn(images_float.shape, generator=g, dtype=torch.float64)
    noise = (eps * float(s2) ** 0.5).to(images_float.dtype).to(images_float.device)
    return images_float + noise * mask.to(images_float.device)
