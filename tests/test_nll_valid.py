"""Table 7's valid bound: a decoder variance fitted on training images (independent of the test image) in the same
IWAE estimator, beside the paper protocol (Σx of the −D shapes from the test image's own reconstruction)."""
import math

import pytest
import torch
from torch.distributions import Normal

from vaebook.metrics.nll import iwae_nll, needs_train_fit, train_fit_sigma2
from vaebook.models import GaussianVAE, build_model


pytestmark = pytest.mark.usefixtures("float64")  # float64 default dtype (tests/conftest.py)


def _images(n, seed):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def _spy_sigma2(model):
    """Record every Σx that ``model.variance.log_prob`` is called with."""
    seen, orig = [], model.variance.log_prob

    def spy(x, mu, sigma2):
        seen.append(sigma2.detach().clone())
        return orig(x, mu, sigma2)

    model.variance.log_prob = spy
    return seen


@pytest.mark.parametrize("name", ["mle-diag-d", "mle-iso-d"])
def test_train_fit_variance_is_the_training_residual_and_ignores_the_test_image(name):
    torch.manual_seed(0)
    model = build_model(name, "mnist", d_z=4).double().eval()
    train = _images(30, 1)
    s2 = train_fit_sigma2(model, train, n=20, batch_size=7)  # 7 + 7 + 6 images: batching and the cut at n
    with torch.no_grad():
        r2 = (train[:20] - model.decode(model.encode(train[:20]).mean)) ** 2
    want = r2.mean(0) if name == "mle-diag-d" else r2.mean().expand(1, 28, 28)
    assert s2.shape == (1, 28, 28)
    torch.testing.assert_close(s2, want + model.variance.eps, rtol=1e-12, atol=1e-15)
    assert name == "mle-iso-d" or s2.std() > 0  # Diag-D: really per pixel

    # the Σx the valid bound scores p(x|z) with is that fit, whatever the test images are
    a, b = _images(3, 2), _images(3, 3)
    seen = _spy_sigma2(model)
    va = iwae_nll(model, a, k=2, batch_size=3, k_chunk=2, seed=4, sigma2=s2)
    vb = iwae_nll(model, b, k=2, batch_size=3, k_chunk=2, seed=4, sigma2=s2)
    assert len(seen) == 2
    for got in seen:
        torch.testing.assert_close(got.expand(2, 3, 1, 28, 28), s2.expand(2, 3, 1, 28, 28), rtol=0, atol=0)
    assert va["nll"] != vb["nll"]
    # the paper protocol's Σx does follow the test image (so the check above can fail)
    seen.clear()
    iwae_nll(model, a, k=2, batch_size=3, k_chunk=2, seed=4)
    iwae_nll(model, b, k=2, batch_size=3, k_chunk=2, seed=4)
    assert not torch.equal(seen[0], seen[1])


def test_train_fit_is_refused_where_sigma_does_not_depend_on_x():
    assert [needs_train_fit(build_model(m, "mnist", d_z=2)) for m in
            ("vae-gaussian", "mle-iso-i", "mle-diag-i", "trainable-diag-d", "mle-iso-d", "mle-diag-d")] == \
        [False, False, False, False, True, True]
    with pytest.raises(ValueError, match="Iso-D / Diag-D"):
        train_fit_sigma2(build_model("mle-diag-i", "mnist", d_z=2), _images(4, 0))


def test_k1_fixed_variance_valid_equals_paper_equals_normal():
    torch.manual_seed(1)
    model = GaussianVAE("mnist", d_z=3, variance="iso-i", mode="fixed", value=0.3).double().eval()
    x = _images(5, 5)
    paper = iwae_nll(model, x, k=1, batch_size=5, k_chunk=1, seed=7)
    valid = iwae_nll(model, x, k=1, batch_size=5, k_chunk=1, seed=7, sigma2=model.variance.current())
    # independent: the same draw z = μφ + σφ·ε (ε from the same generator), densities from torch.distributions
    with torch.no_grad():
        h = model.encoder(x)
        mean, logvar = h.chunk(2, dim=-1)
        std = (0.5 * logvar).exp()
        eps = torch.randn((1, 5, 3), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        z = mean + eps * std
        mu = model.decode(z)
        log_w = (Normal(mu, math.sqrt(0.3)).log_prob(x.unsqueeze(0)).flatten(2).sum(-1)
                 + Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(mean, std).log_prob(z).sum(-1))
    ref = -log_w[0]
    torch.testing.assert_close(paper["nll_per_image"], ref, rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(valid["nll_per_image"], ref, rtol=1e-10, atol=1e-8)
    assert paper["nll"] == pytest.approx(valid["nll"], rel=1e-12) == pytest.approx(float(ref.mean()), rel=1e-10)
