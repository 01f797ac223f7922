"""The low-rank page's hypothesis read as claims (:mod:`vaebook.experiments.lowrank`; not an experiment, no
``EXPERIMENT``), with the guard every claim reads first.

**Worse than a constant.** The best output that ignores its input, on a set of images, is their mean image, and its
MSE (summed over pixels, averaged over images) is tr C, the images' total pixel variance. A model whose test MSE is
not below tr C of the same test images reconstructs worse than that constant: it is never evidence (its gradient
energy is low because it hardly reconstructs, not because its means are smooth). Its cells read ``did not train``
and its paired comparisons say why (:func:`guard`, :func:`apply_guard`). tr C is what the results record
(``settings.mnist.tr_c_test``, from this revision on); for results that predate it, it is computed from the same
test images (the first ``n_test`` of MNIST's test split) when they are installed; else the guard cannot be read and
no claim can hold (at best ``inconclusive``).

**The claims** (section :data:`SECTION`), each read per rank from the paired differences over test images
(low-rank − baseline, mean ± ``SE_BAND`` standard errors), against *every* baseline that is evidence; per rank
``yes`` / ``no`` / ``tie`` (no clear difference, or a tie on one comparison and a yes on the other), then
:func:`vaebook.lab.status.noisy_flags_status` over the ranks that are evidence (all yes → holds, some yes →
partly, ties and no no → inconclusive, none → not shown at this scale):

1. a lower dequantised NLL than every baseline (``nll_deq_is == "lower"``);
2. smoother means than every baseline: a higher MSE *and* a lower gradient energy;
3. both at the same rank (the hypothesis: a better likelihood *while* the means come out smoother).

One training run per model: the intervals are over test images, not over training seeds (each claim says so).
"""
from __future__ import annotations

import math
from typing import Optional

import pandas as pd
import torch

from vaebook.data.mnist import load_mnist
from vaebook.experiments import _section6 as scale
from vaebook.lab.display import fmt
from vaebook.lab.status import claim, noisy_flags_status, not_run

SECTION = "beyond the paper (low-rank Σx)"
CLAIMS = (
    "a low-rank Σx reaches a lower NLL than Iso-I and Diag-I",
    "a low-rank Σx gives smoother means than Iso-I and Diag-I (higher MSE and lower gradient energy)",
    "a low-rank Σx reaches a better likelihood while its means come out smoother (both at one rank)",
)
DNT = "did not train"


# -- the guard ------------------------------------------------------------------------------------------------
def total_variance(x) -> float:
    """tr C of images ``N×C×H×W`` (uint8, or float in [0, 1]): Σ over pixels of the variance across the images, in
    float64: the MSE of their mean image, the best constant output."""
    x = torch.as_tensor(x)
    uint8 = x.dtype == torch.uint8
    x = x.reshape(x.shape[0], -1).double()
    return float((x / 255.0 if uint8 else x).var(0, unbiased=False).sum())


def trace_c(res) -> tuple:
    """(tr C of the run's test images or None, where it comes from): recorded with the results, else computed from
    the first ``n_test`` MNIST test images when they are installed (never downloaded)."""
    st = ((res.metrics or {}).get("settings") or {}).get("mnist") or {}
    if isinstance(st.get("tr_c_test"), (int, float)):
        return float(st["tr_c_test"]), "recorded with the results"
    n = st.get("n_test")
    if not n or st.get("generated"):
        return None, "tr C not recorded and the run's test images are unknown"
    try:
        x, _ = load_mnist("test", None, download=False)
    except Exception as e:  # noqa: BLE001 - the data are not installed here: the guard cannot be read
        return None, f"tr C not recorded and MNIST is not installed here ({type(e).__name__})"
    return total_variance(x[:int(n)]), f"computed from the run's first {int(n):,} MNIST test images"


