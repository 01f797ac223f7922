"""Decoder-variance protocol (Section 5, Table 2, Appendix G): closed forms, envelope, minimiser."""
import math

import pytest
import torch

import vaebook  # noqa: F401
from vaebook.variance import VARIANCES, build_variance



pytestmark = pytest.mark.usefixtures("float64")  # float64 default dtype (tests/conftest.py)

LOG2PI = math.log(2 * math.pi)
#: the paper's four shapes (Table 2), whose closed forms this file checks; our low-rank Σx has its own tests
#: (tests/test_variance_lowrank.py)
from vaebook.variance import PAPER_SHAPES  # noqa: E402
SHAPE = (2, 3, 4)
D_X = 24


def _data(s=3, b=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, *SHAPE, generator=g)
    mu = torch.rand(s, b, *SHAPE, generator=g)
    return x, mu


def closed_form(name, x, mu, eps):
    """Appendix G's objectives, written independently of the module, plus (d_x/2) ln 2π."""
    r2 = (x.unsqueeze(0) - mu) ** 2  # S×B×pixels
    const = D_X / 2 * LOG2PI
    if name == "iso-i":  # G.5
        e = r2.flatten(2).sum(-1).mean()
        return D_X / 2 + D_X / 2 * torch.log(e) - D_X / 2 * math.log(D_X) + const
    if name == "iso-d":  # G.9 (ε added to the per-pixel variance estimate)
        e = r2.flatten(2).sum(-1).mean(0)  # E_q ||x - mu||^2 per example
        return D_X / 2 + D_X / 2 * torch.log(e / D_X + eps).mean() + const
    if name == "diag-i":  # G.13
        e = r2.mean(dim=(0, 1))
        return D_X / 2 + 0.5 * torch.log(e + eps).sum() + const
    if name == "diag-d":  # G.17
        e = r2.mean(0)
        return D_X / 2 + 0.5 * torch.log(e + eps).flatten(1).sum(-1).mean() + const
    raise KeyError(name)


def eq7b(x, mu, sigma2_full):
    """Eq. (7b) + const for a diagonal Σx given per example and pixel (B×pixels), averaged over S and B."""
    r2 = (x.unsqueeze(0) - mu) ** 2
    return 0.5 * (r2 / sigma2_full + torch.log(sigma2_full) + LOG2PI).flatten(2).sum(-1).mean()


def full_sigma(v, s2, b):
    return v.expand(s2, b) if v.dependent else v.expand(s2, b)


@pytest.mark.parametrize("name", PAPER_SHAPES)
@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_mle_objective_equals_appendix_g(name, eps):
    x, mu = _data()
    v = build_variance(name, SHAPE, mode="mle", eps=eps)
    out = v(x, mu)
    want = closed_form(name, x, mu, v.eps)
    assert torch.allclose(out.rec, want, rtol=0, atol=1e-10), (float(out.rec), float(want))


@pytest.mark.parametrize("name", PAPER_SHAPES)
def test_mle_estimate_shapes_and_values(name):
    x, mu = _data(s=2, b=4)
    v = build_variance(name, SHAPE, mode="mle")
    s2 = v(x, mu).sigma2
    r2 = (x.unsqueeze(0) - mu) ** 2
    want = {"iso-i": r2.mean(), "diag-i": r2.mean((0, 1)), "iso-d": r2.mean(0).flatten(1).mean(1),
            "diag-d": r2.mean(0)}[name]
    assert s2.shape == want.shape and torch.allclose(s2, want)


