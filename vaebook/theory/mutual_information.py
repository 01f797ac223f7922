"""Theorem 1 (App. A), Lemma 1 and the entropy steps (F.6), (F.10)–(F.11) of App. F.

Linear-Gaussian chain (every quantity exact, via log-determinants)::

    x ~ N(0, C),  z_e = A x,  z = z_e + ε, ε ~ N(0, S) (S diagonal),  x' = B z + τ n, n ~ N(0, I)

so q(z|x) = N(Ax, S), q(z) = N(0, ACAᵀ + S). MI of jointly Gaussian blocks:
I(u; v) = ½[ln det Σ_uu + ln det Σ_vv − ln det Σ_(u,v)]. The Monte-Carlo check of (A.2) uses a
nonlinear encoder on a finite data set, where q(z) is the N-component mixture (1/N)Σ_n q(z|x_n).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from vaebook.models.base import Posterior
from vaebook.theory._nets import DTYPE, normal, smooth_mlp
from vaebook.theory._record import ClaimResult


def gaussian_mi(cov: torch.Tensor, i: slice, j: slice) -> float:
    """I(u; v) for jointly Gaussian blocks u = cov[i], v = cov[j] of one covariance matrix."""
    ii, jj = range(cov.shape[0])[i], range(cov.shape[0])[j]
    idx = list(ii) + list(jj)
    sub = cov[idx][:, idx]
    a, b = len(ii), len(jj)
    return float(0.5 * (torch.logdet(sub[:a, :a]) + torch.logdet(sub[a:, a:]) - torch.logdet(sub)))


def kl_gauss_std(mean_sq_sum, cov: torch.Tensor) -> float:
    """D_KL(N(m, Σ) ‖ N(0, I)) = ½[tr Σ + ‖m‖² − d − ln det Σ]."""
    d = cov.shape[0]
    return float(0.5 * (torch.trace(cov) + mean_sq_sum - d - torch.logdet(cov)))


def gaussian_entropy(cov: torch.Tensor) -> float:
    """Differential entropy ½ ln det(2πe Σ), via torch.distributions (independent of our formulas)."""
    mvn = torch.distributions.MultivariateNormal(torch.zeros(cov.shape[0], dtype=cov.dtype), covariance_matrix=cov)
    return float(mvn.entropy())


def _spd(d: int, g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DTYPE))
    lam = scale * (0.2 + 2 * torch.rand(d, generator=g, dtype=DTYPE))
    return (q * lam) @ q.T


@dataclass
class LinearChain:
    """x → z_e = A x → z = z_e + ε (ε ~ N(0, S)) → x' = B z + τ n, with x ~ N(0, C)."""

    C: torch.Tensor
    A: torch.Tensor
    S: torch.Tensor  # diagonal entries of the encoder variance
    B: torch.Tensor
    tau2: float

    @classmethod
    def random(cls, d_x: int = 5, d_z: int = 3, seed: int = 0, tau2: float = 0.05) -> "LinearChain":
        g = torch.Generator().manual_seed(seed)
        return cls(_spd(d_x, g), torch.randn(d_z, d_x, generator=g, dtype=DTYPE) / d_x**0.5,
                   0.1 + 0.5 * torch.rand(d_z, generator=g, dtype=DTYPE),
                   torch.randn(d_x, d_z, generator=g, dtype=DTYPE), float(tau2))

    def joint_cov(self) -> torch.Tensor:
        """Covariance of (x, z_e, z, x') — blocks of sizes d_x, d_z, d_z, d_x."""
        C, A, B = self.C, self.A, self.B
        d_x, d_z = C.shape[0], A.shape[0]
        # linear map from (x, ε, n) to (x, z_e, z, x')
        M = torch.zeros(2 * d_x + 2 * d_z, d_x + d_z + d_x, dtype=DTYPE)
        M[:d_x, :d_x] = torch.eye(d_x, dtype=DTYPE)
        M[d_x:d_x + d_z, :d_x] = A
        M[d_x + d_z:d_x + 2 * d_z, :d_x] = A
        M[d_x + d_z:d_x + 2 * d_z, d_x:d_x + d_z] = torch.eye(d_z, dtype=DTYPE)
        M[d_x + 2 * d_z:, :d_x] = B @ A
        M[d_x + 2 * d_z:, d_x:d_x + d_z] = B
        M[d_x + 2 * d_z:, d_x + d_z:] = math.sqrt(self.tau2) * torch.eye(d_x, dtype=DTYPE)
        src = torch.block_diag(C, torch.diag(self.S), torch.eye(d_x, dtype=DTYPE))
        return M @ src @ M.T

    def blocks(self):
        d_x, d_z = self.C.shape[0], self.A.shape[0]
        return (slice(0, d_x), slice(d_x, d_x + d_z), slice(d_x + d_z, d_x + 2 * d_z),
                slice(d_x + 2 * d_z, 2 * d_x + 2 * d_z))

    def quantities(self) -> dict:
        """All MIs and KLs of Theorem 1 / Lemma 1 for this chain (exact)."""
        cov = self.joint_cov()
        bx, bze, bz, bxp = self.blocks()
        cz = cov[bz, bz]
        S = torch.diag(self.S)
        d_z = cz.shape[0]
        # E_x KL(N(Ax, S) ‖ N(0, I)) = ½[tr S + tr(ACAᵀ) − d_z − ln det S]
        ekl = float(0.5 * (torch.trace(S) + torch.trace(self.A @ self.C @ self.A.T) - d_z - torch.logdet(S)))
        return {
            "I_x_xp": gaussian_mi(cov, bx, bxp),
            "I_x_z": gaussian_mi(cov, bx, bz),
            "I_z_ze": gaussian_mi(cov, bz, bze) if torch.linalg.matrix_rank(cov[bze, bze]) == d_z else float("nan"),
            "E_kl": ekl,
            "kl_qz_p": kl_gauss_std(0.0, cz),
            "H_qz": gaussian_entropy(cz),
            "H_eps": gaussian_entropy(S),
            "logdet_qz": float(torch.logdet(cz)),
        }


