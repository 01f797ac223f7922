"""Table 7's claims read with their uncertainty, on a valid bound.

The paper's protocol for the −D rows estimates Σx from the scored test image itself, so its number is not a bound
on −log p(x) (see :mod:`vaebook.experiments.nll`); a claim about likelihoods is read here on the *valid* bound
(``nll_valid``: Σx fixed before the test image is seen), and the paper-protocol reading is reported beside it.

Each comparison of two rows is a difference of mean per-image bounds on the same test images and the same z samples,
with its 95 % interval (:func:`vaebook.metrics.fid_spread.se_difference`): paired, from the per-image bounds
(``metrics["per_image"]``), when the results hold them; otherwise the bound se_A + se_B from the two rows' own
standard errors, which holds whatever their correlation (wider, never narrower, than the paired one). A row wins
only when the interval excludes zero.

The constant of the cell rule: every Gaussian NLL contains D/2·ln 2π (720.4 nats on MNIST); a match within 10 % of
the σx² = 1 row's 736.6 would be met by the constant alone, so the cell tolerance is read on the values minus it
(:func:`gaussian_constant`, used by ``_section6.judge(offset=...)``).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from vaebook.data import dataset_spec
from vaebook.experiments import _section6 as scale
from vaebook.lab.display import fmt
from vaebook.lab.status import noisy_flags_status
from vaebook.metrics.fid_spread import se_difference


def gaussian_constant(dataset: str) -> float:
    """D/2 · ln 2π: the part of every Gaussian −log N(x; μ, Σ) that depends on no model (D pixels of ``dataset``)."""
    return 0.5 * float(np.prod(dataset_spec(dataset).x_shape)) * math.log(2 * math.pi)


def nll_pair(metrics: Optional[dict], d: str, metric: str, a: str, b: str) -> Optional[dict]:
    """Row ``a`` − row ``b`` of one NLL column with its 95 % interval: :func:`se_difference`'s dict plus ``outcome``
    (``"yes"``: a lower, ``"no"``: a higher, ``"tie"``: the interval includes 0) and ``text``; None when missing."""
    vals = ((metrics or {}).get("values") or {}).get(d) or {}
    va, vb = vals.get(a) or {}, vals.get(b) or {}
    se_key = "nll_stderr" if metric == "nll" else "nll_valid_stderr"
    if metric not in va or metric not in vb or va.get(se_key) is None or vb.get(se_key) is None:
        return None
    per = (((metrics or {}).get("per_image") or {}).get(d) or {})
    pa, pb = (per.get(a) or {}).get(metric), (per.get(b) or {}).get(metric)
    paired_se = None
    if pa and pb and len(pa) == len(pb) and len(pa) > 1:
        dd = np.asarray(pa, float) - np.asarray(pb, float)
        paired_se = float(dd.std(ddof=1) / math.sqrt(len(dd)))
    r = se_difference(float(va[metric]), float(vb[metric]), float(va[se_key]), float(vb[se_key]),
                      paired_se=paired_se)
    r["outcome"] = "yes" if r["hi"] < 0 else ("no" if r["lo"] > 0 else "tie")
    kind = "paired" if r["paired"] else "se_A + se_B bound"
    r["text"] = (f"{scale.display(a)} − {scale.display(b)} = {fmt(r['diff'], '.4g')} "
                 f"[{fmt(r['lo'], '.4g')}, {fmt(r['hi'], '.4g')}] ({kind})")
    return r


def _rows(metrics: Optional[dict], d: str, metric: str) -> list:
    vals = ((metrics or {}).get("values") or {}).get(d) or {}
    return [m for m, v in vals.items() if metric in v and v[metric] is not None and not math.isnan(v[metric])]


def every_mle_below_vae(metrics: Optional[dict], datasets, metric: str = "nll_valid") -> tuple:
    """(flag, text) per dataset pooled into (status, evidence): every MLE row's bound below the σx² = 1 VAE's with
    the interval of the difference below zero ("yes"); some interval above zero ("no"); else "tie"."""
    flags, parts = [], []
    for d in datasets:
        rows = _rows(metrics, d, metric)
        mle = [r for r in rows if r.startswith("mle-")]
        if "vae-gaussian" not in rows or not mle:
            continue
        prs = [nll_pair(metrics, d, metric, r, "vae-gaussian") for r in mle]
        outs = [p["outcome"] for p in prs]
        flags.append("no" if "no" in outs else ("tie" if "tie" in outs else "yes"))
        parts.append(f"{scale.dataset_label(d)}: {outs.count('yes')} of {len(outs)} MLE rows clearly below σx² = 1, "
                     f"{outs.count('tie')} undecided, {outs.count('no')} above ({'; '.join(p['text'] for p in prs)})")
    if not flags:
        return "not run", f"the σx² = 1 VAE or the MLE rows have no {metric} with a standard error in these results"
    return noisy_flags_status(flags), "; ".join(parts)


def diag_d_lowest(metrics: Optional[dict], datasets, metric: str = "nll_valid") -> tuple:
    """(status, evidence): MLE Diag-D's bound is the lowest of the MLE rows, each paired interval excluding zero."""
    flags, parts = [], []
    for d in datasets:
        mle = [r for r in _rows(metrics, d, metric) if r.startswith("mle-")]
        if "mle-diag-d" not in mle or len(mle) < 2:
            continue
        prs = [nll_pair(metrics, d, metric, "mle-diag-d", r) for r in mle if r != "mle-diag-d"]
        outs = [p["outcome"] for p in prs]
        flags.append("no" if "no" in outs else ("tie" if "tie" in outs else "yes"))
        vals = metrics["values"][d]
        low = min(mle, key=lambda r: vals[r][metric])
        parts.append(f"{scale.dataset_label(d)}: lowest {scale.display(low)}; Diag-D clearly below {outs.count('yes')} "
                     f"of {len(outs)} other MLE rows, {outs.count('no')} clearly below it "
                     f"({'; '.join(p['text'] for p in prs)})")
    if not flags:
        return "not run", f"fewer than two MLE rows with Diag-D have {metric} with a standard error in these results"
    return noisy_flags_status(flags), "; ".join(parts)


def paper_reading(t: pd.DataFrame, datasets) -> str:
    """The same two orderings on the paper's own Table 7 (no uncertainty is printed there)."""
    bits = []
    for d in datasets:
        p = scale.cells(t, d, "nll", "paper")
        mle = {r: v for r, v in p.items() if r.startswith("mle-")}
        if "vae-gaussian" in p and mle:
            bits.append(f"{scale.dataset_label(d)}: {sum(v < p['vae-gaussian'] for v in mle.values())} of {len(mle)} "
                        f"MLE rows below σx² = 1, lowest {scale.display(min(mle, key=mle.get))}")
    return "paper (its protocol, no uncertainty printed): " + ("; ".join(bits) or "–")


__all__ = ["gaussian_constant", "nll_pair", "every_mle_below_vae", "diag_d_lowest", "paper_reading"]