@pytest.mark.parametrize("name", PAPER_SHAPES)
def test_envelope_gradient_matches_alternating_scheme(name):
    """∇ of the MLE objective (Eq. 10) = ∇ of Eq. (7a) with Σx frozen at Σ̂x (Eqs. 9a/9b), exactly for ε = 0."""
    x, mu0 = _data(seed=1)
    v = build_variance(name, SHAPE, mode="mle", eps=0.0)
    mu = mu0.clone().requires_grad_(True)
    g_mle, = torch.autograd.grad(v(x, mu).rec, mu)
    s2 = v.estimate(x.unsqueeze(0) - mu0).detach()  # Eq. (9a) from the residuals
    mu2 = mu0.clone().requires_grad_(True)
    g_alt, = torch.autograd.grad(eq7b(x, mu2, v.expand(s2, x.shape[0])), mu2)
    assert torch.allclose(g_mle, g_alt, atol=1e-12, rtol=1e-9)
    # and a wrong plug-in (Σx off by a factor 2) gives a different gradient
    mu3 = mu0.clone().requires_grad_(True)
    g_bad, = torch.autograd.grad(eq7b(x, mu3, 2 * v.expand(s2, x.shape[0])), mu3)
    assert not torch.allclose(g_mle, g_bad, rtol=1e-3)


@pytest.mark.parametrize("name", PAPER_SHAPES)
def test_mle_value_minimises_eq7b(name):
    """Perturbing Σ̂x in any direction raises Eq. (7b) (Section 5.2 (i))."""
    x, mu = _data(seed=2)
    v = build_variance(name, SHAPE, mode="mle", eps=0.0)
    s2 = v(x, mu).sigma2
    best = eq7b(x, mu, v.expand(s2, x.shape[0]))
    assert torch.allclose(best, v(x, mu).rec)
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        d = 0.05 * torch.randn(s2.shape, generator=g)
        worse = eq7b(x, mu, v.expand(s2 * d.exp(), x.shape[0]))
        assert worse > best


def test_fixed_unit_variance_is_eq3_reconstruction():
    x, mu = _data(s=1)
    v = build_variance("iso-i", SHAPE, mode="fixed", value=1.0)
    want = 0.5 * ((x - mu[0]) ** 2).flatten(1).sum(-1).mean() + D_X / 2 * LOG2PI
    assert torch.allclose(v(x, mu).rec, want)
    v2 = build_variance("iso-i", SHAPE, mode="fixed", value=0.1)
    want2 = (0.5 / 0.1 * ((x - mu[0]) ** 2).flatten(1).sum(-1).mean() + D_X / 2 * (LOG2PI + math.log(0.1)))
    assert torch.allclose(v2(x, mu).rec, want2)


@pytest.mark.parametrize("name", PAPER_SHAPES)
def test_trainable_variance_receives_gradient_and_matches_gaussian_nll(name):
    x, mu = _data(s=1, b=3)
    v = build_variance(name, SHAPE, mode="trainable", value=0.5)
    head = None
    if v.dependent:
        head = torch.randn(1, 3, v.head_channels(), *SHAPE[1:], requires_grad=True)
    out = v(x, mu, head)
    out.rec.backward()
    param = head if v.dependent else v.log_sigma2
    assert param.grad is not None and param.grad.abs().sum() > 0
    # the same value from torch's GaussianNLLLoss (full=True) with the implied per-pixel variance
    s2 = out.sigma2
    full = {"iso-i": lambda: s2.expand(3, *SHAPE), "diag-i": lambda: s2.expand(3, *SHAPE),
            "iso-d": lambda: s2.reshape(3, 1, 1, 1).expand(3, *SHAPE), "diag-d": lambda: s2}[name]()
    ref = torch.nn.GaussianNLLLoss(full=True, reduction="sum", eps=0)(mu[0], x, full) / 3
    assert torch.allclose(out.rec, ref)


def test_paper_shapes_are_registered():
    assert set(PAPER_SHAPES) <= set(VARIANCES)


def test_unknown_names_and_modes_are_rejected():
    with pytest.raises(ValueError, match="iso-i"):
        build_variance("full", SHAPE)
    with pytest.raises(ValueError, match="mode"):
        build_variance("iso-i", SHAPE, mode="learned")
    with pytest.raises(ValueError, match="positive"):
        build_variance("iso-i", SHAPE, mode="fixed", value=0.0)