def worse_than_constant(mse, tr_c) -> str:
    """Why a model is worse than a constant output ("" when its test MSE is below tr C, or when either is unknown)."""
    if mse is None or tr_c is None or not all(math.isfinite(float(v)) for v in (mse, tr_c)):
        return ""
    if float(mse) < float(tr_c):
        return ""
    return (f"{DNT}: worse than a constant output (test MSE {fmt(mse, '.4g')} is not below tr C = {fmt(tr_c, '.4g')}, "
            "the MSE of the test images' mean image)")


#: each claim's rule, as the page states it
def rules(se_band: float = 2.0) -> str:
    """The guard and the three claims' rules in one paragraph (glued on the page)."""
    return (f"A model whose test MSE is not below tr C of the test images is worse than a constant output (their mean "
            f"image) and is never evidence: its cells read did not train and its rank is left out. Each claim is read "
            f"per rank on the paired differences (low-rank minus baseline, over test images, ± {se_band:g} s.e.) "
            f"against every baseline that is evidence: (1) the NLL lower than every baseline's; (2) the MSE higher "
            f"and the gradient energy lower than every baseline's; (3) both at the same rank. A rank reads yes when "
            f"every comparison is beyond {se_band:g} s.e. the claimed way, no when one is beyond it the other way, "
            f"else tie. Over the ranks that are evidence: all yes, holds; some yes, partly; ties and no no, "
            f"inconclusive; none, not shown at this scale")


def guard(values: dict, tr_c) -> dict:
    """``{model: reason}`` for the models of ``values`` (``{model: {"mse": …}}``) worse than a constant output."""
    out = {m: worse_than_constant(v.get("mse"), tr_c) for m, v in (values or {}).items()}
    return {m: why for m, why in out.items() if why}


def apply_guard(tables: dict, excluded: dict) -> dict:
    """The page's tables with the guard's verdicts (in place): a guarded model's cells read ``did not train`` (its
    values kept, never scored), its paired comparisons carry ``evidence`` = the reason (else "yes"), the per-model
    table a ``note``."""
    t = tables.get("table_lowrank")
    if t is not None and len(t):
        bad = t["row"].isin(list(excluded))
        t.loc[bad, "verdict"] = DNT
        t.loc[bad, "reason"] = t.loc[bad, "row"].map(excluded)
    c = tables.get("table_lowrank_hypothesis")
    if c is not None and len(c):
        c["evidence"] = [excluded.get(m) or excluded.get(b) or "yes" for m, b in zip(c["model"], c["baseline"])]
    w = tables.get("table_lowrank_wide")
    if w is not None and len(w):
        names = {scale.display(m): why for m, why in excluded.items()}
        w["note"] = w["model"].map(lambda m: names.get(m, ""))
    return tables


def guarded(res) -> tuple:
    """(excluded ``{model: reason}``, tr C, its source) of a run; its tables get the guard (:func:`apply_guard`)."""
    tr_c, src = trace_c(res)
    excluded = guard((res.metrics or {}).get("values") or {}, tr_c)
    apply_guard(res.tables, excluded)
    return excluded, tr_c, src


# -- the reading per rank -------------------------------------------------------------------------------------
def _flag(rows: pd.DataFrame, yes, no) -> str:
    """yes on every comparison → "yes"; no on any → "no"; else "tie"."""
    y, n = [bool(yes(r)) for _, r in rows.iterrows()], [bool(no(r)) for _, r in rows.iterrows()]
    return "no" if any(n) else ("yes" if y and all(y) else "tie")


