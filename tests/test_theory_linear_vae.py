"""Theorem 2 / Lemma 2 for the linear VAE, and the exact alternating scheme (vaebook.theory.linear_vae)."""
import math

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
import torch  # noqa: E402

import vaebook  # noqa: F401,E402
from vaebook.theory import alternating as ALT  # noqa: E402
from vaebook.theory import linear_vae as LV  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def C():
    return LV.default_covariance()


def test_objective_closed_form_vs_monte_carlo():
    r = LV.claim_objective_closed_form(n=100_000)
    assert r.holds, (r.lhs, r.rhs, r.atol)
    assert not r.check(rhs=r.rhs + 2.0)  # e.g. the L2 term with factor 1 instead of ½ (E‖Vx‖²/2 ≈ 2 here)


def test_objective_matches_linearised_elbo_terms(C):
    """For a linear decoder Eq. (4) (with ½‖μφ‖² and the KL's σz² part) is exact: compare with population terms."""
    g = torch.Generator().manual_seed(1)
    W, V = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    s, sx = 0.2, 0.5
    R = torch.eye(5, dtype=torch.float64) - W @ V
    rec = torch.trace(R @ C @ R.T) / (2 * sx)
    penalty = s * (W**2).sum() / (2 * sx)
    l2 = 0.5 * torch.trace(V @ C @ V.T)
    kl_var = 1.5 * (s - math.log(s) - 1)
    assert float(LV.objective(C, W, V, s, sx)) == pytest.approx(float(rec + penalty + l2 + kl_var), rel=1e-13)


def test_closed_form_is_global_optimum(C):
    r = LV.claim_closed_form_is_global(sigma_x2s=(1e-2, 1.0, 10.0), n_starts=2)
    assert r.holds, (r.lhs, r.rhs)
    for a, b in zip(r.details["sigma_z2_optimiser"], r.details["sigma_z2_closed_form"]):
        assert a == pytest.approx(b, rel=1e-4)
    o = LV.closed_form(C, 3, 0.1)
    for f in (0.5, 2.0):  # the optimum is sharp in σz²
        assert float(LV.objective(C, o.W, o.V, f * o.sigma_z2, 0.1)) > o.J + 1e-4


def test_small_sigma_x_limit():
    r = LV.claim_small_sigma()
    assert r.holds, (r.lhs, r.rhs)
    assert not r.check(rhs=2 * r.rhs) and not r.check(rhs=r.rhs / 3)  # factor 2 / missing d_z
    zs = [row["sigma_z2"] for row in r.details["rows"]]
    assert all(b < a for a, b in zip(zs, zs[1:])) and zs[-1] < 1e-7


def test_large_sigma_x_limit(C):
    r = LV.claim_large_sigma()
    assert r.holds
    below = r.details["rows"][0]
    assert below["sigma_z2"] < 1 - 1e-3 and below["active_dims"] >= 1
    assert all(row["els"] < 1e-6 for row in r.details["rows"][1:])


def test_lemma2_growth_rate():
    r = LV.claim_lemma2()
    assert r.holds, r.lhs
    assert not r.check(rhs=-5 / 2)  # −d_x/2
    assert not r.check(rhs=-3.0)  # factor 2
    assert abs(r.details["slope_noisy_decoder"] + 1.5) < 0.02


def test_mi_helper_against_direct_formula(C):
    """I(x; Wz) from the SVD route = ½ ln det(Cov z)/det(σz²I) when W is injective."""
    o = LV.closed_form(C, 3, 0.05)
    cz = o.V @ C @ o.V.T + o.sigma_z2 * torch.eye(3, dtype=torch.float64)
    direct = 0.5 * (float(torch.logdet(cz)) - 3 * math.log(o.sigma_z2))
    assert LV.mi_x_xprime(C, o.W, o.V, o.sigma_z2) == pytest.approx(direct, rel=1e-10)


def test_alternating_linear_is_monotone_and_reaches_ppca():
    r = ALT.claim_alternating_linear(iters=30)
    assert r.holds
    assert r.details["sigma_x2"] == pytest.approx(r.details["ppca_sigma2"], rel=1e-6)
    assert r.details["J"][0] - r.details["J"][-1] > 1.0


def test_plots_return_figures():
    from matplotlib.figure import Figure

    rows = LV.theorem2_table(sigma_x2s=(1e-3, 1e-1, 10.0))
    fig = LV.plot_theorem2(rows)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    sz = fig.axes[0].lines[0].get_ydata()
    assert list(sz) == [row["sigma_z2"] for row in rows]
    matplotlib.pyplot.close(fig)
