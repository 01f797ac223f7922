"""Theorem 1, Lemmas 1–3, (F.6), (F.8)–(F.10): vaebook.theory.mutual_information and .aggregate."""
import math

import torch

import vaebook  # noqa: F401
from vaebook.theory import aggregate as A
from vaebook.theory import mutual_information as M
from vaebook.theory._record import compare

torch.set_num_threads(1)


def test_gaussian_mi_matches_scalar_formula():
    """I for a bivariate Gaussian with correlation ρ is −½ ln(1 − ρ²) (independent of the log-det code)."""
    rho = 0.6
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    assert abs(M.gaussian_mi(cov, slice(0, 1), slice(1, 2)) + 0.5 * math.log(1 - rho**2)) < 1e-14


def test_theorem1_chain_and_identity():
    r = M.claim_theorem1_chain()
    assert r.holds
    assert not compare(r.rhs, r.lhs, "<=")  # the chain is strict here: reversed inequalities fail
    taus = r.details["I_x_xp_vs_tau2"]
    assert abs(taus[1e-6] - r.details["I_x_z"]) < 1e-3 < abs(taus[1e-1] - r.details["I_x_z"])
    a2 = M.claim_a2_identity_gaussian()
    assert a2.holds
    d = a2.details
    assert d["kl_qz_p"] > 0.05 and not a2.check(rhs=d["E_kl"] + d["kl_qz_p"]) and not a2.check(rhs=d["E_kl"])


def test_theorem1_limit():
    r = M.claim_theorem1_limit()
    assert r.holds and r.rhs[-1] < 1e-4 and r.lhs[-1] < 1e-4 < r.lhs[0]


def test_a2_identity_monte_carlo():
    r = M.claim_a2_identity_mc(k=1500)
    assert r.holds, (r.lhs, r.rhs, r.atol)
    d = r.details
    assert not r.check(rhs=d["E_kl"] + d["kl_qz_p"])  # wrong sign of KL(q(z)‖p)
    assert not r.check(rhs=d["E_kl"])  # KL(q(z)‖p) is not negligible here
    assert r.lhs <= d["ln_N"]


def test_lemma1():
    r = M.claim_lemma1()
    assert r.holds and abs(r.rhs - r.details["I_x_z"]) < 1e-10


def test_f10_and_f6():
    ok, printed = M.claim_f10_correct_form(), M.claim_f10_printed_form()
    assert ok.holds and printed.holds
    assert not ok.check(rhs=[printed.rhs] * 2)
    assert printed.rhs < 0 < printed.lhs  # the printed "upper bound" on a MI is even negative
    f6 = M.claim_f6_entropy()
    assert f6.holds and not f6.check(rhs=f6.details["printed"])


def test_f8_aggregate_covariance():
    r = A.claim_f8_aggregate_covariance(n=100_000)
    assert r.holds
    eye = torch.eye(3, dtype=torch.float64) * r.details["sigma_z2"]
    rhs = torch.tensor(r.rhs)
    assert not r.check(rhs=rhs + eye)  # 2σz² I
    assert not r.check(rhs=rhs - eye)  # σz² I missing


def test_f9_bounds_and_counterexample():
    lin = A.claim_f9_linear()
    assert lin.holds and all(l_ > 0 for l_ in lin.lhs)
    gauss = A.claim_f9_gaussian_nonlinear(n=50_000)
    assert gauss.holds
    cex = A.claim_f9_counterexample()
    assert cex.holds
    assert abs(cex.lhs - (1 + (2 - math.sqrt(2)) ** 2 / 2)) < 1e-12
    assert abs(cex.details["lipschitz_on_points"] - 1.0) < 1e-12
    assert compare(cex.lhs, 2.0 * cex.details["lipschitz_on_points"] ** 2, "<=")  # L² tr(Cov x) still bounds it


def test_mcshane_extension_is_lipschitz():
    pts = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    vals = torch.tensor([math.sqrt(2), -math.sqrt(2), 2 - math.sqrt(2), math.sqrt(2) - 2], dtype=torch.float64)
    f = A.mcshane(pts, vals)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 2, generator=g, dtype=torch.float64) * 2, torch.randn(2000, 2, generator=g, dtype=torch.float64) * 2
    ratio = (f(a) - f(b)).abs() / (a - b).norm(dim=-1)
    assert float(ratio.max()) <= 1 + 1e-12
    assert torch.allclose(f(pts), vals)
