"""The two collapse claims of the smoothness page read on the training objective: "σx² = 1 collapses the
posterior" (Table 1; :func:`collapse_claim`, which the collapse page reads with its own runs) and "a large σz²
collapses the posterior without KL collapse" (Table E.8; :func:`e8_collapse_claim`), and the loss of the collapsed
solution they are checked against (:func:`j_collapse_eq3`, :func:`j_collapse_mle`). Not an experiment (no
``EXPERIMENT``); the smoothness page's other rules are in :mod:`._smoothness_claims`.

**The collapsed solution's loss** (per image, nats). Let C be the covariance of the training images and x̄ their
mean. A collapsed posterior (Definition 1: MI(x; x') ≈ 0, x' = μθ(z), z ~ q(z|x)) makes x' independent of x, so
E‖x − x'‖² = tr C + E‖x̄ − x'‖² ≥ tr C (the cross term vanishes by independence); equality needs μθ ≡ x̄.

* Table 1, σx² fixed: Eq. (3), J = E[E_q‖x − μθ(z)‖²/(2σx²) + KL(q(z|x) ‖ p(z))], omits the constant
  (D/2)·ln 2πσx² that our trainer logs with it (``gaussian_nll``: ½Σ(r²/σx² + ln σx² + ln 2π)). KL ≥ 0 with
  equality at q = p, so every collapsed solution has J ≥ tr C/(2σx²) =: J_collapse (the paper's σx² = 1 row:
  MSE 52.74 ≈ tr C, KL 0). Ours in the same convention: the logged loss − (D/2)·ln 2πσx² (:func:`eq3_loss`).
* Table E.8, σz² fixed, σx² by the Iso-I MLE: Eq. (10) = G.5 + KL, G.5 = (D/2)(1 + ln E‖x − μθ(z)‖² − ln D)
  (Appendix G.1, Eq. G.4 substituted into G.3); our trainer logs it plus (D/2)·ln 2π (``mle_objective``:
  ½D(1 + ln 2π + ln σ̂²)), the Gaussian negative log-likelihood at σ̂² = E‖x − μθ(z)‖²/D. ln is increasing, so the
  reconstruction part is ≥ (D/2)(1 + ln 2π + ln(tr C/D)); with σz² fixed, KL(N(μ, σz² I) ‖ N(0, I)) =
  ½Σ(σz² + μᵢ² − ln σz² − 1) (the KL below Eq. 3) ≥ (d_z/2)(σz² − 1 − ln σz²), equality at μ = 0. So every
  collapsed solution has a logged loss ≥ J_collapse = (D/2)(1 + ln 2π + ln(tr C/D)) + (d_z/2)(σz² − 1 − ln σz²).
  At σz² = 10, d_z = 8 the KL part is 26.79, the KL Table E.8 prints in its collapsed row.

A trained model whose loss is below J_collapse by more than the noise has found something better than every
collapsed solution; training lowers the loss, so a longer run of the same objective cannot end collapsed
(:func:`vaebook.lab.status.objective_contradiction`). Our loss is the last epoch's mean training loss: while the
loss still falls it overstates the end-of-run loss, so the check is conservative. Noise: under
:data:`OBJECTIVE_MARGIN` (1 nat; the standard error of these means is ≈ 0.1 nat). Eq. (10) on a minibatch of B
images takes the log of a batch mean, which is biased low (Jensen) by ≈ (D/4)·CV²/B, CV the per-image coefficient
of variation of ‖x − μθ(z)‖²: ≤ 3.1 nats for CV ≤ 1 at B = 64, under :data:`OBJECTIVE_MARGIN_MLE` (5 nats).
"""
from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from vaebook.lab.display import fmt
from vaebook.lab.status import objective_contradiction
from vaebook.paper import D_Z_SECTION4

#: on a collapse row, a KL/MI the paper prints as ≈ 0 must be matched within this many nats
COLLAPSE_TOL = 0.5
#: Table E.8's collapse is "without KL collapse" only with a KL of at least this many nats
KL_KEPT = 5.0
#: a loss below the collapsed solution's by more than this (nats per image) is below collapse: Eq. (3) …
OBJECTIVE_MARGIN = 1.0
#: … and Eq. (10), whose minibatch estimate is biased low by up to ≈ 3 nats (module docstring)
OBJECTIVE_MARGIN_MLE = 5.0
#: pixels of an MNIST image (1×28×28)
D_X = 784


# -- the collapsed solution's loss (module docstring) ----------------------------------------------------
def eq3_constant(sigma_x2: float, d_x: int = D_X) -> float:
    """(D/2)·ln 2πσx²: what our logged loss adds to Eq. (3) at a fixed σx²."""
    return 0.5 * d_x * math.log(2.0 * math.pi * float(sigma_x2))


def eq3_loss(logged_loss: float, sigma_x2: float, d_x: int = D_X) -> float:
    """Eq. (3) per image from our logged training loss at a fixed σx² (its constant taken off)."""
    return float(logged_loss) - eq3_constant(sigma_x2, d_x)


