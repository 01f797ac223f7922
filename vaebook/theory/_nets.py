"""Tiny smooth float64 networks and exact derivatives for the theory checks.

The checks need decoders that are smooth (so a Taylor expansion in z exists: tanh hidden
layers, sigmoid output as in the paper's decoders) and small enough that exact Jacobians and
Hessians (``torch.func.jacrev``/``jacfwd`` + ``vmap``) cost nothing.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.func import jacfwd, jacrev, vmap

DTYPE = torch.float64


def smooth_mlp(sizes: Sequence[int], seed: int, out: Optional[str] = None, gain: float = 1.0) -> nn.Sequential:
    """``Linear → tanh → … → Linear`` (float64), optional output ``"sigmoid"``; weights N(0, gain²/fan_in)."""
    if len(sizes) < 2:
        raise ValueError(f"smooth_mlp needs at least an input and an output size, got {list(sizes)}")
    g = torch.Generator().manual_seed(int(seed))
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b).to(DTYPE)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=DTYPE) * gain / a**0.5)
            lin.bias.copy_(0.1 * torch.randn(b, generator=g, dtype=DTYPE))
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    if out == "sigmoid":
        layers.append(nn.Sigmoid())
    elif out is not None:
        raise ValueError(f"unknown output activation {out!r}; use None or 'sigmoid'")
    return nn.Sequential(*layers)


def _single(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda v: f(v.unsqueeze(0)).squeeze(0)


@torch.no_grad()
def jacobian(f: Callable, z: torch.Tensor) -> torch.Tensor:
    """Exact Jacobians ∂f(z_n)/∂z for every row of ``z`` (``N×d_z`` → ``N×d_out×d_z``), detached from parameters."""
    return vmap(jacrev(_single(f)))(z)


@torch.no_grad()
def hessian(f: Callable, z: torch.Tensor) -> torch.Tensor:
    """Exact Hessians of every output coordinate (``N×d_z`` → ``N×d_out×d_z×d_z``)."""
    return vmap(jacfwd(jacrev(_single(f))))(z)


def laplacian(f: Callable, z: torch.Tensor) -> torch.Tensor:
    """Σ_j ∂²f_i/∂z_j² per output coordinate (``N×d_out``)."""
    return hessian(f, z).diagonal(dim1=-2, dim2=-1).sum(-1)


def normal(shape, seed: int) -> torch.Tensor:
    """Standard normal draws in float64 from a private generator (common random numbers)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(*shape, generator=g, dtype=DTYPE)


def loglog_slope(x, y) -> float:
    """Least-squares slope of ln|y| against ln x."""
    lx = torch.log(torch.as_tensor(x, dtype=DTYPE))
    ly = torch.log(torch.as_tensor(y, dtype=DTYPE).abs())
    lx = lx - lx.mean()
    return float((lx * (ly - ly.mean())).sum() / (lx * lx).sum())
