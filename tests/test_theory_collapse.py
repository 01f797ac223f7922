"""The collapse margin of Section 4's linear VAE: closed form against numerical optimisation."""
import math

import pytest
import torch

from vaebook.theory.collapse import collapse_margin, data_covariance
from vaebook.theory.linear_vae import default_covariance, objective, optimise


@pytest.mark.parametrize("sigma_x2", [0.05, 0.5])
def test_margin_equals_collapse_minus_numerical_optimum(sigma_x2):
    C = default_covariance(6, seed=3)
    m = collapse_margin(C, 2, sigma_x2)
    num = optimise(C, 2, sigma_x2, n_starts=3)
    zero = torch.zeros(6, 2, dtype=C.dtype)
    j_collapse = float(objective(C, zero, zero.T, 1.0, sigma_x2))  # W = 0, V = 0, σz² = 1
    assert m["J_collapse"] == pytest.approx(j_collapse, rel=1e-12)
    assert m["J_opt"] == pytest.approx(num.J, abs=1e-7)
    assert m["margin"] == pytest.approx(j_collapse - num.J, abs=1e-7) and m["margin"] > 0


def test_margin_vanishes_once_sigma_x2_exceeds_the_top_eigenvalue():
    C = default_covariance(5, seed=1)
    lam_max = float(torch.linalg.eigvalsh(C).max())
    assert collapse_margin(C, 2, 1.01 * lam_max)["margin"] == pytest.approx(0.0, abs=1e-9)
    assert collapse_margin(C, 2, 1.01 * lam_max)["sigma_z2_opt"] == pytest.approx(1.0, abs=1e-6)
    small = [collapse_margin(C, 2, s)["margin"] for s in (0.8 * lam_max, 0.3 * lam_max, 0.1 * lam_max)]
    assert small[0] < small[1] < small[2]  # the margin grows as σx² falls


def test_data_covariance_matches_numpy():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50, 1, 3, 3), generator=g, dtype=torch.uint8)
    import numpy as np

    ref = np.cov(x.reshape(50, -1).double().numpy() / 255.0, rowvar=False, bias=True)
    torch.testing.assert_close(data_covariance(x), torch.as_tensor(ref), rtol=1e-12, atol=1e-14)
    assert math.isclose(float(torch.trace(data_covariance(x))), float(ref.trace()), rel_tol=1e-12)
