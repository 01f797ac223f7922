"""Beyond the paper (issue #16): the low-rank decoder covariance Σx = σ²I + UUᵀ (vaebook.variance.lowrank).

Its closed-form PPCA estimate is the likelihood maximiser (scikit-learn's PCA, a numerical optimum, perturbations),
its O(d·r) log-density is the dense Gaussian's, rank 0 is Iso-I, the running S lets the rank exceed the batch, and a
GaussianVAE trains with it."""
import math

import pytest
import torch
from torch.distributions import LowRankMultivariateNormal, MultivariateNormal

import vaebook  # noqa: F401
from vaebook.models import MODEL_REGISTRY, build_model
from vaebook.models.vae import GaussianVAE
from vaebook.variance import VARIANCES, build_variance
from vaebook.variance.lowrank import LowRankI, lowrank_nll, ppca_mle


pytestmark = pytest.mark.usefixtures("float64")  # float64 default dtype (tests/conftest.py)


def _lowrank_residuals(n, d, k, noise=0.05, seed=0):
    """n residual vectors from N(0, noise·I + WWᵀ) with a rank-k W (well separated spectrum)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, k, generator=g) * torch.linspace(1.0, 0.4, k)
    return torch.randn(n, k, generator=g) @ W.T + math.sqrt(noise) * torch.randn(n, d, generator=g)


def _mean_loglik(R, s2, U):
    return float(-lowrank_nll(R, s2, U).mean())


# --- the estimate is the maximum-likelihood estimate ------------------------------------------------------
def test_ppca_estimate_equals_sklearn_pca_covariance_and_maximises_the_likelihood():
    from sklearn.decomposition import PCA

    n, d, r = 400, 12, 3
    R = _lowrank_residuals(n, d, r)
    S = R.T @ R / n
    s2, U = ppca_mle(S, r)
    cov = s2 * torch.eye(d) + U @ U.T
    # scikit-learn's probabilistic-PCA covariance; it centres the data and divides by n − 1, so give it the
    # zero-mean set [R; −R] (same second moment) and rescale its (2n − 1) denominator to our n
    sk = PCA(n_components=r, svd_solver="full").fit(torch.cat([R, -R]).numpy())
    want = torch.from_numpy(sk.get_covariance()) * (2 * n - 1) / (2 * n)
    torch.testing.assert_close(cov, want, rtol=1e-9, atol=1e-10)
    assert abs(float(s2) * (2 * n) / (2 * n - 1) - sk.noise_variance_) < 1e-10
    # the module's first fit on the same residuals is the same estimate
    v = build_variance(f"lowrank-r{r}", (1, 3, 4))
    v.burn_in = 0
    v.train()
    v(torch.zeros(n, 1, 3, 4), -R.reshape(1, n, 1, 3, 4))
    torch.testing.assert_close(v.covariance(), want, rtol=1e-9, atol=1e-10)

    best = _mean_loglik(R, s2, U)
    # perturbing U or σ² (in any direction) lowers the likelihood; rotating U (U ↦ UQ) does not change it
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        assert _mean_loglik(R, s2, U + 0.02 * torch.randn(U.shape, generator=g)) < best
        f = math.exp(0.05 * float(torch.randn((), generator=g)))
        assert _mean_loglik(R, s2 * f, U) < best
    Q, _ = torch.linalg.qr(torch.randn(r, r, generator=g))
    assert abs(_mean_loglik(R, s2, U @ Q) - best) < 1e-10
    # a direct numerical optimum over (log σ², U) from a random start reaches the closed form's likelihood, not more
    log_s2 = torch.zeros((), requires_grad=True)
    W = (0.1 * torch.randn(d, r, generator=g)).requires_grad_(True)
    opt = torch.optim.LBFGS([log_s2, W], max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = lowrank_nll(R, log_s2.exp(), W).mean()
        loss.backward()
        return loss

    opt.step(closure)
    num = -float(lowrank_nll(R, log_s2.exp(), W).mean().detach())
    assert num <= best + 1e-9 and num > best - 1e-6, (num, best)
    torch.testing.assert_close(log_s2.exp().detach() * torch.eye(d) + W.detach() @ W.detach().T, cov,
                               rtol=0, atol=1e-4)


def test_ppca_clamps_and_floors():
    """Rank-deficient S: σ̂² at the floor; U's columns never imaginary (λ_j − σ̂² clamped at 0)."""
    R = _lowrank_residuals(3, 10, 2, noise=0.0)  # 3 vectors: S has rank ≤ 3
    s2, U = ppca_mle(R.T @ R / 3, 5, sigma2_floor=1e-6)
    assert float(s2) == 1e-6
    assert torch.isfinite(U).all() and int((U.pow(2).sum(0) > 1e-12).sum()) <= 3
    with pytest.raises(ValueError, match="rank"):
        ppca_mle(torch.eye(4), 4)


