"""A paired difference of two models over training seeds, each seed's difference itself measured with error.

Per seed k both models are scored on the same items (test images, or bootstrap replicates of FID/KID), giving a
paired difference d_k with its standard error se_k from those items. Two sources of uncertainty remain:

* training: d_k varies with the seed; its sample variance s² over n seeds gives s²/n for the mean;
* evaluation: every seed is scored on the *same* test images, so the items' sampling error does not average out
  over seeds (it is shared); it is bounded by the mean of se_k² (fully correlated across seeds).

:func:`combine_seeds` adds both, se² = s²/n + mean(se_k²) (conservative: the second term is not divided by n), and
gives mean(d) ± t_{n−1, 97.5 %}·se (the normal quantile for one seed, where s² is unknown and the interval covers the
evaluation error alone — the result says so with ``n_seeds = 1``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def combine_seeds(diffs: Sequence[float], ses: Sequence[float], level: float = 0.95) -> dict:
    """``{"diff", "se", "lo", "hi", "n_seeds", "s_between", "se_within", "excludes_zero"}`` for per-seed paired
    differences ``diffs`` with their evaluation standard errors ``ses`` (see the module docstring)."""
    d, s = np.asarray(diffs, dtype=float), np.asarray(ses, dtype=float)
    if d.ndim != 1 or d.shape != s.shape or len(d) == 0:
        raise ValueError(f"diffs and ses must be two 1-d sequences of the same non-zero length, got {d.shape} and "
                         f"{s.shape}")
    if not (np.isfinite(d).all() and np.isfinite(s).all() and (s >= 0).all()):
        raise ValueError("diffs must be finite and ses finite and >= 0; drop a seed that did not train before "
                         "combining")
    if not 0.5 < level < 1:
        raise ValueError(f"level must be in (0.5, 1), got {level}")
    n = len(d)
    between = float(d.std(ddof=1)) if n > 1 else 0.0
    within = float(np.sqrt(np.mean(s ** 2)))
    se = math.sqrt(between ** 2 / n + within ** 2)
    q = float(stats.t.ppf(0.5 + level / 2, n - 1)) if n > 1 else float(stats.norm.ppf(0.5 + level / 2))
    mean = float(d.mean())
    lo, hi = mean - q * se, mean + q * se
    return {"diff": mean, "se": se, "lo": lo, "hi": hi, "n_seeds": n, "s_between": between, "se_within": within,
            "excludes_zero": bool(lo > 0 or hi < 0)}


def paired_items(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the item-wise differences ``a − b`` (the same items, e.g. test images)."""
    x = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"paired_items needs two equal-length sequences of at least 2 items, got {len(x)}")
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))


def paired_replicates(value_a: float, value_b: float, boot_a: Sequence[float], boot_b: Sequence[float]) -> tuple:
    """``value_a − value_b`` and the standard deviation of the paired bootstrap replicates' differences (its s.e.)."""
    x = np.asarray(boot_a, dtype=float) - np.asarray(boot_b, dtype=float)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"paired_replicates needs two equal-length replicate lists of at least 2, got {len(x)}")
    x = x[np.isfinite(x)]
    return float(value_a) - float(value_b), float(x.std(ddof=1)) if len(x) > 1 else math.nan


__all__ = ["combine_seeds", "paired_items", "paired_replicates"]
