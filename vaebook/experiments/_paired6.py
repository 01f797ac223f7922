"""Section 6's comparisons of two models with their uncertainty, and the claim rules of Table 4 built on them.

Every claim of Tables 4–5 compares two models' scores. A comparison here is a *paired difference with its 95 %
interval* (:mod:`vaebook.metrics.fid_spread`):

* FID/KID: the paired bootstrap over the two models' generated samples and the common reference
  (``metrics["bootstrap"][dataset]["replicates"][model][metric]``, written by the ``generation`` page);
* MSE: the per-image squared errors of the same test images (``metrics["bootstrap"][dataset]["per_image"]``), the
  standard error of their per-image differences.

An outcome is ``"yes"`` (row a lower, the interval below zero), ``"no"`` (the interval above zero) or ``"tie"``
(the interval includes zero). Results without replicates (runs before they were recorded) give ``"tie"`` for every
pair: a difference without an interval decides nothing. The real-vs-real FID at the run's N is FID's *bias* at that
N, reported beside the scores, never used as a noise level.

A trainable Σx **did not converge** when its calibration, the mean of r²/σx² over test pixels (1 at a stationary
point of the likelihood in log σx²), is more than :data:`CONVERGED_FACTOR` × away from 1 (runs without it: a −I
σx² more than that far from its test MSE / D): its comparisons are left out of the claims and the evidence says so.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from vaebook.experiments import _section6 as scale
from vaebook.lab.compare import spearman
from vaebook.lab.display import fmt
from vaebook.data import dataset_spec
from vaebook.lab.status import noisy_flags_status, noisy_tally_status
from vaebook.metrics.fid_spread import Z95, paired_difference

#: a trainable −I Σx counts as converged when its σx² is within this factor of its own MSE / D
CONVERGED_FACTOR = 2.0
MLE_ROWS = scale.MLE_ROWS
FID_SOURCES = ("fid_prior", "fid_2nd_vae", "fid_gmm10", "fid_gmm100")


def _boot(metrics: Optional[dict], dataset: str) -> dict:
    return ((metrics or {}).get("bootstrap") or {}).get(dataset) or {}


def pair(t: pd.DataFrame, metrics: Optional[dict], d: str, metric: str, a: str, b: str) -> Optional[dict]:
    """Our ``a − b`` in one column with its 95 % interval and outcome, or None when a value is missing.
    ``{"diff", "lo", "hi", "outcome", "text"}``; ``lo``/``hi`` are NaN and the outcome ``"tie"`` without replicates."""
    v = scale.cells(t, d, metric, "ours")
    if a not in v or b not in v:
        return None
    diff, boot = v[a] - v[b], _boot(metrics, d)
    lo = hi = math.nan
    if metric == "mse":
        pa, pb = [((boot.get("per_image") or {}).get(r) or {}).get("mse") for r in (a, b)]
        if pa and pb and len(pa) == len(pb) and len(pa) > 1:
            dd = np.asarray(pa, float) - np.asarray(pb, float)
            se = float(dd.std(ddof=1) / math.sqrt(len(dd)))
            lo, hi = diff - Z95 * se, diff + Z95 * se
    else:
        ra, rb = [((boot.get("replicates") or {}).get(r) or {}).get(metric) for r in (a, b)]
        if ra and rb and len(ra) == len(rb) and len(ra) > 1:
            pdiff = paired_difference(v[a], v[b], ra, rb)
            lo, hi = pdiff["lo"], pdiff["hi"]
    if math.isnan(lo):
        out, ci = "tie", "no interval recorded"
    else:
        out = "yes" if hi < 0 else ("no" if lo > 0 else "tie")
        ci = f"[{fmt(lo, '.3g')}, {fmt(hi, '.3g')}]"
    return {"diff": diff, "lo": lo, "hi": hi, "outcome": out,
            "text": f"{scale.display(a)} − {scale.display(b)} = {fmt(diff, '.3g')} {ci}"}


def paper_lower(t: pd.DataFrame, d: str, metric: str, a: str, b: str) -> Optional[bool]:
    """Whether the paper prints a lower value for ``a`` than for ``b`` (None when one is missing)."""
    v = scale.cells(t, d, metric, "paper")
    return None if a not in v or b not in v else bool(v[a] < v[b])


def converged(metrics: Optional[dict], t: pd.DataFrame, d: str, row: str) -> tuple:
    """(None | bool, why): whether a trainable Σx learned its variance. With the run's calibration (mean r²/σx²
    on test reconstructions, :func:`vaebook.experiments.generation.test_variance`): converged when it lies within
    :data:`CONVERGED_FACTOR` of 1, the value at a stationary point of the likelihood in log σx² — this reads any
    shape, −D heads included. Without it (older runs), for the −I shapes: σx² within :data:`CONVERGED_FACTOR` of
    the test MSE / D (where the gradient drives a scalar σx²). None for other rows or when nothing was recorded."""
    if not row.startswith("trainable-"):
        return None, ""
    v = (((metrics or {}).get("values") or {}).get(d, {}).get(row) or {})
    cal = v.get("calibration")
    if isinstance(cal, (int, float)) and math.isfinite(cal) and cal > 0:
        ok = 1 / CONVERGED_FACTOR <= cal <= CONVERGED_FACTOR
        return ok, (f"{scale.display(row)}: mean r²/σx² on test images {fmt(cal, '.3g')} (1 when the variance has "
                    f"converged{'' if ok else '; did not converge'})")
    if isinstance(cal, (int, float)) and not math.isfinite(cal):
        return False, f"{scale.display(row)}: mean r²/σx² on test images is infinite (did not converge)"
    s2, mse = v.get("sigma2"), scale.cells(t, d, "mse", "ours").get(row)
    if not row.endswith("-i") or s2 is None or mse is None:
        return None, ""
    target = mse / float(np.prod(dataset_spec(d).x_shape))
    ratio = float(s2) / target
    ok = 1 / CONVERGED_FACTOR <= ratio <= CONVERGED_FACTOR
    return ok, (f"{scale.display(row)}: learned σx² {fmt(s2, '.3g')} vs its MSE/D {fmt(target, '.3g')} "
                f"({fmt(ratio, '.3g')}×{'' if ok else ', did not converge'})")


def tally_pairs(outcomes: list) -> tuple:
    """(yes, tie, no) counts of a list of outcomes."""
    return outcomes.count("yes"), outcomes.count("tie"), outcomes.count("no")


def tally_claim(outs: list, paper: int, texts: list, none: str, head: str) -> tuple:
    """(status, evidence) of a claim the paper makes by a tally over cells: :func:`noisy_tally_status` of the clear
    wins and undecided cells against the paper's own tally; ``head`` is formatted with ``yes``, ``tie``, ``no``,
    ``n``; ``none``: the evidence when no cell could be compared ("not run")."""
    if not outs:
        return "not run", none
    yes, tie, no = tally_pairs(outs)
    return noisy_tally_status(yes, tie, paper, len(outs)), (
        head.format(yes=yes, tie=tie, no=no, n=len(outs)) + f"; paper {paper} of {len(outs)}. " + "; ".join(texts))


def mle_beats_unit_variance(t: pd.DataFrame, datasets, metrics: Optional[dict] = None) -> tuple:
    """(status, evidence): MLE rows below the σx² = 1 VAE in the prior and GMM-10 FID cells: a win needs the paired
    difference's interval below zero; the paper's tally is read on its own numbers over the same cells."""
    outs, paper, texts = [], 0, []
    for d in datasets:
        for m in ("fid_prior", "fid_gmm10"):
            for r in (x for x in scale.cells(t, d, m) if x.startswith("mle-")):
                pr = pair(t, metrics, d, m, r, "vae-gaussian")
                if pr is None:
                    continue
                outs.append(pr["outcome"])
                paper += bool(paper_lower(t, d, m, r, "vae-gaussian"))
                texts.append(f"{m}: {pr['text']}")
    return tally_claim(outs, paper, texts, "the σx² = 1 VAE or the MLE rows were not run",
                       "MLE below σx² = 1 (95 % interval of the paired FID difference below 0) in {yes} of {n} cells, "
                       "{tie} with an interval that includes 0, {no} above")


def comparable_with_ae(t: pd.DataFrame, datasets, metrics: Optional[dict] = None, within: float = 0.10) -> tuple:
    """(status, evidence): per (dataset, MSE/FID column) the best MLE row is not worse than the best AE-type row by
    more than ``within`` of the latter: "yes" when the paired difference's upper bound is below that margin,
    "no" when its lower bound is above it, else "tie"; the paper's tally on its own numbers."""
    outs, paper, texts = [], 0, []
    for d in datasets:
        for m in ("mse",) + FID_SOURCES:
            o, p = scale.both(t, d, m)
            mle, ae = [r for r in o if r.startswith("mle-")], [r for r in o if scale.is_ae_type(r)]
            if not mle or not ae:
                continue
            bm, ba = min(mle, key=o.get), min(ae, key=o.get)
            pr, margin = pair(t, metrics, d, m, bm, ba), within * o[ba]
            if math.isnan(pr["lo"]):
                out = "tie"
            else:
                out = "yes" if pr["hi"] <= margin else ("no" if pr["lo"] > margin else "tie")
            outs.append(out)
            paper += min(p[r] for r in mle) <= (1 + within) * min(p[r] for r in ae)
            texts.append(f"{m}: {pr['text']} vs margin {fmt(margin, '.3g')}")
    return tally_claim(outs, paper, texts, "no column with both an MLE row and an AE/WAE/RAE row",
                       f"best MLE not worse than the best AE/WAE/RAE by more than {within:.0%} (whole interval) in "
                       "{yes} of {n} columns, {tie} undecided, {no} worse")