# --- the O(d·r) log-density --------------------------------------------------------------------------------
def test_woodbury_log_density_equals_dense_multivariate_normal():
    d, r = 12, 3
    g = torch.Generator().manual_seed(2)
    U = torch.randn(d, r, generator=g)  # not orthogonal: the general Woodbury path
    s2 = torch.tensor(0.3)
    cov = s2 * torch.eye(d) + U @ U.T
    res = torch.randn(2, 5, 1, 3, 4, generator=g)
    mvn = MultivariateNormal(torch.zeros(d), covariance_matrix=cov)
    want = -mvn.log_prob(res.reshape(2, 5, d))
    v = build_variance("lowrank-r3", (1, 3, 4))
    factor = v.pack(s2, U)
    got = v.nll(res, v.broadcast(factor, res))
    assert got.shape == (2, 5)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(v.log_prob(torch.zeros(5, 1, 3, 4), -res, factor), -want, rtol=0, atol=1e-10)
    lr = LowRankMultivariateNormal(torch.zeros(d), U, torch.full((d,), float(s2)))
    torch.testing.assert_close(got, -lr.log_prob(res.reshape(2, 5, d)), rtol=0, atol=1e-10)
    # rank 0: the isotropic Gaussian
    iso = -MultivariateNormal(torch.zeros(d), covariance_matrix=s2 * torch.eye(d)).log_prob(res.reshape(2, 5, d))
    torch.testing.assert_close(lowrank_nll(res.reshape(2, 5, d), s2, U[:, :0]), iso, rtol=0, atol=1e-10)
    # symmetric whitening: Σ^{-1/2} (Σ^{1/2} e) = e
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs @ torch.diag(evals.sqrt()) @ evecs.T
    e = torch.randn(7, d, generator=g)
    torch.testing.assert_close(v.whiten((e @ root).reshape(7, 1, 3, 4), factor).reshape(7, d), e, rtol=0, atol=1e-10)


# --- rank 0 is Iso-I -----------------------------------------------------------------------------------
def test_rank_zero_is_iso_i():
    shape = (2, 3, 4)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, *shape, generator=g)
    mu0 = torch.rand(3, 5, *shape, generator=g)
    lo = build_variance("lowrank-r0", shape)
    iso = build_variance("iso-i", shape)
    assert isinstance(lo, LowRankI) and lo.rank == 0
    mu_a, mu_b = mu0.clone().requires_grad_(True), mu0.clone().requires_grad_(True)
    out_lo, out_iso = lo(x, mu_a), iso(x, mu_b)
    assert abs(float(out_lo.rec.detach()) - float(out_iso.rec.detach())) < 1e-10
    torch.testing.assert_close(out_lo.sigma2, out_iso.sigma2.expand(shape), rtol=1e-12, atol=0)
    # the envelope theorem: the gradient at the frozen estimate equals Iso-I's gradient through its estimate
    ga, = torch.autograd.grad(out_lo.rec, mu_a)
    gb, = torch.autograd.grad(out_iso.rec, mu_b)
    torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-12)
    # and the evaluation density is Iso-I's at the same σ²
    lo.eval(), iso.eval()
    mu2 = torch.rand(2, 5, *shape, generator=g)
    torch.testing.assert_close(lo.log_prob(x, mu2, lo.eval_sigma2(x, mu2)), iso.log_prob(x, mu2, iso.eval_sigma2(x, mu2)),
                               rtol=0, atol=1e-10)


