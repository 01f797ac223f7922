"""Appendix H / Eq. (11): L = E_q(z) D_KL(q(x|z) ‖ p(x|z)) + D_KL(q(z) ‖ p(z)) equals Eq. (1).

Checked exactly on a discrete model where every distribution is a table: x ∈ {1..4}, z ∈ {1..3},
p_data(x), q(z|x), p(z), pθ(x|z) random (Dirichlet). Derived tables: pθ(x) = Σ_z p(z)pθ(x|z),
pθ(z|x) = p(z)pθ(x|z)/pθ(x), q(z) = Σ_x p_data(x)q(z|x), q(x|z) = p_data(x)q(z|x)/q(z).
"""
from __future__ import annotations

import numpy as np

from vaebook.theory._record import ClaimResult


def _kl(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(axis)


def random_tables(nx: int = 4, nz: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"p_data": rng.dirichlet(np.ones(nx)), "q_z_x": rng.dirichlet(np.ones(nz), size=nx),  # [x, z]
            "p_z": rng.dirichlet(np.ones(nz)), "p_x_z": rng.dirichlet(np.ones(nx), size=nz).T}  # [x, z]


def decomposition_terms(t: dict) -> dict:
    """Every form of L: Eq. (1) (both lines), the negative ELBO + E ln p_data, and Eq. (11)."""
    pd, qzx, pz, pxz = t["p_data"], t["q_z_x"], t["p_z"], t["p_x_z"]
    px = pxz @ pz  # [x]
    pzx = pxz * pz / px[:, None]  # pθ(z|x) [x, z]
    qz = pd @ qzx  # [z]
    qxz = pd[:, None] * qzx / qz  # q(x|z) [x, z]
    e_kl_post = pd @ _kl(qzx, pzx, 1)
    eq1_first = -(pd @ np.log(px)) + pd @ np.log(pd) + e_kl_post
    eq1_second = _kl(pd, px) + e_kl_post
    neg_elbo = pd @ (qzx * (np.log(qzx) - np.log(pz) - np.log(pxz))).sum(1) + pd @ np.log(pd)
    eq11_first = qz @ _kl(qxz.T, pxz.T, 1)
    eq11_second = _kl(qz, pz)
    return {"eq1_first_line": float(eq1_first), "eq1_kl_form": float(eq1_second), "neg_elbo_plus_entropy": float(neg_elbo),
            "eq11": float(eq11_first + eq11_second), "eq11_first_term": float(eq11_first),
            "eq11_second_term": float(eq11_second)}


def claim_eq11(n_models: int = 5, seed: int = 0) -> ClaimResult:
    """Eq. (11) = Eq. (1) exactly, on several random discrete models (x ∈ {1..4}, z ∈ {1..3})."""
    rows = [decomposition_terms(random_tables(seed=seed + k)) for k in range(n_models)]
    return ClaimResult(
        "appendix_h_eq11", "E_q(z) KL(q(x|z)‖p(x|z)) + KL(q(z)‖p(z)) = KL(p_data‖pθ) + E KL(q(z|x)‖pθ(z|x))",
        "Eq. (1), Eq. (11), App. H", lhs=[r["eq11"] for r in rows], rhs=[r["eq1_kl_form"] for r in rows],
        relation="==", rtol=1e-12, atol=1e-12,
        notes="also equal to Eq. (1)'s first line and to −ELBO + E ln p_data (details); every term exact (tables)",
        details={"rows": rows})


CLAIMS = {"appendix_h_eq11": claim_eq11}