def mle_beats_trainable(t: pd.DataFrame, datasets, metrics: Optional[dict] = None) -> tuple:
    """(status, evidence): per dataset, MLE below its trainable twin in more than half of the FID cells with the
    interval below zero ("yes"), in at most half even counting undecided cells ("no"), else "tie". A trainable
    −I twin that did not converge (:func:`converged`) is left out."""
    flags, parts = [], []
    for d in datasets:
        outs, paper, notes, by_shape = [], 0, [], []
        for r in MLE_ROWS:
            twin = r.replace("mle-", "trainable-")
            ok, why = converged(metrics, t, d, twin)
            if why:
                notes.append(why)
            if ok is False:
                continue
            mine = []
            for m in FID_SOURCES:
                pr = pair(t, metrics, d, m, r, twin)
                if pr is None or paper_lower(t, d, m, r, twin) is None:
                    continue
                mine.append(pr["outcome"])
                paper += bool(paper_lower(t, d, m, r, twin))
            outs += mine
            mse = scale.cells(t, d, "mse", "ours")
            if mine:
                by_shape.append(f"{scale.display(r).split(' (')[0]} {mine.count('yes')} of {len(mine)}"
                                + (f" (MSE MLE {fmt(mse[r], '.3g')}, trainable {fmt(mse[twin], '.3g')})"
                                   if r in mse and twin in mse else ""))
        if not outs:
            parts.append(f"{scale.dataset_label(d)}: no converged pair" + (f" ({'; '.join(notes)})" if notes else ""))
            continue
        yes, tie, no = tally_pairs(outs)
        n = len(outs)
        flags.append("yes" if yes > n / 2 else ("no" if yes + tie <= n / 2 else "tie"))
        parts.append(f"{scale.dataset_label(d)}: {yes} of {n} FID cells with the interval below 0, {tie} undecided, "
                     f"{no} above (paper {paper} of {n}); clear wins per shape: {', '.join(by_shape)}"
                     + (f"; {'; '.join(notes)}" if notes else ""))
    if not flags:
        return ("not shown at this scale" if parts else "not run"), ("; ".join(parts) or
                                                                     "no MLE row ran with its trainable twin")
    return noisy_flags_status(flags), "MLE lower FID than its trainable twin: " + "; ".join(parts)