def rank_flags(comps: pd.DataFrame, excluded: Optional[dict] = None) -> pd.DataFrame:
    """Per rank: ``nll``, ``smooth``, ``both`` flags (yes / no / tie) over the comparisons with baselines that are
    evidence, or ``why`` the rank is not evidence (the low-rank model, or every baseline, worse than a constant)."""
    excluded = excluded or {}
    out = []
    for r in sorted(comps["rank"].unique().tolist()):
        c = comps[comps["rank"] == r]
        m = c["model"].iloc[0]
        live = c[~c["baseline"].isin(list(excluded))]
        why = excluded.get(m) or ("" if len(live) else "every baseline is worse than a constant output")
        if why:
            out.append({"rank": r, "model": m, "nll": None, "smooth": None, "both": None, "why": why})
            continue
        nll = _flag(live, lambda x: x.get("nll_deq_is") == "lower", lambda x: x.get("nll_deq_is") == "higher")
        smooth = _flag(live, lambda x: x.get("mse_is") == "higher" and x.get("grad_is") == "lower",
                       lambda x: x.get("mse_is") == "lower" or x.get("grad_is") == "higher")
        both = "no" if "no" in (nll, smooth) else ("yes" if nll == smooth == "yes" else "tie")
        out.append({"rank": r, "model": m, "nll": nll, "smooth": smooth, "both": both, "why": ""})
    return pd.DataFrame(out, columns=["rank", "model", "nll", "smooth", "both", "why"])


def _detail(comps: pd.DataFrame, key: str, spec: str, se_band: float, excluded: dict) -> str:
    """"r = 4: −7.5 ± 4.0 vs Iso-I (lower), +581 ± 111 vs Diag-I (higher)" per rank; a guarded rank says why."""
    parts = []
    for r in sorted(comps["rank"].unique().tolist()):
        c = comps[comps["rank"] == r]
        if excluded.get(c["model"].iloc[0]):
            parts.append(f"r = {r}: not evidence (worse than a constant output)")
            continue
        parts.append(f"r = {r}: " + ", ".join(
            f"{fmt(x[f'd_{key}'], spec)} ± {fmt(se_band * x[f'se_{key}'], spec)} vs {scale.display(x['baseline'])} "
            f"({x[f'{key}_is']})" + (" (baseline not evidence)" if excluded.get(x["baseline"]) else "")
            for _, x in c.iterrows() if f"d_{key}" in x and not pd.isna(x[f"d_{key}"])))
    return "; ".join(parts)


def reading(comps: pd.DataFrame, excluded: Optional[dict] = None, se_band: float = 2.0) -> dict:
    """The hypothesis read from the paired comparisons (:func:`rank_flags`), as sentences for the page: per rank,
    whether the low-rank model's NLL is lower than *every* baseline's and whether its means are smoother than every
    baseline's (higher MSE and lower gradient energy), each beyond ``se_band`` standard errors; a model worse than a
    constant output (``excluded``) is never counted."""
    excluded = excluded or {}
    if comps is None or not len(comps) or "nll_deq_is" not in comps:
        return {}
    f = rank_flags(comps, excluded)
    ranks = f["rank"].tolist()
    live = f[f["why"] == ""]
    per = {int(r.rank): {"nll_lower": r.nll == "yes", "smoother": r.smooth == "yes", "evidence": not r.why,
                         "baselines": comps.loc[comps["rank"] == r.rank, "baseline"].tolist()} for r in f.itertuples()}
    bases = " and ".join(scale.display(b) for b in dict.fromkeys(comps["baseline"]))
    fmt_r = lambda rs: ", ".join(map(str, rs))  # noqa: E731
    at = lambda rs: f"at r ∈ {{{fmt_r(rs)}}}" if rs else "at no rank"  # noqa: E731 - never "r ∈ {none}"
    lik = live.loc[live["nll"] == "yes", "rank"].tolist()
    sm = live.loc[live["smooth"] == "yes", "rank"].tolist()
    both = live.loc[live["both"] == "yes", "rank"].tolist()
    out_ = [r for r in ranks if r not in live["rank"].tolist()]
    among = f"of {{{fmt_r(live['rank'].tolist())}}}" + (
        f" (r ∈ {{{fmt_r(out_)}}} not evidence: worse than a constant output)" if out_ else "")
    out = {
        "per_rank": per,
        "lr_likelihood": (f"Dequantised NLL, low-rank minus baseline per test image (mean ± {se_band:g} s.e., nats): "
                          f"{_detail(comps, 'nll_deq', '.1f', se_band, excluded)}. Lower than {bases} beyond "
                          f"{se_band:g} s.e. {at(lik)} {among}."),
        "lr_smooth": (f"MSE difference {_detail(comps, 'mse', '.2f', se_band, excluded)}; reconstruction "
                      f"gradient-energy difference {_detail(comps, 'grad', '.3g', se_band, excluded)}. Higher MSE and "
                      f"lower gradient energy than {bases} (smoother means) {at(sm)} {among}."),
    }
    if not len(live):
        text = "no rank is evidence: every low-rank model is worse than a constant output"
    elif both:
        text = f"both halves happened {at(both)}"
    elif lik or sm:
        text = f"only one half happened: a better likelihood {at(lik)}, smoother means {at(sm)}"
    else:
        text = "neither half happened at any rank run"
    out["lr_outcome"] = (f"Hypothesis (better likelihood and smoother means than {bases}): {text}. One training run "
                         "per model, differences judged over test images only.")
    return out


