"""Lemma 3 (App. F): covariance of the aggregated posterior q(z) = E_x q(z|x), q(z|x) = N(μφ(x), σz² I).

(F.8): Cov_q(z) = σz² I + Σ̃φ with Σ̃φ = Cov_x μφ(x) (any encoder, any data distribution).
(F.9): det(σz² I + Σ̃φ) ≤ (σz² + V L²)^{d_z}, V = σ_max(Cov x), L = Lipschitz constant of μφ. The step
σ_max(Σ̃φ) ≤ V L² holds for a linear encoder (‖A C Aᵀ‖ ≤ ‖A‖²‖C‖) and for Gaussian data (Gaussian
Poincaré inequality: Var g(x) ≤ E ∇gᵀ C ∇g), but not for every data distribution: a 1-Lipschitz
encoder on four points with identity covariance has Var μφ(x) = 1 + (2 − √2)²/2 > 1. What holds in
general is σ_max(Σ̃φ) ≤ L² tr(Cov x) (from Var f(x) = ½E(f(x) − f(x'))²), which is enough for Lemma 3.
"""
from __future__ import annotations

import math

import torch

from vaebook.theory._nets import DTYPE, normal, smooth_mlp
from vaebook.theory._record import ClaimResult
from vaebook.theory.mutual_information import _spd


def _cov(a: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(0)
    return a.T @ a / (a.shape[0] - 1)


def lipschitz_upper_bound(net: torch.nn.Sequential) -> float:
    """Product of the spectral norms of the linear layers (tanh is 1-Lipschitz): an upper bound on L."""
    out = 1.0
    for layer in net:
        if isinstance(layer, torch.nn.Linear):
            out *= float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2))
    return out


@torch.no_grad()
def claim_f8_aggregate_covariance(n: int = 200_000, sigma_z2: float = 0.3, seed: int = 0) -> ClaimResult:
    """Cov of q(z) (Monte Carlo) = σz² I + Cov μφ(x) over the same x draws, nonlinear encoder (F.8).

    Sharing the x draws removes the sampling noise of Σ̃φ; what remains (cross-covariance of μφ(x) and ε,
    sample covariance of ε) is O(n^-1/2) and vanishes only because ε is independent of x, as (F.8) uses."""
    g = torch.Generator().manual_seed(seed)
    C = _spd(5, g)
    chol = torch.linalg.cholesky(C)
    enc = smooth_mlp([5, 16, 3], seed + 1, gain=1.5)
    x = normal((n, 5), seed + 2) @ chol.T
    m = enc(x)
    z = m + math.sqrt(sigma_z2) * normal((n, 3), seed + 4)
    lhs = _cov(z)
    tilde = _cov(m)
    rhs = sigma_z2 * torch.eye(3, dtype=DTYPE) + tilde
    return ClaimResult(
        "f8_aggregate_covariance", "Cov of the aggregated posterior = σz² I + Cov μφ(x)", "(F.8), Lemma 3",
        lhs=lhs, rhs=rhs, relation="==", atol=0.01,
        notes=f"{n} draws of (x, ε); σz² = {sigma_z2}; entries of Cov μφ(x) up to "
              f"{float(tilde.abs().max()):.3g}", details={"sigma_z2": sigma_z2, "tilde_sigma": tilde.tolist()})


@torch.no_grad()
def claim_f9_linear(sigma_z2: float = 0.2, seed: int = 0) -> ClaimResult:
    """det(σz² I + A C Aᵀ) ≤ (σz² + λ_max(C)‖A‖₂²)^{d_z} for a linear encoder (F.9), over several random cases."""
    lhs, rhs = [], []
    for k in range(10):
        g = torch.Generator().manual_seed(seed * 100 + k)
        C = _spd(5, g)
        A = torch.randn(3, 5, generator=g, dtype=DTYPE)
        lhs.append(float(torch.det(sigma_z2 * torch.eye(3, dtype=DTYPE) + A @ C @ A.T)))
        rhs.append((sigma_z2 + float(torch.linalg.eigvalsh(C).max()) * float(torch.linalg.matrix_norm(A, ord=2)) ** 2) ** 3)
    return ClaimResult(
        "f9_determinant_bound_linear", "det(σz²I + Σ̃φ) ≤ (σz² + V L²)^{d_z} for linear encoders", "(F.9)",
        lhs=lhs, rhs=rhs, relation="<=", rtol=1e-12, notes="10 random (C, A), d_x = 5, d_z = 3")