def best_of(t: pd.DataFrame, metrics: Optional[dict], d: str, metric: str, row: str, rows) -> tuple:
    """(flag, text): whether ``row`` scores lowest among ``rows`` with every paired interval excluding zero:
    "no" when some row is clearly lower, "tie" when some interval includes 0, else "yes"."""
    prs = [pair(t, metrics, d, metric, row, r) for r in rows if r != row]
    prs = [x for x in prs if x is not None]
    outs = [x["outcome"] for x in prs]
    flag = "no" if "no" in outs else ("tie" if "tie" in outs else "yes")
    undecided = [x["text"] for x in prs if x["outcome"] == "tie"]
    return flag, f"{outs.count('yes')} of {len(prs)} clearly above it" + (
        f"; undecided: {', '.join(undecided)}" if undecided else "")


def diag_d_best_prior(t: pd.DataFrame, datasets, metrics: Optional[dict] = None) -> tuple:
    """(status, evidence): the lowest prior FID among the VAE rows is MLE Diag-D's, every paired interval excluding
    zero, on the datasets where the paper's own numbers show it."""
    flags, parts = [], []
    for d in datasets:
        o, p = scale.both(t, d, "fid_prior")
        vae = [r for r in o if scale.is_vae(r)]
        if "mle-diag-d" not in vae or len(vae) < 2:
            continue
        pb = min(vae, key=p.get)
        if pb != "mle-diag-d":
            parts.append(f"{scale.dataset_label(d)}: not claimed (paper's best {scale.display(pb)})")
            continue
        flag, text = best_of(t, metrics, d, "fid_prior", "mle-diag-d", vae)
        flags.append(flag)
        parts.append(f"{scale.dataset_label(d)}: ours best {scale.display(min(vae, key=o.get))} of {len(vae)} VAEs; "
                     f"Diag-D: {text}")
    if not flags:
        return "not run", "; ".join(parts) or "MLE Diag-D or the other VAEs were not run"
    return noisy_flags_status(flags), "; ".join(parts)