# -- the claims -----------------------------------------------------------------------------------------------
def _scale(res) -> str:
    st = ((res.metrics or {}).get("settings") or {}).get("mnist") or {}
    t = st.get("train") or {}
    steps = t.get("max_steps")
    return (f"MNIST, {fmt(steps, ',.0f', '?')} steps of batch {t.get('batch_size', '?')} on "
            f"{fmt(st.get('n_train'), ',.0f', '?')} training images; {fmt(st.get('n_test'), ',.0f', '?')} test images, "
            f"k = {st.get('iwae_k', '?')}; one training run per model")


def claims(res, se_band: float = 2.0) -> list:
    """The page's three claims (:data:`CLAIMS`, section :data:`SECTION`) from the paired comparisons of ``res``
    (``table_lowrank_hypothesis``) after the guard; ``not run`` without them."""
    comps = res.tables.get("table_lowrank_hypothesis") if res is not None else None
    if comps is None or not len(comps) or "nll_deq_is" not in comps:
        return not_run([(c, SECTION) for c in CLAIMS], "no paired comparisons in these results" if res else
                       "no results yet")
    excluded, tr_c, src = guarded(res)
    f = rank_flags(comps, excluded)
    live = f[f["why"] == ""]
    guard_note = (f"guard: tr C of the test images = {fmt(tr_c, '.4g')}, {src}; " + ("; ".join(
        f"{scale.display(m)}: {why.removeprefix(DNT + ': ')}, not evidence" for m, why in excluded.items()) or
        "every model's test MSE is below it") if tr_c is not None else f"guard not read: {src}, so no claim holds")
    seeds = f"one training run per model: the ± {se_band:g} s.e. are over test images, not training seeds"
    keys = (("nll", "nll_deq", ".1f", "lower NLL than every baseline beyond "),
            ("smooth", "mse", ".2f", "higher MSE and lower gradient energy than every baseline beyond "),
            ("both", None, None, "both at once beyond "))
    out = []
    for text, (flag, key, spec, what) in zip(CLAIMS, keys):
        flags = live[flag].tolist()
        status = noisy_flags_status(flags) if flags else "not shown at this scale"
        if tr_c is None and status == "holds":
            status = "inconclusive"
        per = ", ".join(f"r = {r['rank']}: {r[flag] if not r['why'] else 'not evidence'}" for _, r in f.iterrows())
        ev = f"{what}{se_band:g} s.e., per rank: {per}"
        if key == "mse":
            ev += (f" (MSE {_detail(comps, 'mse', '.2f', se_band, excluded)}; gradient energy "
                   f"{_detail(comps, 'grad', '.3g', se_band, excluded)})")
        elif key:
            ev += f" ({_detail(comps, key, spec, se_band, excluded)})"
        out.append(claim(text, SECTION, status, f"{ev}; {guard_note}; {seeds}", _scale(res)))
        if res.is_smoke:
            out[-1].update(status="not run", evidence="smoke test, not a result: " + out[-1]["evidence"])
    return out