@torch.no_grad()
def claim_f9_gaussian_nonlinear(n: int = 200_000, seed: int = 0) -> ClaimResult:
    """σ_max(Cov μφ(x)) ≤ V L² for a tanh encoder on Gaussian data (Gaussian Poincaré), L = ∏‖W_l‖₂."""
    g = torch.Generator().manual_seed(seed)
    C = _spd(5, g)
    enc = smooth_mlp([5, 16, 3], seed + 1, gain=1.5)
    x = normal((n, 5), seed + 2) @ torch.linalg.cholesky(C).T
    smax = float(torch.linalg.eigvalsh(_cov(enc(x))).max())
    bound = float(torch.linalg.eigvalsh(C).max()) * lipschitz_upper_bound(enc) ** 2
    return ClaimResult(
        "f9_spectral_bound_gaussian", "σ_max(Σ̃φ) ≤ V L² for a Lipschitz encoder when x is Gaussian", "(F.9)",
        lhs=smax, rhs=bound, relation="<=", notes="L bounded by the product of layer spectral norms",
        details={"ratio": smax / bound})


def mcshane(points: torch.Tensor, values: torch.Tensor):
    """The McShane extension x ↦ min_p (f(p) + ‖x − p‖): 1-Lipschitz on R^d if the values are 1-Lipschitz on the points."""
    return lambda x: (values + torch.cdist(x, points)).min(-1).values


def claim_f9_counterexample() -> ClaimResult:
    """A 1-Lipschitz encoder on 4 equiprobable points with Cov x = I has Var μφ(x) > V L² = 1, so (F.9)'s step fails."""
    pts = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=DTYPE)
    a = 2 - math.sqrt(2)
    vals = torch.tensor([math.sqrt(2), -math.sqrt(2), a, -a], dtype=DTYPE)
    f = mcshane(pts, vals)
    fx = f(pts)
    pair = torch.cdist(pts, pts)
    lip = float(((fx[:, None] - fx[None, :]).abs() / pair.clamp_min(1e-300)).masked_fill(pair == 0, 0).max())
    cov_x = (pts - pts.mean(0)).T @ (pts - pts.mean(0)) / 4
    var_f = float(fx.var(unbiased=False))
    V = float(torch.linalg.eigvalsh(cov_x).max())
    return ClaimResult(
        "f9_spectral_bound_counterexample", "σ_max(Σ̃φ) ≤ V L² fails for a nonlinear 1-Lipschitz encoder on non-Gaussian data",
        "(F.9) as printed", status="counterexample", lhs=var_f, rhs=V * lip**2, relation=">", atol=1e-9,
        notes=f"x uniform on {{±1}}², Cov x = I (V = 1), L = {lip:.6f}: Var μφ(x) = 1 + (2−√2)²/2 = {var_f:.4f}; the "
              f"general bound L² tr(Cov x) = {lip**2 * float(torch.trace(cov_x)):.1f} holds, so Lemma 3's conclusion "
              f"(finite det) survives", details={"values": fx.tolist(), "lipschitz_on_points": lip, "V": V})


CLAIMS = {
    "f8_aggregate_covariance": claim_f8_aggregate_covariance,
    "f9_determinant_bound_linear": claim_f9_linear,
    "f9_spectral_bound_gaussian": claim_f9_gaussian_nonlinear,
    "f9_spectral_bound_counterexample": claim_f9_counterexample,
}
