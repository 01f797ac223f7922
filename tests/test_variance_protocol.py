"""The Σx protocol (vaebook.variance.DecoderVariance) seen from outside: a non-diagonal Σx fits in one
subclass (hooks receive residuals r = x − μθ(z)), ``eval_sigma2`` reproduces the evaluation Σx of
Table 7's NLL, and ``GaussianVAE.decoder_log_prob`` is the Gaussian density at that Σx."""
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

import vaebook  # noqa: F401
from vaebook.models import GaussianVAE, Section4VAE
from vaebook.variance import VARIANCES, DecoderVariance, build_variance, register_variance

LOG2PI = math.log(2 * math.pi)
SHAPES = ("iso-i", "diag-i", "iso-d", "diag-d")


pytestmark = pytest.mark.usefixtures("float64")  # float64 default dtype (tests/conftest.py)


def _data(shape, s=3, b=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, *shape, generator=g)
    mu = torch.rand(s, b, *shape, generator=g)
    return x, mu


# --- (a) a non-diagonal Σx is one subclass ---------------------------------------------------------
RIDGE = 1e-3


class _FullI(DecoderVariance):
    """Σx = one full d_x×d_x covariance shared by all x, through the protocol's hooks only. MLE: G.1's
    Σ̂x = E[r rᵀ] (over samples and minibatch) + RIDGE·I; objective: Eq. (7b) at Σ̂x computed exactly (the ridge
    breaks the closed form, so mle_objective is the mean NLL)."""

    name = "full-i-test"
    uses_eps = False
    diagonal = False

    def param_shape(self):
        return (self.d_x, self.d_x)

    def initial(self, value):
        return value * torch.eye(self.d_x)

    def estimate(self, r):
        f = r.flatten(2)  # S×B×d_x
        return torch.einsum("sbi,sbj->ij", f, f) / (f.shape[0] * f.shape[1]) + RIDGE * torch.eye(self.d_x)

    def add_eps(self, sigma2, eps):
        return sigma2 + eps * torch.eye(self.d_x, dtype=sigma2.dtype)

    def marginal(self, sigma2):
        return sigma2.diagonal(dim1=-2, dim2=-1).reshape(self.x_shape)

    def logdet(self, sigma2):
        return 2 * torch.linalg.cholesky(sigma2).diagonal(dim1=-2, dim2=-1).log().sum(-1)

    def mahalanobis(self, r, sigma2):
        f = r.flatten(-3)
        white = torch.linalg.solve_triangular(torch.linalg.cholesky(sigma2), f.unsqueeze(-1), upper=False)
        return (white ** 2).sum((-2, -1))

    def mle_objective(self, s2, r=None):
        return self.nll(r, s2).mean()


def test_full_covariance_subclass_matches_multivariate_normal():
    shape = (1, 2, 2)
    assert _FullI.name not in VARIANCES
    register_variance(_FullI)
    try:
        x, mu = _data(shape, s=3, b=6)
        mu.requires_grad_(True)
        v = build_variance("full-i-test", shape, mode="mle")
        assert isinstance(v, _FullI)
        out = v(x, mu)
        # independent: sample covariance of the residual vectors (numpy), + the ridge, then MVN log-density
        r = (x.unsqueeze(0) - mu.detach()).reshape(-1, 4).numpy()
        cov = torch.from_numpy(r.T @ r / r.shape[0]) + RIDGE * torch.eye(4)
        mvn = MultivariateNormal(torch.zeros(4), covariance_matrix=cov)
        want = -mvn.log_prob((x.unsqueeze(0) - mu.detach()).reshape(3, 6, 4)).mean()
        assert torch.allclose(out.rec, want, rtol=0, atol=1e-10), (float(out.rec), float(want))
        torch.testing.assert_close(out.sigma2, cov.diagonal().reshape(shape), rtol=0, atol=1e-12)  # diag Σ̂x
        off = cov - torch.diag(cov.diagonal())
        assert float(off.abs().max()) > 1e-3  # genuinely non-diagonal
        # a diagonal shape gives a different objective on the same residuals (the test is not vacuous)
        diag = build_variance("diag-i", shape, mode="mle", eps=RIDGE)(x, mu.detach()).rec
        assert abs(float(diag) - float(want)) > 1e-3
        # gradients flow through the estimate (Eq. 10)
        out.rec.backward()
        assert mu.grad is not None and float(mu.grad.abs().sum()) > 0
        # training mode updated the running Σ̂x (first step: the estimate itself); evaluation uses it
        torch.testing.assert_close(v.running_sigma2, cov, rtol=0, atol=1e-12)
        v.eval()
        mu2 = torch.rand(2, 6, *shape, generator=torch.Generator().manual_seed(9))
        lp = v.log_prob(x, mu2, v.eval_sigma2(x, mu2))
        torch.testing.assert_close(lp, mvn.log_prob((x.unsqueeze(0) - mu2).reshape(2, 6, 4)), rtol=0, atol=1e-10)
    finally:
        VARIANCES.pop(_FullI.name, None)
    assert sorted(VARIANCES) == sorted(SHAPES + ("lowrank",))  # the paper's four + ours (vaebook.variance.lowrank)


