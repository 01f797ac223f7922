"""IWAE NLL bound (Table 7) on a linear-Gaussian VAE whose marginal p(x) is known exactly."""

import pytest
import torch

from vaebook.metrics import iwae_nll
from vaebook.metrics.toy import LinearGaussianVAE


@pytest.fixture(scope="module")
def setup():
    # deliberately imperfect encoder: mean map shrunk, variances inflated w.r.t. the true posterior
    model = LinearGaussianVAE.random(d_x=6, d_z=2, sigma2=0.3, seed=0, mean_scale=0.9, var_scale=1.5)
    x = model.sample_data(40, torch.Generator().manual_seed(1))
    exact_nll = -model.exact_log_marginal(x)
    exact_elbo = model.exact_elbo(x)
    return model, x, exact_nll, exact_elbo


def test_iwae_converges_to_exact_nll_for_large_k(setup):
    model, x, exact_nll, exact_elbo = setup
    res = iwae_nll(model, x, k=3000, batch_size=16, k_chunk=256, seed=2)
    gap_elbo = (-exact_elbo - exact_nll).mean().item()
    assert gap_elbo > 0.2  # the encoder is far enough from the posterior for the test to mean something
    assert res["nll"] == pytest.approx(exact_nll.mean().item(), abs=0.02)
    torch.testing.assert_close(res["nll_per_image"], exact_nll, atol=0.1, rtol=0)
    assert res["n"] == 40 and res["k"] == 3000


def test_iwae_never_below_elbo_and_elbo_matches_closed_form(setup):
    model, x, exact_nll, exact_elbo = setup
    res = iwae_nll(model, x, k=500, batch_size=40, k_chunk=64, seed=3)
    # logsumexp(log w) − ln k ≥ mean(log w) for every image (Jensen), i.e. NLL_iwae ≤ −ELBO estimate
    assert bool((res["nll_per_image"] <= -res["elbo_per_image"] + 1e-12).all())
    # the mean log-weight is an unbiased ELBO estimate: per image it averages 500 draws
    assert res["elbo"] == pytest.approx(exact_elbo.mean().item(), abs=0.05)
    assert res["nll_elbo"] == pytest.approx(-res["elbo"])


def test_iwae_bound_tightens_with_k(setup):
    model, x, exact_nll, exact_elbo = setup
    nll = {k: iwae_nll(model, x, k=k, batch_size=40, k_chunk=50, seed=4)["nll"] for k in (1, 10, 1000)}
    assert nll[1] == pytest.approx(-exact_elbo.mean().item(), abs=0.5)  # L_1 is a one-sample ELBO
    assert nll[1] > nll[10] > nll[1000]
    assert nll[1000] > exact_nll.mean().item() - 0.02  # an upper bound on the NLL (up to MC error)


def test_iwae_refuses_models_without_likelihood_or_stochastic_encoder():
    base = LinearGaussianVAE.random(d_x=4, d_z=2, seed=5)
    det = LinearGaussianVAE(base.W.detach(), base.b.detach(), 0.3, base.A.detach(), base.c.detach(), None)
    x = base.sample_data(4, torch.Generator().manual_seed(6))
    with pytest.raises(ValueError, match="deterministic"):
        iwae_nll(det, x, k=4)
    base.has_likelihood = False
    with pytest.raises(ValueError, match="likelihood"):
        iwae_nll(base, x, k=4)
