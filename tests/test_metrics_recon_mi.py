"""Reconstruction MSE / KL and the MI estimator of Eq. (D.1) against closed forms."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from vaebook.metrics import gaussian_mixture_mi, mean_kl, mean_mse, mi_upper_bound, mse_per_image
from vaebook.metrics.mi import _log_normal_matrix
from vaebook.metrics.toy import LinearGaussianVAE


def _toy(seed=0, **kw):
    return LinearGaussianVAE.random(d_x=6, d_z=2, seed=seed, mean_scale=0.8, var_scale=1.5, **kw)


def test_mse_is_per_image_sum_of_squared_errors():
    model = _toy(image_shape=(1, 2, 3))
    x = model.sample_data(7, torch.Generator().manual_seed(1))
    xf = x.reshape(7, -1).numpy()
    A, c, W, b = (p.detach().numpy() for p in (model.A, model.c, model.W, model.b))
    expected = (((xf @ A.T + c) @ W.T + b - xf) ** 2).sum(1)  # independent NumPy recomputation
    got = mse_per_image(model, x, batch_size=3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert mean_mse(model, x) == pytest.approx(expected.mean(), rel=1e-12)


def test_mean_kl_matches_torch_distributions():
    model = _toy()
    x = model.sample_data(9, torch.Generator().manual_seed(2))
    post = model.encode(x)
    q = torch.distributions.Normal(post.mean, post.var.sqrt())
    p = torch.distributions.Normal(torch.zeros_like(post.mean), torch.ones_like(post.mean))
    expected = torch.distributions.kl_divergence(q, p).sum(-1).mean().item()
    assert mean_kl(model, x, batch_size=4) == pytest.approx(expected, rel=1e-10)


def test_log_normal_matrix_matches_scipy_for_per_example_diagonal_variances():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(5, 3, generator=g, dtype=torch.float64)
    var = torch.rand(5, 3, generator=g, dtype=torch.float64) + 0.1
    z = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logdet = -0.5 * torch.log(2 * math.pi * var).sum(-1)
    got = _log_normal_matrix(z, mean, 1.0 / var, logdet).numpy()
    ref = np.array([[multivariate_normal(mean[j].numpy(), np.diag(var[j].numpy())).logpdf(z[i].numpy())
                     for j in range(5)] for i in range(4)])
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_mi_of_linear_gaussian_channel_matches_closed_form():
    # x ~ N(0, I_2), q(z|x) = N(a x, s² I): I(x; z) = (d/2) ln(1 + a²/s²)
    g = torch.Generator().manual_seed(3)
    n, d, a, s2 = 3000, 2, 1.0, 0.5
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    res = gaussian_mixture_mi(a * x, s2, n_z=2, generator=g)
    exact = d / 2 * math.log(1 + a**2 / s2)
    assert res["isotropic"]
    assert res["mi"] == pytest.approx(exact, abs=0.05)
    # Eq. (D.1) with d_z/2 estimates the same quantity
    assert res["mi_d1"] == pytest.approx(exact, abs=0.05)
    assert res["ln_n"] == pytest.approx(math.log(n))


def test_mi_with_per_example_variances_of_separated_clusters_is_log_k():
    # 4 well separated centres, each with its own diagonal variance (so variances differ across
    # examples and dimensions): z identifies the centre and nothing more, I(x; z) = H(centre) = ln 4
    g = torch.Generator().manual_seed(4)
    centres = 50.0 * torch.eye(4, 3, dtype=torch.float64)
    centre_var = 0.2 + torch.rand(4, 3, generator=g, dtype=torch.float64)
    idx = torch.arange(400) % 4
    mean, var = centres[idx], centre_var[idx]
    res = gaussian_mixture_mi(mean, var, generator=g)
    assert not res["isotropic"] and res["mi_d1"] is None
    assert res["mi"] == pytest.approx(math.log(4), abs=0.03)


def test_mi_is_zero_at_collapse_and_capped_by_log_n():
    g = torch.Generator().manual_seed(5)
    collapsed = gaussian_mixture_mi(torch.zeros(500, 8, dtype=torch.float64), 1.0, generator=g)
    assert collapsed["mi"] == pytest.approx(0.0, abs=1e-12)  # q(z) = q(z|x) exactly
    assert abs(collapsed["mi_d1"]) < 4 * collapsed["mi_d1_stderr"]  # D.1 with d_z/2 is ≈ 0 (Table 1, row 0.0)
    # distinct, far-apart codes with a tiny variance: the estimator saturates at ln N and cannot exceed it
    spread = gaussian_mixture_mi(100.0 * torch.randn(300, 8, generator=g, dtype=torch.float64), 1e-4, generator=g)
    assert spread["mi"] == pytest.approx(math.log(300), abs=1e-6)
    assert spread["mi"] <= spread["ln_n"] + 1e-9


def test_mi_upper_bound_on_a_model_uses_its_encoder_and_batches():
    model = LinearGaussianVAE.random(d_x=6, d_z=2, seed=6)
    x = model.sample_data(600, torch.Generator().manual_seed(7))
    res = mi_upper_bound(model, x, batch_size=300, n_z=2, seed=0)
    assert res["batch_sizes"] == [300, 300] and res["ln_n"] == pytest.approx(math.log(300))
    # exact MI of the linear-Gaussian encoder with x ~ N(b, C): ½ ln det(I + A C Aᵀ diag(v)⁻¹)
    A, v = model.A.detach(), model.enc_var.detach()
    C = model.W.detach() @ model.W.detach().T + model.sigma2 * torch.eye(6, dtype=torch.float64)
    exact = 0.5 * torch.logdet(torch.eye(2, dtype=torch.float64) + A @ C @ A.T / v).item()
    assert res["mi"] == pytest.approx(exact, abs=0.1)


def test_mi_upper_bound_deterministic_encoder_needs_sigma_z2():
    base = LinearGaussianVAE.random(d_x=4, d_z=2, seed=8)
    det = LinearGaussianVAE(base.W.detach(), base.b.detach(), 0.3, base.A.detach(), base.c.detach(), None)
    x = base.sample_data(50, torch.Generator().manual_seed(9))
    with pytest.raises(ValueError, match="sigma_z2"):
        mi_upper_bound(det, x)
    res = mi_upper_bound(det, x, sigma_z2=0.05)
    assert res["isotropic"] and 0.0 < res["mi_d1"] and res["mi"] <= res["ln_n"]


def test_uint8_images_are_read_as_values_in_unit_interval():
    # vaebook.data stores images as uint8; every metric must see x/255, not 0..255
    model = LinearGaussianVAE.random(d_x=4, d_z=2, seed=10, dtype=torch.float32, image_shape=(1, 2, 2))
    x8 = torch.randint(0, 256, (6, 1, 2, 2), generator=torch.Generator().manual_seed(11), dtype=torch.uint8)
    xf = x8.float() / 255
    torch.testing.assert_close(mse_per_image(model, x8, batch_size=4), mse_per_image(model, xf))
    assert mean_kl(model, x8) == pytest.approx(mean_kl(model, xf))