def j_collapse_eq3(tr_c: float, sigma_x2: float) -> float:
    """Eq. (3) of the collapsed solution (μθ ≡ x̄, q = p): tr C/(2σx²)."""
    return float(tr_c) / (2.0 * float(sigma_x2))


def kl_fixed_sigma_z2(sigma_z2: float, d_z: int = D_Z_SECTION4) -> float:
    """The least KL(N(μ, σz² I) ‖ N(0, I)) at a fixed σz² (μ = 0): (d_z/2)(σz² − 1 − ln σz²)."""
    s = float(sigma_z2)
    return 0.5 * d_z * (s - 1.0 - math.log(s))


def j_collapse_mle(tr_c: float, sigma_z2: float, d_x: int = D_X, d_z: int = D_Z_SECTION4) -> float:
    """Eq. (10) (Iso-I, G.5) + (D/2)·ln 2π of the collapsed solution at a fixed σz², as our trainer logs it:
    (D/2)(1 + ln 2π + ln(tr C/D)) + (d_z/2)(σz² − 1 − ln σz²)."""
    return 0.5 * d_x * (1.0 + math.log(2.0 * math.pi) + math.log(float(tr_c) / d_x)) + kl_fixed_sigma_z2(sigma_z2, d_z)


#: the rules, in words (the pages print them where the claims are read)
RULE_COLLAPSE = (f"holds when our σx² = 1 row has KL and MI within {COLLAPSE_TOL:g} nats of 0 (one of them: partly); "
                 f"otherwise not reproduced when most trained σx² = 1 models (this row and the collapse page's runs) "
                 f"end more than {OBJECTIVE_MARGIN:g} nat below the collapsed solution's Eq. (3) loss tr C/(2σx²), "
                 "which no collapsed model can go below, else not shown at this scale")
RULE_E8_COLLAPSE = (f"holds when every row with σz² ≥ 10^0.9 has MI within {COLLAPSE_TOL:g} nats of 0 and KL ≥ "
                    f"{KL_KEPT:g} nats (MI alone in some: partly); otherwise not reproduced when most of those rows' "
                    f"models end more than {OBJECTIVE_MARGIN_MLE:g} nats below the collapsed solution's Eq. (10) loss, "
                    "which no collapsed model can go below, else not shown at this scale")


# -- the claims ---------------------------------------------------------------------------------------
def _below(ours: float, collapsed: float, margin: float) -> str:
    """``below`` / ``at`` / ``above`` the collapsed solution's loss, by :func:`objective_contradiction`."""
    if objective_contradiction(ours, collapsed, "collapsed solution", margin)[0]:
        return "below"
    return "above" if ours - collapsed > margin else "at"


def collapse_claim(row: Optional[dict], tr_c: tuple, runs: Optional[pd.DataFrame], paper_row: dict,
                   sigma_x2: float = 1.0) -> tuple:
    """(status, evidence) of "σx² = 1 collapses the posterior" (:data:`RULES`). ``row``: our Table-1 row at σx²
    (``kl``, ``mi``, ``sigma_z2``, ``final_loss``: the logged loss) or None; ``tr_c``: (tr C of its training
    images or None, where from); ``runs``: the collapse page's runs table (``outcome``, ``margin_achieved`` =
    J_collapse − Eq. (3) on its evaluation images, ``init``, ``lr``, ``seed``) or None. Models that did not train,
    and models above the collapsed loss (worse than a constant output) that did not collapse, are not evidence."""
    row = row if row and any(v is not None for v in row.values()) else None  # did not train: not evidence
    kl, mi = (row or {}).get("kl"), (row or {}).get("mi")
    parts, status = [], None
    if kl is not None and mi is not None:
        small = [kl <= COLLAPSE_TOL, mi <= COLLAPSE_TOL]
        status = "holds" if all(small) else "partly" if any(small) else None
        parts.append(f"at σx² = {sigma_x2:g}: KL {fmt(kl)} nats, MI {fmt(mi)} nats, σz² {fmt(row.get('sigma_z2'))} "
                     f"(paper: {fmt(paper_row.get('kl'))}, {fmt(paper_row.get('mi'))}, "
                     f"{fmt(paper_row.get('sigma_z2'))}; collapse = KL and MI within {COLLAPSE_TOL:g} nats of 0)")
    tally = {"below": 0, "at": 0, "above": 0}
    loss, trc = (row or {}).get("final_loss"), tr_c[0]
    if loss is not None and trc is not None:
        ours, jc = eq3_loss(loss, sigma_x2), j_collapse_eq3(trc, sigma_x2)
        tally[_below(ours, jc, OBJECTIVE_MARGIN)] += 1
        parts.append(f"Eq. (3) per image in nats, without its constant (D/2)·ln 2πσx² = "
                     f"{fmt(eq3_constant(sigma_x2), '.4g')}: "
                     f"our loss {fmt(ours)} (the last epoch's mean training loss {fmt(loss, '.4g')} less that "
                     f"constant) against the collapsed solution's tr C/(2σx²) = {fmt(jc)} ({tr_c[1]}): "
                     f"{fmt(abs(jc - ours))} nats {'below' if ours < jc else 'above'} it")
    elif row is not None:
        parts.append(f"objective not checked: {tr_c[1] if trc is None else 'no training loss recorded'}")
    if runs is not None and len(runs):
        t = runs[runs["outcome"] != "did not train"].assign(
            _m=lambda d: pd.to_numeric(d["margin_achieved"], errors="coerce")).dropna(subset=["_m"])
        kinds = ["at" if o == "collapsed" else _below(0.0, v, OBJECTIVE_MARGIN) for o, v in zip(t["outcome"], t["_m"])]
        for k in kinds:
            tally[k] += 1
        below = t.loc[[k == "below" for k in kinds], "_m"]
        col = t[t["outcome"] == "collapsed"]
        parts.append(f"the collapse page: {len(below)} of {len(runs)} runs end below the collapsed loss by "
                     + (f"{fmt(below.min())}–{fmt(below.max())} nats" if len(below) else "more than the margin")
                     + " (Eq. 3 on its evaluation images, one z per image)"
                     + "".join(f"; ended collapsed: {r.init} start, lr {float(r.lr):g}, seed {r.seed} "
                               f"({fmt(-float(r.margin_achieved))} nats from the collapsed loss)"
                               for r in col.itertuples())
                     + (f"; {len(runs) - len(t)} did not train" if len(t) < len(runs) else ""))
    if status is None and (row is not None or runs is not None):
        n = tally["below"] + tally["at"]
        status = "not reproduced" if tally["below"] > tally["at"] else "not shown at this scale"
        parts.append(f"{tally['below']} of {n} models that trained end more than {OBJECTIVE_MARGIN:g} nat below "
                     "collapse" + (f" ({tally['above']} above it without collapsing: not evidence)" if tally["above"] else "")
                     + (": training that lowers Eq. (3) cannot reach the collapsed solution"
                        if status == "not reproduced" else ""))
    return status or "not run", "; ".join(parts) or "no results"


