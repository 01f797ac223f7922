"""How sure is an FID or KID? Sampling spread at the run's N and paired differences of two models.

FID (Eq. 12) at a small sample size N carries two separate errors:

* a **bias** that shrinks like 1/N (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score"): even
  two sets of real images score well above 0 at N = 300. It shifts every model scored at the same N by a similar
  amount, so it is *not* the noise of a comparison;
* a **sampling spread**: another draw of N generated images (and of the reference) gives another value.

This module measures the spread by the bootstrap over Inception features (Efron & Tibshirani 1993): replicate b
resamples the generated features and the reference features with replacement, with index draws that depend only on
``(seed, b, N, M)``. Two models scored with the same seed therefore share every replicate's indices, which is the
*paired* bootstrap: the generators of this library draw their latent codes from the same seed for every model, and
the reference set is common, so the difference FID_A − FID_B in replicate b keeps their shared part out of its
spread. A win needs the interval of the difference to exclude zero (:func:`paired_difference`).

FID on N×d features with N ≤ d is computed exactly in the N-dimensional span of the samples: with A, B the centred
feature matrices (N×d, M×d), the eigenvalues of Σ_A Σ_B are the squared singular values of A Bᵀ / √((N−1)(M−1)),
so tr (Σ_A Σ_B)^{1/2} = ‖A Bᵀ‖_* / √((N−1)(M−1)) (nuclear norm): no d×d matrix square root, so a thousand
replicates take seconds (:func:`fid_exact`; checked against pytorch-fid in the tests).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

#: two-sided normal quantile for the 95 % intervals
Z95 = 1.959963984540054


def _check_features(name: str, f) -> np.ndarray:
    a = np.asarray(f, dtype=np.float64)
    if a.ndim != 2 or len(a) < 2:
        raise ValueError(f"{name} must be an N×d feature array with N >= 2, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or inf; recompute the Inception features")
    return a


def fid_exact(feats1, feats2) -> float:
    """FID (Eq. 12) of two feature sets, exactly, through the nuclear norm of the cross-product of the centred
    features (module docstring). Equal to pytorch-fid's value up to its square-root round-off."""
    a, b = _check_features("feats1", feats1), _check_features("feats2", feats2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats1 and feats2 need the same feature size, got {a.shape[1]} and {b.shape[1]}")
    return _fid_centred(a - a.mean(0), b - b.mean(0), a.mean(0) - b.mean(0))


def _fid_centred(ac: np.ndarray, bc: np.ndarray, dmu: np.ndarray) -> float:
    n, m = len(ac), len(bc)
    tr_a = float((ac * ac).sum()) / (n - 1)
    tr_b = float((bc * bc).sum()) / (m - 1)
    cross = np.linalg.svd(ac @ bc.T, compute_uv=False).sum() / math.sqrt((n - 1) * (m - 1))
    return float(dmu @ dmu + tr_a + tr_b - 2.0 * cross)


def _kid_indexed(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray, i: np.ndarray, j: np.ndarray) -> float:
    """Unbiased MMD² from precomputed kernel matrices on the resampled indices ``i`` (generated) and ``j``
    (reference); pairs of the same original sample (a bootstrap duplicate or the diagonal) are left out."""
    sx = kxx[np.ix_(i, i)]
    sy = kyy[np.ix_(j, j)]
    mx, my = i[:, None] != i[None, :], j[:, None] != j[None, :]
    if not mx.any() or not my.any():  # a replicate that drew one sample N times: no pair to average
        return math.nan
    return float(sx[mx].mean() + sy[my].mean() - 2.0 * kxy[np.ix_(i, j)].mean())


def boot_indices(n: int, m: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap index draws ``(n_boot×n, n_boot×m)``: a function of ``(n, m, n_boot, seed)`` only, so every
    model scored at the same seed and sizes gets the same replicates (the paired bootstrap)."""
    if n < 2 or m < 2 or n_boot < 1:
        raise ValueError(f"bootstrap needs n >= 2, m >= 2 and n_boot >= 1, got n={n}, m={m}, n_boot={n_boot}")
    rng = np.random.default_rng([int(seed), 0x5EED, n, m])
    return rng.integers(0, n, size=(n_boot, n)), rng.integers(0, m, size=(n_boot, m))


def bootstrap_fid_kid(gen, ref, n_boot: int = 200, seed: int = 0) -> dict:
    """FID and KID of ``gen`` against ``ref`` with their bootstrap replicates.

    Returns ``{"fid", "kid", "fid_boot", "kid_boot", "fid_sd", "kid_sd", "n", "m"}``: the point values on all
    features, ``n_boot`` replicate values each, and the replicates' standard deviations (the sampling spread at
    this N and M). KID uses the cubic polynomial kernel (aᵀb/d + 1)³ of Bińkowski et al. 2018 on all samples.
    """
    a, b = _check_features("gen", gen), _check_features("ref", ref)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"gen and ref need the same feature size, got {a.shape[1]} and {b.shape[1]}")
    n, m, d = len(a), len(b), a.shape[1]
    kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
    all_i, all_j = np.arange(n), np.arange(m)
    fid = fid_exact(a, b)
    kid = _kid_indexed(kxx, kyy, kxy, all_i, all_j)
    ii, jj = boot_indices(n, m, int(n_boot), seed)
    fb, kb = [], []
    for i, j in zip(ii, jj):
        x, y = a[i], b[j]
        fb.append(_fid_centred(x - x.mean(0), y - y.mean(0), x.mean(0) - y.mean(0)))
        kb.append(_kid_indexed(kxx, kyy, kxy, i, j))
    fb, kb = np.asarray(fb), np.asarray(kb)
    return {"fid": fid, "kid": kid, "fid_boot": fb.tolist(), "kid_boot": kb.tolist(),
            "fid_sd": float(fb.std(ddof=1)) if len(fb) > 1 else math.nan,
            "kid_sd": float(np.nanstd(kb, ddof=1)) if np.isfinite(kb).sum() > 1 else math.nan, "n": n, "m": m}


def paired_difference(value_a: float, value_b: float, boot_a: Sequence[float], boot_b: Sequence[float],
                      z: float = Z95) -> dict:
    """The difference ``value_a − value_b`` of two models' scores with its interval from their paired
    replicates: ``diff ± z·sd(boot_a − boot_b)``. ``{"diff", "sd", "lo", "hi", "excludes_zero", "n_boot"}``.

    The replicates must come from the same index draws (:func:`boot_indices` at the same seed and sizes);
    replicate lists of different lengths are refused."""
    ba, bb = np.asarray(boot_a, np.float64), np.asarray(boot_b, np.float64)
    if ba.ndim != 1 or ba.shape != bb.shape or len(ba) < 2:
        raise ValueError(f"paired replicates must be two 1-d lists of the same length >= 2, got {ba.shape} and "
                         f"{bb.shape}; score both models with the same n_boot and seed")
    if not (np.isfinite(ba).all() and np.isfinite(bb).all() and math.isfinite(value_a) and math.isfinite(value_b)):
        raise ValueError("paired_difference got a non-finite score or replicate")
    diff = float(value_a) - float(value_b)
    sd = float((ba - bb).std(ddof=1))
    lo, hi = diff - z * sd, diff + z * sd
    return {"diff": diff, "sd": sd, "lo": lo, "hi": hi, "excludes_zero": bool(lo > 0 or hi < 0), "n_boot": len(ba)}


def se_difference(value_a: float, value_b: float, se_a: float, se_b: float, z: float = Z95,
                  paired_se: Optional[float] = None) -> dict:
    """The difference of two means with a 95 % interval. With ``paired_se`` (the standard error of the per-item
    differences) the interval is the paired one; without it, the bound se_a + se_b, which holds whatever the
    correlation of the two (Var(A − B) ≤ (sd_A + sd_B)²): conservative, never narrower than the paired one.
    ``{"diff", "se", "lo", "hi", "excludes_zero", "paired"}``."""
    vals = (value_a, value_b, se_a, se_b) + (() if paired_se is None else (paired_se,))
    if not all(math.isfinite(float(v)) for v in vals) or se_a < 0 or se_b < 0:
        raise ValueError(f"se_difference needs finite values and non-negative standard errors, got {vals}")
    se = float(paired_se) if paired_se is not None else float(se_a) + float(se_b)
    diff = float(value_a) - float(value_b)
    lo, hi = diff - z * se, diff + z * se
    return {"diff": diff, "se": se, "lo": lo, "hi": hi, "excludes_zero": bool(lo > 0 or hi < 0),
            "paired": paired_se is not None}


__all__ = ["fid_exact", "boot_indices", "bootstrap_fid_kid", "paired_difference", "se_difference", "Z95"]