@pytest.mark.parametrize("name", SHAPES)
def test_estimate_receives_residuals(name):
    """The diagonal shapes' estimate(r) is their G.4/G.7/G.11/G.15 MLE of r² — and not of r."""
    x, mu = _data((2, 3, 4))
    v = build_variance(name, (2, 3, 4), mode="mle")
    r = x.unsqueeze(0) - mu
    torch.testing.assert_close(v.estimate(r), v.mle(r**2), rtol=0, atol=0)
    assert not torch.allclose(v.estimate(r), v.mle(r).abs())


# --- (b) eval_sigma2: the evaluation Σx of the IWAE NLL ---------------------------------------------
def _full(t, s, b, shape):
    return torch.broadcast_to(t, (s, b, *shape))


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("mode", ["fixed", "trainable", "mle"])
def test_eval_sigma2_per_shape_and_mode(name, mode):
    shape, s, b = (2, 3, 4), 3, 5
    assert name in VARIANCES
    x, mu = _data(shape, s=s, b=b)
    g = torch.Generator().manual_seed(1)
    v = build_variance(name, shape, mode=mode, value=0.3)
    head, recon = None, None
    dependent = name.endswith("-d")
    if mode == "fixed":
        want = torch.full((s, b, *shape), 0.3)
    elif mode == "trainable" and not dependent:
        with torch.no_grad():
            v.log_sigma2.copy_(torch.randn(v.log_sigma2.shape, generator=g))
        want = v.log_sigma2.detach().exp().expand(s, b, *shape) if name == "diag-i" else \
            torch.full((s, b, *shape), float(v.log_sigma2.detach().exp()))
    elif mode == "trainable":
        head = torch.randn(s, b, v.head_channels(), *shape[1:], generator=g)
        want = (head.mean((2, 3, 4)).exp()[..., None, None, None].expand(s, b, *shape) if name == "iso-d"
                else head.exp())
    elif not dependent:  # MLE -I: running (EMA) estimate of two training steps, + ε
        x1, mu1 = _data(shape, seed=2)
        x2, mu2 = _data(shape, seed=3)
        r1, r2 = (x1.unsqueeze(0) - mu1) ** 2, (x2.unsqueeze(0) - mu2) ** 2
        red = (lambda t: t.mean()) if name == "iso-i" else (lambda t: t.mean((0, 1)))
        v.train()
        v(x1, mu1)
        v(x2, mu2)
        running = (1 - v.ema) * red(r1) + v.ema * red(r2)
        eps = 0.0 if name == "iso-i" else 1e-6
        want = (running + eps).expand(s, b, *shape)
    else:  # MLE -D: the per-example MLE from the image's own reconstruction, + ε
        recon = torch.rand(b, *shape, generator=g)
        r2 = (x - recon) ** 2
        est = r2.flatten(1).mean(1)[:, None, None, None] if name == "iso-d" else r2
        want = (est + 1e-6).expand(s, b, *shape)
    assert v.needs_recon == (mode == "mle" and dependent)
    if v.needs_recon:
        with pytest.raises(ValueError, match="recon"):
            v.eval_sigma2(x, mu)
    got = v.eval_sigma2(x, mu, head, recon=recon)
    torch.testing.assert_close(_full(got, s, b, shape), want, rtol=1e-12, atol=1e-15)
    # and log_prob at that Σx is the diagonal Gaussian density
    lp = v.log_prob(x, mu, got)
    ref = Normal(mu, want.sqrt()).log_prob(x.expand_as(mu)).flatten(2).sum(-1)
    torch.testing.assert_close(lp, ref, rtol=1e-12, atol=1e-9)


# --- (c) GaussianVAE.decoder_log_prob ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["iso-i", "diag-d"])
def test_gaussian_vae_decoder_log_prob_is_normal_density(name):
    torch.manual_seed(0)
    model = GaussianVAE("mnist", d_z=4, variance=name, mode="mle").double().eval()
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 1, 28, 28, generator=g)
    z = torch.randn(3, 2, 4, generator=g)
    if name == "iso-i":
        model.variance.running_sigma2.fill_(0.07)
    with torch.no_grad():
        got = model.decoder_log_prob(x, z)
        mu = model.decode(z)
        if name == "iso-i":
            s2 = torch.full_like(mu, 0.07)
        else:
            recon = model.decode(model.encode(x).mean)
            s2 = ((x - recon) ** 2 + 1e-6).unsqueeze(0).expand_as(mu)
        ref = Normal(mu, s2.sqrt()).log_prob(x.expand_as(mu)).flatten(2).sum(-1)
    assert got.shape == (3, 2)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-8)


def test_section4_decoder_log_prob_uses_fixed_sigma():
    torch.manual_seed(0)
    model = Section4VAE("d1", sigma_x2=0.2, sigma_z2=1.0).double().eval()
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 1, 28, 28, generator=g)
    z = torch.randn(3, 2, model.d_z, generator=g)
    with torch.no_grad():
        got = model.decoder_log_prob(x, z)
        mu = model.decode(z)
        ref = Normal(mu, math.sqrt(0.2)).log_prob(x.expand_as(mu)).flatten(2).sum(-1)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-8)