# --- the running S: the rank is not capped by the batch ------------------------------------------------------
def test_running_second_moment_lets_rank_exceed_batch_size():
    shape, batch, r = (1, 4, 4), 4, 8
    v = build_variance(f"lowrank-r{r}", shape)
    v.refresh = 3
    assert v.burn_in == 16  # d residual vectors before U is fitted
    v.train()
    g = torch.Generator().manual_seed(4)
    R = _lowrank_residuals(40, 16, 12, noise=0.01, seed=5)
    fits = []
    for step in range(8):
        res = R[step * batch:(step + 1) * batch].reshape(1, batch, *shape)
        single = res.reshape(batch, 16)
        assert int((torch.linalg.eigvalsh(single.T @ single / batch) > 1e-10).sum()) <= batch  # one batch: rank ≤ 4
        before = v.running_S.clone()
        v(torch.zeros(batch, *shape), -res)
        assert not torch.equal(before, v.running_S)  # every training step folds its batch into S
        s2, U = v.factor()
        fits.append(U.clone())
        if step < 3:  # burn-in: 4, 8, 12 vectors seen < 16: the rank-0 (Iso-I) estimate
            assert float(U.abs().max()) == 0.0
    assert int(v.fitted_step) == 6  # first fit at step 3 (16 vectors seen), refreshed 3 steps later
    torch.testing.assert_close(fits[3], fits[4])  # the stored estimate between fits
    torch.testing.assert_close(fits[4], fits[5])
    assert not torch.allclose(fits[5], fits[6])
    evals = torch.linalg.eigvalsh(v.running_S)
    assert int((evals > 1e-8 * float(evals.max())).sum()) > batch
    _, U = v.factor()
    assert int((U.pow(2).sum(0) > 1e-12).sum()) == r > batch  # all 8 columns of U are used
    cov_rank = int((torch.linalg.eigvalsh(U @ U.T) > 1e-12).sum())
    assert cov_rank == r
    # evaluation mode neither folds the batch in nor refits
    v.eval()
    S, fac = v.running_S.clone(), v.running_sigma2.clone()
    v(torch.zeros(batch, *shape), torch.randn(1, batch, *shape, generator=g))
    assert torch.equal(S, v.running_S) and torch.equal(fac, v.running_sigma2)


# --- registry ------------------------------------------------------------------------------------------
def test_names_models_and_modes():
    assert "lowrank" in VARIANCES
    assert build_variance("lowrank", (1, 4, 4)).rank == LowRankI.DEFAULT_RANK
    assert build_variance("LowRank_r16", (1, 8, 8)).rank == 16
    with pytest.raises(ValueError, match="lowrank-r<k>"):
        build_variance("iso-i-r3", (1, 4, 4))
    with pytest.raises(ValueError, match="rank"):
        build_variance("lowrank-r16", (1, 2, 2))
    with pytest.raises(ValueError, match="mle"):
        build_variance("lowrank-r2", (1, 4, 4), mode="trainable")
    for r in (1, 4, 16, 64):
        spec = MODEL_REGISTRY[f"lowrank-r{r}"]
        assert "mnist" in spec.datasets and spec.group == "beyond_paper"
        assert "d×d" not in spec.misfit("mnist") and "at most 1,024" in spec.misfit("celeba64")  # its d×d buffer
    m = build_model("lowrank-r16", "mnist")
    assert isinstance(m, GaussianVAE) and m.variance.rank == 16 and m.variance.running_S.shape == (784, 784)
    # its host-side refresh schedule cannot run under vmap: two such models never share a batched group
    from vaebook.train import TrainConfig
    from vaebook.train.batched import batch_key

    x, cfg = torch.rand(8, 1, 28, 28), TrainConfig(epochs=1, batch_size=4, device="cpu")
    key = lambda name: batch_key(build_model(name, "d1"), x, cfg)  # noqa: E731
    assert key("lowrank-r4") != key("lowrank-r4") and key("mle-iso-i") == key("mle-iso-i")


# --- a GaussianVAE trains with it ------------------------------------------------------------------------
def test_gaussian_vae_d1_trains_with_lowrank_sigma():
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)
    model = GaussianVAE("d1", variance="lowrank-r4", mode="mle")
    model.variance.burn_in, model.variance.refresh = 48, 8  # fit U after 3 steps of 16 (784 by default)
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    c = 8 + 12 * torch.rand(16, 2, generator=g)  # blobs at random centres
    x = torch.exp(-((xx - c[:, 0, None, None]) ** 2 + (yy - c[:, 1, None, None]) ** 2) / 20.0).unsqueeze(1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    model.train()
    for _ in range(10):
        out = model.loss(x, g)
        opt.zero_grad()
        out.total.backward()
        opt.step()
        losses.append(float(out.total.detach()))
        assert math.isfinite(losses[-1])
    assert int(model.variance.fitted_step) >= 0 and float(model.variance.factor()[1].abs().max()) > 0
    assert sum(losses[-3:]) / 3 < losses[0] - 100, losses
    model.eval()
    with torch.no_grad():
        lp = model.decoder_log_prob(x[:4], model.encode(x[:4]).mean.unsqueeze(0))
    assert lp.shape == (1, 4) and torch.isfinite(lp).all()
