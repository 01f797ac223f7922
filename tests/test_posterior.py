"""Ex-post latent densities (GMM, second-stage VAE) recover a known two-cluster code distribution."""
import pytest
import torch

from vaebook.metrics.toy import LinearGaussianVAE
from vaebook.posterior import GMMSampler, SecondStageVAE, fit_latent_sampler, generate_images, sample, sample_latents

W1, M1, M2, SD = 0.3, torch.tensor([-3.0, 0.0]), torch.tensor([3.0, 1.0]), 0.5


def _clusters(n, seed):
    g = torch.Generator().manual_seed(seed)
    left = torch.rand(n, generator=g) < W1
    z = torch.where(left.unsqueeze(1), M1, M2) + SD * torch.randn(n, 2, generator=g)
    return z.double()


def _cluster_summary(z):
    left = z[:, 0] < 0
    return left.double().mean().item(), z[left].mean(0), z[~left].mean(0)


def _near_cluster_summary(z):
    """Weight and means from the samples within 3 SD of either true centre (robust to stray samples)."""
    n1 = (z.float() - M1).norm(dim=1) < 3 * SD
    n2 = (z.float() - M2).norm(dim=1) < 3 * SD
    return n1.sum().item() / (n1.sum() + n2.sum()).item(), z[n1].mean(0), z[n2].mean(0), (n1 | n2).double().mean().item()


def _identity_model(has_prior=True):
    """Encoder mean = x, decoder mean = z: images are the codes themselves (shape N×1×1×2)."""
    eye = torch.eye(2, dtype=torch.float64)
    m = LinearGaussianVAE(eye, torch.zeros(2, dtype=torch.float64), 0.1, eye, torch.zeros(2, dtype=torch.float64),
                          torch.ones(2, dtype=torch.float64))
    m.has_prior = has_prior
    return m


def test_gmm_recovers_weights_and_means():
    z = _clusters(3000, 0)
    s = GMMSampler(n_components=2, seed=0).fit(z)
    order = torch.argsort(torch.as_tensor(s.gmm.means_[:, 0]))
    assert s.gmm.weights_[order[0].item()] == pytest.approx(W1, abs=0.03)
    torch.testing.assert_close(torch.as_tensor(s.gmm.means_)[order].float(), torch.stack([M1, M2]), atol=0.06, rtol=0)
    samples = s.sample(4000, generator=torch.Generator().manual_seed(1))
    w, m1, m2 = _cluster_summary(samples)
    assert w == pytest.approx(W1, abs=0.03)
    torch.testing.assert_close(m1.float(), M1, atol=0.08, rtol=0)
    torch.testing.assert_close(m2.float(), M2, atol=0.08, rtol=0)
    assert samples[samples[:, 0] > 0].std(0).mean().item() == pytest.approx(SD, abs=0.05)


def test_fit_latent_sampler_gmm_through_a_model_and_decode():
    model = _identity_model(has_prior=False)
    x = _clusters(2000, 2).reshape(-1, 1, 1, 2)
    sampler = fit_latent_sampler(model, x, source="gmm10", seed=0)
    assert sampler.source == "gmm10" and sampler.gmm.n_components == 10
    imgs = sample(model, 3000, source="gmm10", sampler=sampler, generator=torch.Generator().manual_seed(3))
    assert imgs.shape == (3000, 1, 1, 2)
    w, m1, m2 = _cluster_summary(imgs.reshape(-1, 2))
    assert w == pytest.approx(W1, abs=0.03)
    torch.testing.assert_close(m1.float(), M1, atol=0.1, rtol=0)
    torch.testing.assert_close(m2.float(), M2, atol=0.1, rtol=0)
    with pytest.raises(ValueError, match="no prior"):
        sample(model, 4, source="prior")
    with pytest.raises(ValueError, match="fitted sampler"):
        sample_latents(model, 4, source="gmm10")
    with pytest.raises(ValueError, match="not 'gmm100'"):
        sample_latents(model, 4, source="gmm100", sampler=sampler)


@pytest.fixture
def one_thread():
    """Tiny MLP training is ~10× slower with 2 threads on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_second_stage_vae_recovers_two_clusters(one_thread):
    torch.manual_seed(0)
    z = _clusters(2000, 4)
    vae2 = SecondStageVAE(2, width=64, depth=2).fit(z, epochs=100, batch_size=100, lr=2e-3, seed=0)
    assert vae2.gamma < 0.2  # γ is learned (starts at 1) and shrinks as the fit improves, as in [18]
    assert vae2.history[-1] < vae2.history[0]
    samples = vae2.sample(4000, generator=torch.Generator().manual_seed(5)).double()
    w, m1, m2, covered = _near_cluster_summary(samples)
    assert covered > 0.9
    w_data = (z[:, 0] < 0).double().mean().item()  # the fitted sample's own cluster weight
    assert w == pytest.approx(w_data, abs=0.03)
    torch.testing.assert_close(m1.float(), M1, atol=0.25, rtol=0)
    torch.testing.assert_close(m2.float(), M2, atol=0.25, rtol=0)
    between = ((samples[:, 0] > -1.5) & (samples[:, 0] < 1.5)).double().mean().item()
    assert between < 0.05  # little mass in the empty gap between the clusters


def test_prior_sampling_is_seeded_and_standard_normal():
    model = _identity_model()
    a = torch.cat(list(generate_images(model, 5000, seed=6, batch_size=1000))).reshape(-1, 2)
    b = torch.cat(list(generate_images(model, 5000, seed=6, batch_size=1000))).reshape(-1, 2)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.05, rtol=0)
    torch.testing.assert_close(a.std(0), torch.ones(2, dtype=torch.float64), atol=0.05, rtol=0)
    assert fit_latent_sampler(model, None, source="prior") is None


def test_fit_latent_sampler_routes_second_stage_options(one_thread):
    model = _identity_model(has_prior=False)
    x = _clusters(300, 7).reshape(-1, 1, 1, 2)
    vae2 = fit_latent_sampler(model, x, source="2nd-vae", width=16, depth=1, max_steps=25, batch_size_2nd=50, seed=0)
    assert isinstance(vae2, SecondStageVAE) and len(vae2.history) == 25
    assert vae2.encoder[0].out_features == 16 and len(vae2.encoder) == 3  # Linear, ReLU, Linear
    torch.testing.assert_close(vae2.shift.double(), x.reshape(-1, 2).mean(0), rtol=0, atol=1e-5)  # standardised on the codes
    z = sample_latents(model, 10, source="2nd-vae", sampler=vae2, generator=torch.Generator().manual_seed(0))
    assert z.shape == (10, 2) and z.dtype == torch.float64