# --- claims -----------------------------------------------------------------------------------------------------


def claim_theorem1_chain(seed: int = 0) -> ClaimResult:
    """I(x; x') ≤ I(x; z) ≤ E_x KL(q(z|x) ‖ p(z)) (A.1, A.2) in the linear-Gaussian chain, exactly."""
    ch = LinearChain.random(seed=seed)
    q = ch.quantities()
    taus = {}
    for t2 in (1e-1, 1e-3, 1e-6):
        taus[t2] = LinearChain(ch.C, ch.A, ch.S, ch.B, t2).quantities()["I_x_xp"]
    return ClaimResult(
        "theorem1_chain", "I(x;x') ≤ I(x;z) ≤ E KL(q(z|x)‖p(z)) (linear-Gaussian, exact log-dets)", "Thm. 1, (A.1), (A.2)",
        lhs=[q["I_x_xp"], q["I_x_z"]], rhs=[q["I_x_z"], q["E_kl"]], relation="<=", atol=1e-12,
        notes="x' = Bz + τn; as τ² → 0 with B injective, I(x;x') → I(x;z) (equality in A.1 for a deterministic "
              "injective decoder); see details['I_x_xp_vs_tau2']", details=dict(q, I_x_xp_vs_tau2=taus))


def claim_a2_identity_gaussian(seed: int = 0) -> ClaimResult:
    """I(x; z) = E_x KL(q(z|x) ‖ p(z)) − KL(q(z) ‖ p(z)) (A.2), exact in the linear-Gaussian case."""
    q = LinearChain.random(seed=seed).quantities()
    return ClaimResult(
        "a2_identity_gaussian", "I(x;z) = E KL(q(z|x)‖p) − KL(q(z)‖p) (exact, Gaussian)", "(A.2)",
        lhs=q["I_x_z"], rhs=q["E_kl"] - q["kl_qz_p"], relation="==", rtol=1e-10, atol=1e-12,
        notes="I(x;z) from the joint covariance; the KLs from their closed forms", details=q)


def claim_theorem1_limit(seed: int = 0) -> ClaimResult:
    """Along A_t = tA, S_t = (1−t)I + tS: E KL → 0 and I(x;x') ≤ E KL, so I(x;x') → 0 (Theorem 1)."""
    ch = LinearChain.random(seed=seed)
    ts = [1.0, 0.3, 0.1, 0.03, 0.01, 0.001]
    rows = []
    for t in ts:
        c = LinearChain(ch.C, t * ch.A, (1 - t) + t * ch.S, ch.B, ch.tau2).quantities()
        rows.append((t, c["E_kl"], c["I_x_z"], c["I_x_xp"]))
    return ClaimResult(
        "theorem1_limit", "I(x;x') ≤ E KL along a path where E KL → 0 (KL collapse ⇒ MI collapse)", "Thm. 1",
        lhs=[r[3] for r in rows], rhs=[r[1] for r in rows], relation="<=", atol=1e-12,
        notes=f"E KL goes {rows[0][1]:.3g} → {rows[-1][1]:.2g}; I(x;x') goes {rows[0][3]:.3g} → {rows[-1][3]:.2g}",
        details={"t": ts, "E_kl": [r[1] for r in rows], "I_x_z": [r[2] for r in rows], "I_x_xp": [r[3] for r in rows]})