def e8_collapse_claim(rows: list, tr_c: tuple, paper_row: dict) -> tuple:
    """(status, evidence) of "a large σz² collapses the posterior without KL collapse" (:data:`RULES`). ``rows``:
    ``(log10 σz², mi, kl, logged loss)`` of our rows with σz² ≥ 10^0.9."""
    ev, good, half, tally = [], 0, 0, {"below": 0, "at": 0, "above": 0}
    for lz, mi, kl, loss in rows:
        ok_mi, ok_kl = mi is not None and mi <= COLLAPSE_TOL, kl is not None and kl >= KL_KEPT
        good, half = good + (ok_mi and ok_kl), half + ok_mi
        ev.append(f"σz² = {fmt(10 ** lz, '.2g')}: MI {fmt(mi)} nats, KL {fmt(kl)} nats")
    ev[-1] += (f" (paper at σz² = 10: MI {fmt(paper_row.get('mi'))}, KL {fmt(paper_row.get('kl'))}; collapse = MI "
               f"within {COLLAPSE_TOL:g} nats of 0 with KL ≥ {KL_KEPT:g} nats)")
    if good == len(rows):
        return "holds", "; ".join(ev)
    if half:
        return "partly", "; ".join(ev)
    for lz, _, _, loss in rows:
        if loss is None or tr_c[0] is None:
            ev.append(f"σz² = {fmt(10 ** lz, '.2g')}: objective not checked: "
                      + (tr_c[1] if tr_c[0] is None else "no training loss recorded"))
            continue
        jc = j_collapse_mle(tr_c[0], 10 ** lz)
        tally[_below(loss, jc, OBJECTIVE_MARGIN_MLE)] += 1
        ev.append(f"σz² = {fmt(10 ** lz, '.2g')}: Eq. (10) (Iso-I, G.5) + KL per image in nats plus (D/2)·ln 2π = "
                  f"{fmt(0.5 * D_X * math.log(2 * math.pi), '.4g')}, as our trainer logs it: our loss {fmt(loss)} (the last "
                  f"epoch's mean) against the collapsed solution's {fmt(jc)} = (D/2)(1 + ln 2π + ln(tr C/D)) + "
                  f"(d_z/2)(σz² − 1 − ln σz²) with D = {D_X}, d_z = {D_Z_SECTION4} ({tr_c[1]}): "
                  f"{fmt(abs(jc - loss))} nats {'below' if loss < jc else 'above'} it")
    n = tally["below"] + tally["at"]
    if not n:
        return "not shown at this scale", "; ".join(ev)
    bad = tally["below"] > tally["at"]
    ev.append(f"{tally['below']} of {n} models end more than {OBJECTIVE_MARGIN_MLE:g} nats below collapse"
              + (": training that lowers Eq. (10) cannot reach the collapsed solution" if bad else ""))
    return ("not reproduced" if bad else "not shown at this scale"), "; ".join(ev)


__all__ = ["COLLAPSE_TOL", "KL_KEPT", "OBJECTIVE_MARGIN", "OBJECTIVE_MARGIN_MLE", "D_X", "RULE_COLLAPSE",
           "RULE_E8_COLLAPSE", "eq3_constant", "eq3_loss", "j_collapse_eq3", "kl_fixed_sigma_z2", "j_collapse_mle",
           "collapse_claim", "e8_collapse_claim"]