def rank_agreement(t: pd.DataFrame, datasets, metrics: Optional[dict] = None, min_rho: float = 0.5,
                   columns=None, labels: Optional[dict] = None) -> tuple:
    """(status, evidence): Spearman's ρ between our values and the paper's over the rows of each column. A column
    agrees ("yes") when ρ ≥ ``min_rho`` and the 2.5th percentile of ρ over the bootstrap replicates is above 0;
    "tie" when ρ ≥ ``min_rho`` but that percentile is not (or no replicates were recorded); else "no"."""
    columns, labels = list(columns or FID_SOURCES), labels or {}
    flags, parts = [], []
    for d in datasets:
        reps = _boot(metrics, d).get("replicates") or {}
        for m in columns:
            o, p = scale.both(t, d, m)
            if len(o) < 3:
                continue
            rows = list(o)
            rho = spearman([p[r] for r in rows], [o[r] for r in rows])
            boots = [reps.get(r, {}).get(m) for r in rows]
            lo = math.nan
            if all(boots) and len({len(b) for b in boots}) == 1:
                arr = np.asarray(boots, float)  # rows × replicates
                rhos = [spearman([p[r] for r in rows], arr[:, j].tolist()) for j in range(arr.shape[1])]
                lo = float(np.nanpercentile(rhos, 2.5))
            if rho is None or math.isnan(rho) or rho < min_rho:
                flags.append("no")
            else:
                flags.append("yes" if lo > 0 else "tie")
            ci = f", 2.5th percentile {fmt(lo, '.2f')}" if not math.isnan(lo) else ", no replicates"
            parts.append(f"{scale.dataset_label(d)} {labels.get(m, m)}: ρ = {fmt(rho, '.2f')} over {len(rows)} rows{ci}")
    if not flags:
        return "not run", "fewer than 3 rows per column"
    return noisy_flags_status(flags), f"ρ ≥ {min_rho:g} with its bootstrap 2.5th percentile above 0 counts as " \
                                      f"agreeing: " + "; ".join(parts)


__all__ = ["pair", "paper_lower", "tally_claim", "converged", "mle_beats_unit_variance", "comparable_with_ae", "mle_beats_trainable",
           "diag_d_best_prior", "best_of", "rank_agreement", "CONVERGED_FACTOR", "FID_SOURCES"]