@torch.no_grad()
def mixture_quantities(n: int = 32, d_x: int = 4, d_z: int = 2, k: int = 4000, seed: int = 0) -> dict:
    """Monte-Carlo I(x;z) and KL(q(z)‖p(z)) for a nonlinear encoder on a finite data set (q(z) a mixture).

    The two estimates use independent draws; E KL(q(z|x)‖p) is closed form. Each estimate has its standard error.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_x, generator=g, dtype=DTYPE)
    enc = smooth_mlp([d_x, 16, 2 * d_z], seed + 1, gain=1.5)
    mean, logvar = enc(x).chunk(2, -1)
    q = Posterior(mean, (logvar - 1.0).exp())

    def log_qz(z):  # z: K×M×d_z -> ln (1/N) Σ_n q(z|x_n), each q(z|x_n) from Posterior.log_prob
        flat = z.reshape(-1, 1, d_z).expand(-1, n, d_z)  # (K·M)×N×d_z: every point against every component
        return (torch.logsumexp(q.log_prob(flat), -1) - math.log(n)).reshape(z.shape[:-1])

    # I(x;z) = E_n E_{z~q(z|x_n)} [ln q(z|x_n) − ln q(z)]
    z1 = q.mean + q.var.sqrt() * normal((k, n, d_z), seed + 2)
    mi_terms = q.log_prob(z1) - log_qz(z1)
    # KL(q(z)‖p) = E_{z~q(z)} [ln q(z) − ln N(z; 0, I)], independent draws (stratified over components)
    z2 = q.mean + q.var.sqrt() * normal((k, n, d_z), seed + 3)
    log_p = -0.5 * (z2**2 + math.log(2 * math.pi)).sum(-1)
    kl_terms = log_qz(z2) - log_p
    se = lambda t: float(t.mean(1).std() / math.sqrt(t.shape[0]))  # noqa: E731  (rows of k are i.i.d.)
    return {"I_x_z": float(mi_terms.mean()), "I_x_z_se": se(mi_terms), "kl_qz_p": float(kl_terms.mean()),
            "kl_qz_p_se": se(kl_terms), "E_kl": float(q.kl_to_standard_normal().mean()), "ln_N": math.log(n), "n": n}


def claim_a2_identity_mc(seed: int = 0, k: int = 4000) -> ClaimResult:
    """(A.2) on a nonlinear encoder over a finite data set: MC I(x;z) = E KL (closed) − MC KL(q(z)‖p)."""
    m = mixture_quantities(k=k, seed=seed)
    se = math.sqrt(m["I_x_z_se"] ** 2 + m["kl_qz_p_se"] ** 2)
    return ClaimResult(
        "a2_identity_mc", "I(x;z) = E KL(q(z|x)‖p) − KL(q(z)‖p) for a nonlinear encoder, q(z) a mixture over N points",
        "(A.2)", lhs=m["I_x_z"], rhs=m["E_kl"] - m["kl_qz_p"], relation="==", atol=5 * se,
        notes=f"independent Monte-Carlo estimates, tolerance 5 standard errors ({5 * se:.2g}); I(x;z) ≤ ln N = "
              f"{m['ln_N']:.3f} since x is uniform over N points", details=m)


def claim_lemma1(seed: int = 0) -> ClaimResult:
    """I(x; x') ≤ I(z; z_e) for x → z_e = μφ(x) → z → x' (Lemma 1, data processing), linear-Gaussian, exact."""
    q = LinearChain.random(seed=seed).quantities()
    return ClaimResult(
        "lemma1_data_processing", "I(x;x') ≤ I(z;z_e) along x → z_e → z → x'", "Lemma 1, (F.3)–(F.4)",
        lhs=q["I_x_xp"], rhs=q["I_z_ze"], relation="<=", atol=1e-12,
        notes=f"I(z;z_e) = I(x;z) = {q['I_x_z']:.6g} here (z_e is a deterministic function of x and z depends on x only "
              f"through z_e)", details=q)


def f10_terms(seed: int = 0, sigma_z2: float = 0.01, spread: float = 0.05, d_z: int = 3) -> dict:
    """I(z; z_e) for z = z_e + N(0, σz² I), z_e ~ N(0, Σ̃), and the two forms of (F.10)'s last line."""
    g = torch.Generator().manual_seed(seed)
    tilde = _spd(d_z, g, scale=spread)
    joint_map = torch.cat([torch.cat([torch.eye(d_z, dtype=DTYPE), torch.zeros(d_z, d_z, dtype=DTYPE)], 1),
                           torch.cat([torch.eye(d_z, dtype=DTYPE), math.sqrt(sigma_z2) * torch.eye(d_z, dtype=DTYPE)], 1)])
    src = torch.block_diag(tilde, torch.eye(d_z, dtype=DTYPE))
    joint = joint_map @ src @ joint_map.T  # (z_e, z)
    sigma = tilde + sigma_z2 * torch.eye(d_z, dtype=DTYPE)
    logdet = float(torch.logdet(sigma))
    return {
        "I_z_ze": gaussian_mi(joint, slice(0, d_z), slice(d_z, 2 * d_z)),
        "entropy_difference": gaussian_entropy(sigma) - gaussian_entropy(sigma_z2 * torch.eye(d_z, dtype=DTYPE)),
        "correct_form": 0.5 * logdet - 0.5 * d_z * math.log(sigma_z2),
        "printed_form": 0.5 * d_z * (logdet - math.log(sigma_z2)),
        "det_sigma": math.exp(logdet), "sigma_z2": sigma_z2, "d_z": d_z,
    }


def claim_f10_correct_form(seed: int = 0) -> ClaimResult:
    """H(Σ) − H(σz² I) = ½ ln det Σ − (d_z/2) ln σz² (= I(z; z_e) when q(z) is Gaussian)."""
    t = f10_terms(seed)
    return ClaimResult(
        "f10_entropy_difference", "I(z;z_e) = H(Σ) − H(σz²I) = ½ ln det Σ − (d_z/2) ln σz² for Gaussian q(z)",
        "(F.10)", status="corrected", lhs=[t["I_z_ze"], t["entropy_difference"]], rhs=[t["correct_form"]] * 2,
        relation="==", rtol=1e-10,
        atol=1e-12, notes="the printed last line (d_z/2) ln(det Σ/σz²) differs: see f10_printed_form", details=t)


def claim_f10_printed_form(seed: int = 0) -> ClaimResult:
    """Counterexample: (F.10)/(F.11)'s printed bound (d_z/2) ln(det Σ/σz²) is below I(z; z_e) (even negative)."""
    t = f10_terms(seed)
    return ClaimResult(
        "f10_printed_form", "The printed (F.10)/(F.11) bound (d_z/2)·ln(det Σ/σz²) can be smaller than I(z;z_e)",
        "(F.10), (F.11) as printed", status="counterexample", lhs=t["I_z_ze"], rhs=t["printed_form"], relation=">", atol=1e-6,
        notes=f"d_z = {t['d_z']}, σz² = {t['sigma_z2']}, det Σ = {t['det_sigma']:.3g}: I = {t['I_z_ze']:.4g} but the "
              f"printed bound is {t['printed_form']:.4g}; the correct expression ½ ln(det Σ/σz^(2d_z)) keeps the proof "
              f"(it still diverges only if det Σ → ∞ or σz² → 0)", details=t)


def claim_f6_entropy(d: int = 6, sigma2: float = 0.3) -> ClaimResult:
    """H(N(0, σ² I_d)) = (d/2) ln(2πe σ²); (F.6) prints ½ ln(2πe σ^{2d}), which misses (d−1)/2·ln(2πe)."""
    h = gaussian_entropy(sigma2 * torch.eye(d, dtype=DTYPE))
    correct = 0.5 * d * math.log(2 * math.pi * math.e * sigma2)
    printed = 0.5 * math.log(2 * math.pi * math.e * sigma2**d)
    return ClaimResult(
        "f6_gaussian_entropy", "Entropy of N(0, σ²I_d) is (d/2) ln(2πeσ²); (F.6)'s ½ ln(2πe σ^{2d}) drops (d−1)/2·ln 2πe",
        "(F.6)", status="corrected", lhs=h, rhs=correct, relation="==", rtol=1e-12, atol=1e-12,
        notes=f"printed form gives {printed:.6g} vs {correct:.6g}; harmless for Lemma 2 (only the ln σ² dependence "
              f"matters)", details={"printed": printed, "d": d, "sigma2": sigma2})


CLAIMS = {
    "theorem1_chain": claim_theorem1_chain,
    "a2_identity_gaussian": claim_a2_identity_gaussian,
    "theorem1_limit": claim_theorem1_limit,
    "a2_identity_mc": claim_a2_identity_mc,
    "lemma1_data_processing": claim_lemma1,
    "f10_entropy_difference": claim_f10_correct_form,
    "f10_printed_form": claim_f10_printed_form,
    "f6_gaussian_entropy": claim_f6_entropy,
}
