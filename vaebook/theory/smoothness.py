"""Appendix C: the expected gap Δ²(s²) (Eq. 5) and the expected local smoothness (Eq. 6).

(C.8): Δ²(s²) = 2 s² E‖∇μθ(μφ(x))‖²_F — exact (in expectation) for a decoder affine in z, since
μθ(m+ε) − μθ(m+ε') = W(ε − ε') and E‖W(ε−ε')‖² = 2s²‖W‖²_F; for a smooth nonlinear decoder the
Taylor expansion gives Δ²(s²)/(2s²) = E‖∇μθ‖²_F + O(s²) (the cross term with the Hessian is odd).
(C.7) defines K²θ = E‖∇μθ‖²_F / d_z; Tables 1 and E.8 print that K²θ in the "ELS" column.

Monte Carlo uses the exact linear term ‖J(ε − ε')‖² as a control variate, so the O(s⁴) remainder
is estimated with O(s⁴) noise.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from vaebook.theory._nets import DTYPE, jacobian, loglog_slope, normal, smooth_mlp
from vaebook.theory._record import ClaimResult
from vaebook.theory.linear_elbo import random_setup

S2_SWEEP = tuple(10.0 ** np.linspace(-4, -1, 7))


@torch.no_grad()
def expected_gap(decode, m: torch.Tensor, s2: float, xi: torch.Tensor, xi2: torch.Tensor, control: bool = False):
    """Δ²(s²) of Eq. (5) per example by Monte Carlo with antithetic pairs (``xi``, ``xi2``: ``S×N×d_z`` normals).

    ``control=True`` returns Δ² − 2s²‖J‖²_F estimated as the mean of ‖Δμ‖² − ‖J(ε−ε')‖² (control variate).
    Returns per-example (mean, standard error).
    """
    sd = math.sqrt(s2)
    J = jacobian(decode, m) if control else None
    pair = []
    for sign in (1.0, -1.0):  # antithetic (ε, ε') ↔ (−ε, −ε'): cancels the odd Taylor terms exactly
        e1, e2 = sign * xi * sd, sign * xi2 * sd
        v = ((decode(m + e1) - decode(m + e2)) ** 2).sum(-1)
        if control:
            v = v - (torch.einsum("nij,snj->sni", J, e1 - e2) ** 2).sum(-1)
        pair.append(v)
    vals = 0.5 * (pair[0] + pair[1])
    return vals.mean(0), vals.std(0) / math.sqrt(vals.shape[0])


@torch.no_grad()
def els(decode, m: torch.Tensor) -> torch.Tensor:
    """‖∇μθ(m_n)‖²_F per example (Eq. 6 before the average), exact Jacobians."""
    return (jacobian(decode, m) ** 2).sum((-1, -2))


class _Wrapped(nn.Module):
    """Give a (encoder, decoder) pair the ``encode(x).mean`` / ``decode(z)`` interface of vaebook models."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def encode(self, x):
        from vaebook.models.base import Posterior

        return Posterior(self.encoder(x), None)

    def decode(self, z):
        return self.decoder(z)


def metrics_cross_check(setup) -> dict:
    """ELS from ``vaebook.metrics.smoothness`` (written independently), if that module is importable."""
    try:
        from vaebook.metrics.smoothness import expected_local_smoothness
    except Exception as exc:  # pragma: no cover - module written concurrently
        return {"metrics_module": f"unavailable ({type(exc).__name__})"}
    out = expected_local_smoothness(_Wrapped(setup.encoder, setup.decoder), setup.x)
    return {"metrics_els_frobenius": out["els_frobenius"], "metrics_els_per_dim": out["els_per_dim"]}


# --- claims -----------------------------------------------------------------------------------------------------


def claim_c8_linear(d_z: int = 4, d_x: int = 10, n: int = 16, s2: float = 0.05, n_draws: int = 20_000,
                    seed: int = 0) -> ClaimResult:
    """For an affine decoder Δ²(s²) = 2s²‖W‖²_F (C.8) exactly, at any s² (Monte Carlo vs closed form)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d_x, d_z, generator=g, dtype=DTYPE)
    b = torch.randn(d_x, generator=g, dtype=DTYPE)
    m = torch.randn(n, d_z, generator=g, dtype=DTYPE)
    gap, se = expected_gap(lambda z: z @ W.T + b, m, s2, normal((n_draws, n, d_z), seed + 1),
                           normal((n_draws, n, d_z), seed + 2))
    mc, mc_se = float(gap.mean()), float((se**2).sum().sqrt() / n)
    rhs = 2 * s2 * float((W**2).sum())
    return ClaimResult(
        "c8_linear_decoder", "Δ²(s²) = 2 s² E‖∇μθ‖²_F exactly for a linear decoder", "(C.8)",
        lhs=mc, rhs=rhs, relation="==", atol=5 * mc_se,
        notes=f"s² = {s2}, d_z = {d_z}; tolerance 5 standard errors ({5 * mc_se:.2g}). With (C.7)'s K² instead of "
              f"E‖∇μθ‖²_F the right side would be {rhs / d_z:.4g} (off by d_z)", details={"stderr": mc_se, "d_z": d_z})


def gap_sweep(seed: int = 0, s2s: Sequence[float] = S2_SWEEP, n_draws: int = 4096) -> dict:
    """Δ²(s²)/(2s²) against E‖∇μθ‖²_F on a random smooth decoder, with its relative error per s²."""
    s = random_setup(seed=seed)
    m = s.m
    e_fro = els(s.decode, m)
    xi, xi2 = normal((n_draws, *m.shape), seed + 1), normal((n_draws, *m.shape), seed + 2)
    ratio, rel_err, rel_se = [], [], []
    for v in s2s:
        rem, se = expected_gap(s.decode, m, float(v), xi, xi2, control=True)
        gap = 2 * v * e_fro.mean() + rem.mean()
        ratio.append(float(gap / (2 * v)))
        rel_err.append(float(rem.mean() / (2 * v * e_fro.mean())))
        rel_se.append(float((se**2).sum().sqrt() / s.x.shape[0] / (2 * v * e_fro.mean())))
    out = {"s2": list(map(float, s2s)), "gap_over_2s2": ratio, "els_frobenius": float(e_fro.mean()),
           "els_per_dim": float(e_fro.mean()) / m.shape[1], "relative_error": rel_err, "relative_error_se": rel_se,
           "slope_relative_error": loglog_slope(list(s2s)[:3], rel_err[:3]),
           "slope_relative_error_full_range": loglog_slope(list(s2s), rel_err)}
    out.update(metrics_cross_check(s))
    return out


def claim_c8_nonlinear_limit(seed: int = 0, n_draws: int = 4096) -> ClaimResult:
    """Δ²(s²)/(2s²) → E‖∇μθ‖²_F as s² → 0 for a smooth nonlinear decoder (C.8 approximately)."""
    sw = gap_sweep(seed, n_draws=n_draws)
    return ClaimResult(
        "c8_nonlinear_limit", "Δ²(s²)/(2s²) → E‖∇μθ(μφ(x))‖²_F as s² → 0 (nonlinear decoder)", "(C.8), Eq. (5)–(6)",
        lhs=sw["gap_over_2s2"][0], rhs=sw["els_frobenius"], relation="==", rtol=2e-3,
        notes=f"at s² = 1e-4; relative error per s² ∈ 10^[-4..-1]: " + ", ".join(f"{e:.2g}" for e in sw["relative_error"]),
        details=sw)


def claim_c8_nonlinear_rate(seed: int = 0, n_draws: int = 4096) -> ClaimResult:
    """The relative error of (C.8) for a smooth decoder is O(s²) (log-log slope 1)."""
    sw = gap_sweep(seed, n_draws=n_draws)
    return ClaimResult(
        "c8_nonlinear_rate", "Relative error of Δ²(s²) ≈ 2s²E‖∇μθ‖²_F shrinks like s²", "(C.8)",
        status="extension", lhs=sw["slope_relative_error"], rhs=1.0, relation="slope", atol=0.15,
        notes=f"slope over s² ∈ 10^[-4..-3]; over 10^[-4..-1]: {sw['slope_relative_error_full_range']:.3f}",
        details=sw)


def table_ratios(name: str = "table1") -> dict:
    """Printed gap/(2·d_z·s²·ELS) per row (≈ 1 iff the printed ELS is (C.7)'s K² = E‖∇μθ‖²_F/d_z)."""
    from vaebook.paper import D_Z_SECTION4, paper_table

    t = paper_table(name)
    out = {}
    for s2, col in ((1e-3, "gap_1e-3"), (1e-2, "gap_1e-2")):
        out[col] = (t[col] / (2 * D_Z_SECTION4 * s2 * t["els"])).tolist()
        for prefix in ("det_",):
            if prefix + col in t:
                out[prefix + col] = (t[prefix + col] / (2 * D_Z_SECTION4 * s2 * t[prefix + "els"])).tolist()
    return out


def claim_table1_els_is_k2() -> ClaimResult:
    """Tables 1 and E.8 print ELS = Δ²/(2 d_z s²) = (C.7)'s K², not (C.8)'s E‖∇μθ‖²_F."""
    r1, r8 = table_ratios("table1"), table_ratios("tableE8")
    lhs = r1["gap_1e-3"] + r8["gap_1e-3"]
    return ClaimResult(
        "table1_els_normalisation", "Printed gap_1e-3 / (2·8·1e-3·ELS) ≈ 1 on every stochastic row of Tables 1 and E.8",
        "Table 1, Table E.8, (C.7)", status="corrected", lhs=lhs, rhs=[1.0] * len(lhs), relation="==", rtol=0.03,
        notes=f"Table 1 ratios {min(r1['gap_1e-3']):.3f}–{max(r1['gap_1e-3']):.3f}, E.8 {min(r8['gap_1e-3']):.3f}–"
              f"{max(r8['gap_1e-3']):.3f}; with ELS = E‖∇μθ‖²_F (Eq. 6/C.8) the ratio would be 1/8. At s² = 1e-2: "
              f"{min(r1['gap_1e-2']):.3f}–{max(r1['gap_1e-2']):.3f}. Deterministic-encoding columns do NOT fit: "
              f"{min(r1['det_gap_1e-3']):.2f}–{max(r1['det_gap_1e-3']):.2f} at 1e-3, {min(r1['det_gap_1e-2']):.2f}–"
              f"{max(r1['det_gap_1e-2']):.2f} at 1e-2 (those decoders are far from linear at these scales)",
        details={"table1": r1, "tableE8": r8})


CLAIMS = {
    "c8_linear_decoder": claim_c8_linear,
    "c8_nonlinear_limit": claim_c8_nonlinear_limit,
    "c8_nonlinear_rate": claim_c8_nonlinear_rate,
    "table1_els_normalisation": claim_table1_els_is_k2,
}
