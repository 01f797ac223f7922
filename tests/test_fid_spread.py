"""FID/KID spread and paired differences (vaebook.metrics.fid_spread): closed forms and independent computations."""
import math

import numpy as np
import pytest

from vaebook.metrics.fid import fid_from_features
from vaebook.metrics.fid_spread import (Z95, boot_indices, bootstrap_fid_kid, fid_exact, paired_difference,
                                        se_difference)


def _feats(seed, n, d, shift=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(size=(n, d)) * scale + shift


def test_fid_exact_equals_pytorch_fid_with_more_samples_than_features():
    a, b = _feats(0, 300, 32), _feats(1, 500, 32, 0.3, 1.2)
    assert fid_exact(a, b) == pytest.approx(fid_from_features(a, b), rel=1e-9)


def test_fid_exact_equals_pytorch_fid_with_fewer_samples_than_features():
    # N < d: both covariances are singular; pytorch-fid's sqrtm (with its eps retry) and the nuclear norm agree
    a, b = _feats(2, 40, 128), _feats(3, 60, 128, 0.1, 0.9)
    assert fid_exact(a, b) == pytest.approx(fid_from_features(a, b), rel=1e-6)


def test_fid_exact_is_zero_for_identical_sets_and_the_mean_shift_for_translated_ones():
    a = _feats(4, 50, 8)
    assert fid_exact(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.arange(8.0)
    assert fid_exact(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-9)  # same Σ: FID = ‖Δμ‖²


def test_bootstrap_point_values_and_spread():
    a, b = _feats(5, 120, 16, 0.2), _feats(6, 200, 16)
    r = bootstrap_fid_kid(a, b, n_boot=40, seed=0)
    assert r["fid"] == pytest.approx(fid_from_features(a, b), rel=1e-9)
    # KID on all samples = the mean of kid_from_features' estimates on one subset of the full size
    assert r["kid"] == pytest.approx(_kid_all(a, b), rel=1e-9)
    assert len(r["fid_boot"]) == 40 and r["fid_sd"] > 0 and r["kid_sd"] > 0
    # more samples, less spread (the sd of FID shrinks roughly like 1/sqrt(N))
    big = bootstrap_fid_kid(_feats(7, 960, 16, 0.2), _feats(8, 1600, 16), n_boot=12, seed=0)
    assert big["fid_sd"] < r["fid_sd"] / 2


def _kid_all(a, b):
    d = a.shape[1]
    kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
    n, m = len(a), len(b)
    return (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()


def test_kid_on_all_samples_matches_its_definition():
    a, b = _feats(9, 30, 6, 0.5), _feats(10, 45, 6)
    assert bootstrap_fid_kid(a, b, n_boot=2, seed=0)["kid"] == pytest.approx(_kid_all(a, b), rel=1e-12)


def test_boot_indices_depend_only_on_seed_and_sizes():
    i1, j1 = boot_indices(10, 20, 5, seed=3)
    i2, j2 = boot_indices(10, 20, 5, seed=3)
    assert (i1 == i2).all() and (j1 == j2).all() and i1.shape == (5, 10) and j1.max() < 20
    assert not (boot_indices(10, 20, 5, seed=4)[0] == i1).all()
    with pytest.raises(ValueError, match="n_boot"):
        boot_indices(10, 20, 0, seed=0)


def test_paired_difference_of_two_models_sharing_their_draws():
    ref = _feats(11, 200, 8)
    a = _feats(12, 100, 8, 0.3)
    same_a = bootstrap_fid_kid(a, ref, 60, seed=1)
    # the same samples scored twice: the paired difference is exactly 0 with a zero-width interval (a tie)
    d0 = paired_difference(same_a["fid"], same_a["fid"], same_a["fid_boot"], same_a["fid_boot"])
    assert d0["diff"] == 0 and d0["sd"] == 0 and not d0["excludes_zero"]
    # the same latent draws pushed further from the reference: clearly worse, interval above 0
    b = bootstrap_fid_kid(a + 0.5, ref, 60, seed=1)
    d = paired_difference(b["fid"], same_a["fid"], b["fid_boot"], same_a["fid_boot"])
    assert d["diff"] > 0 and d["lo"] > 0 and d["excludes_zero"]
    assert d["hi"] - d["lo"] == pytest.approx(2 * Z95 * d["sd"])
    # a tiny shift: the interval includes 0
    c = bootstrap_fid_kid(a + 1e-4 * _feats(13, 100, 8), ref, 60, seed=1)
    tiny = paired_difference(c["fid"], same_a["fid"], c["fid_boot"], same_a["fid_boot"])
    assert abs(tiny["diff"]) < 0.01 and (tiny["lo"] <= 0 <= tiny["hi"] or abs(tiny["diff"]) < 1e-3)


def test_paired_difference_refuses_unpaired_replicates():
    with pytest.raises(ValueError, match="same n_boot and seed"):
        paired_difference(1.0, 2.0, [1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        paired_difference(1.0, math.nan, [1.0, 2.0], [1.0, 2.0])


def test_se_difference_closed_forms():
    # unpaired bound: se_A + se_B, which is never narrower than the paired s.e. of the differences
    r = se_difference(10.0, 4.0, 1.0, 2.0)
    assert r["se"] == 3.0 and r["lo"] == pytest.approx(6.0 - Z95 * 3.0) and r["excludes_zero"] and not r["paired"]
    x = np.random.default_rng(0).normal(size=400)
    y = x + np.random.default_rng(1).normal(scale=0.1, size=400) + 0.05
    se = lambda v: float(v.std(ddof=1) / math.sqrt(len(v)))  # noqa: E731
    p = se_difference(x.mean(), y.mean(), se(x), se(y), paired_se=se(x - y))
    u = se_difference(x.mean(), y.mean(), se(x), se(y))
    assert p["se"] < u["se"] / 5 and p["excludes_zero"] and not u["excludes_zero"]  # pairing decides this one
    with pytest.raises(ValueError, match="non-negative"):
        se_difference(1.0, 2.0, -1.0, 1.0)
