"""The collapse page's prose and figures: the glued strings (:func:`summary`: the answer, Table 1's first row by
the paper's recipe, Table 1's collapse claim read with these runs, the run line with the models' cumulative
training time) and the figures. Not an experiment (no ``EXPERIMENT``): :mod:`.collapse` holds the science, the
claim's rule is :func:`._collapse_claims.collapse_claim`."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from vaebook.experiments import _collapse_claims as cc
from vaebook.experiments import _smoothness_claims as smc
from vaebook.experiments import collapse as cl
from vaebook.experiments import smoothness as sm
from vaebook.experiments._smoothness_page import train_time_line
from vaebook.lab.display import fmt
from vaebook.paper import D_Z_SECTION4, paper_table
from vaebook.train.curve import plateau_line

# -- what the page's prose quotes ----------------------------------------------------------------------------
SUMMARY_KEYS = ("cl_label", "cl_run", "cl_answer", "cl_table1", "cl_random", "cl_collapsed", "cl_kl", "cl_achieved",
                "cl_trc", "cl_margin_hi", "cl_margin_lo", "cl_lam_max", "cl_claim")


def _count_line(runs: pd.DataFrame, init: str) -> str:
    """``k of N runs collapsed (lr 0.0001: a of n; …)`` for one initialisation, from the runs table."""
    t = runs[runs["init"] == init]
    if not len(t):
        return "not run"

    def part(d):
        bad = int((d["outcome"] == "did not train").sum())
        return f"{int((d['outcome'] == 'collapsed').sum())} of {len(d)}" + (f", {bad} did not train" if bad else "")

    lrs = sorted(t["lr"].astype(float).unique())
    per = "; ".join(f"lr {v:g}: {part(t[t['lr'].astype(float) == v])}" for v in lrs)
    return f"{part(t)} runs collapsed ({per})"


def _range_line(runs: pd.DataFrame, col: str, spec: str = ".3g") -> str:
    parts = []
    for init in cl.INITS:
        v = pd.to_numeric(runs.loc[runs["init"] == init, col], errors="coerce").dropna()
        if len(v):
            parts.append(f"{init} start {fmt(v.min(), spec)}" + (f" to {fmt(v.max(), spec)}" if len(v) > 1 else ""))
    return "; ".join(parts) if parts else "n/a"


def answer(runs: pd.DataFrame, sigma_x2: float) -> str:
    """The page's answer, read from the runs table only: how often each start ended collapsed, what that says
    about the start deciding the outcome, and whether the runs that escaped ended below the collapsed
    solution's objective (``margin_achieved`` > 0), i.e. whether collapse is this network's optimum."""
    trained = runs[runs["outcome"] != "did not train"]
    if not len(trained):
        return "no run trained, so there is no answer"
    n = {i: int((trained["init"] == i).sum()) for i in cl.INITS}
    c = {i: int(((trained["init"] == i) & (trained["outcome"] == "collapsed")).sum()) for i in cl.INITS}
    said = [f"{c[i]} of {n[i]} trained runs from the {i} start ended collapsed" for i in cl.INITS if n[i]]
    s = "; ".join(said) + ". "
    if n["random"] and n["collapsed"] and c["random"] == 0 and c["collapsed"] == n["collapsed"]:
        s += ("The start decides the outcome: training does not go to collapse, and does not leave it once there, "
              "so at this scale collapse is a point the optimiser stays at, not one it is drawn to. ")
    elif c["random"] + c["collapsed"] == 0:
        s += "No run ended collapsed, not even from the collapsed start: training leaves it. "
    elif c["random"] == n["random"] and c["collapsed"] == n["collapsed"]:
        s += "Every run ended collapsed, as the paper's row reports. "
    else:
        s += "The outcome varies with the learning rate and the seed (table below), not with the start alone. "
    esc = pd.to_numeric(trained.loc[trained["outcome"] == "escaped", "margin_achieved"], errors="coerce").dropna()
    if len(esc):
        below = int((esc > 0).sum())
        s += (f"{below} of {len(esc)} escaped runs ended below the collapsed solution's objective "
              f"(by {fmt(esc.min(), '.3g')} to {fmt(esc.max(), '.3g')} nats per image)")
        s += (f", so collapse is not the optimum of this network's objective at σx² = {sigma_x2:g}"
              if below == len(esc) else "")
        s += "."
    return s.strip()


#: the learning rate of the paper's recipe (App. D.1) and of Table 1's runs
TABLE1_LR = 1e-3


def table1_row_line(runs: pd.DataFrame, paper_mse: str, paper_kl: str, sigma_x2: float = 1.0) -> str:
    """Table 1's σx² = 1 row at this scale over seeds: the random-start runs at :data:`TABLE1_LR` (Table 1's own
    jobs), MSE and KL as mean ± s.d. over the seeds that trained, beside the paper's, and how many collapsed."""
    if float(sigma_x2) != 1.0:
        return f"not in this run (its σx² is {float(sigma_x2):g}; Table 1's first row is σx² = 1)"
    r = runs[(runs["init"] == "random") & ((runs["lr"].astype(float) - TABLE1_LR).abs() < 1e-12)]
    ok = r[r["outcome"] != "did not train"]
    if not len(ok):
        return f"not run (no trained random-start run at lr {TABLE1_LR:g})"

    def ms(col):
        v = pd.to_numeric(ok[col], errors="coerce").dropna()
        return fmt(v.mean(), ".3g") + (f" ± {fmt(v.std(ddof=1), '.2g')}" if len(v) > 1 else "")

    seeds = f"mean ± s.d. over {len(ok)} seeds" if len(ok) > 1 else "one seed"
    bad = f", {len(r) - len(ok)} did not train" if len(r) > len(ok) else ""
    return (f"MSE {ms('mse')}, KL {ms('kl')} nats ({seeds}{bad}; the paper: MSE {paper_mse}, KL {paper_kl}); "
            f"{int((ok['outcome'] == 'collapsed').sum())} of {len(ok)} collapsed")


def _margin_line(theory: Optional[pd.DataFrame], log10: float) -> str:
    if theory is None or "log10_sigma_x2" not in theory:
        return "n/a"
    r = theory[(theory["log10_sigma_x2"].astype(float) - log10).abs() < 1e-9]
    if not len(r):
        return "n/a"
    r = r.iloc[0]
    return (f"{fmt(r['margin'], '.4g')} nats (J_collapse {fmt(r['J_collapse'], '.4g')} − J* {fmt(r['J_opt'], '.4g')}; "
            f"{fmt(r['active'], 'd')} of {D_Z_SECTION4} latent directions active, σz²* = {fmt(r['sigma_z2_opt'], '.3g')})")


def summary(res) -> dict:
    """Strings for the page's prose from loaded results (or None): every result key "no results yet" without
    results, "n/a" where a result lacks a value. Built only from the numbers; the paper's σx² = 1 row and the
    outcome rule are quoted beside them."""
    p1 = paper_table("table1", as_printed=True)
    row = p1[p1["log10_sigma_x2"].astype(float) == 0.0]
    out = {k: "no results yet" for k in SUMMARY_KEYS}
    out.update(cl_p_mse=str(row["mse"].iloc[0]) if len(row) else "n/a",
               cl_p_kl=str(row["kl"].iloc[0]) if len(row) else "n/a",
               cl_rule=(f"collapsed = KL below {cl.KL_COLLAPSED:g} nats and reconstructions that ignore the input "
                        f"(their variance across images below {_recon_var_min():g}, or an MSE within "
                        f"{cl.MSE_BAND:.0%} of tr C); otherwise escaped"),
               cl_claim_text=smc.CLAIMS[0][1], cl_claim_rule=cc.RULE_COLLAPSE)
    if res is None:
        return out
    out.update({k: "n/a" for k in SUMMARY_KEYS})
    out["cl_label"] = res.label
    m = res.metrics
    runs = res.tables.get(cl.RUNS)
    theory = res.tables.get(cl.THEORY)
    out["cl_run"] = f"{res.label}. {run_line(m)}"
    if runs is not None and len(runs):
        out["cl_random"], out["cl_collapsed"] = _count_line(runs, "random"), _count_line(runs, "collapsed")
        out["cl_answer"] = answer(runs, float(m.get("sigma_x2", 1.0)))
        out["cl_table1"] = table1_row_line(runs, out["cl_p_mse"], out["cl_p_kl"], float(m.get("sigma_x2", 1.0)))
        out["cl_kl"] = _range_line(runs, "kl")
        out["cl_claim"] = claim_line(res, runs)
        out["cl_achieved"] = _range_line(runs, "margin_achieved")
        trc = pd.to_numeric(runs["tr_c"], errors="coerce").dropna()
        if len(trc):
            out["cl_trc"] = fmt(trc.iloc[0], ".4g")
    out["cl_margin_hi"], out["cl_margin_lo"] = _margin_line(theory, 0.0), _margin_line(theory, -1.0)
    lam = (m.get("theory") or {}).get("lambda_max")
    if lam is not None:
        out["cl_lam_max"] = fmt(lam, ".4g")
    return out


def claim_line(res, runs: pd.DataFrame) -> str:
    """Table 1's claim "σx² = 1 collapses the posterior" (judged on the smoothness page) read with these runs and,
    when the smoothness page's results lie beside these (same results folder), its σx² = 1 row."""
    path = getattr(res, "path", None)
    sm_res = sm.EXPERIMENT.find(path.parent.parent) if path is not None else None
    if sm_res is not None and sm_res.is_smoke and not getattr(res, "is_smoke", False):
        sm_res = None
    row = smc.table1_row(sm_res) if sm_res is not None else None
    trc = smc.trace_c(sm_res) if sm_res is not None else (None, "no Table 1 run beside these results")
    p1 = paper_table("table1")
    p1 = p1[p1["log10_sigma_x2"] == 0.0]
    paper = {c: float(p1[c].iloc[0]) for c in ("kl", "mi", "sigma_z2")} if len(p1) else {}
    status, ev = cc.collapse_claim(row, trc, runs, paper)
    return f"{status} ({ev})"


def _recon_var_min() -> float:
    from vaebook.metrics.recon import RECON_VAR_MIN

    return RECON_VAR_MIN


def run_line(m: dict) -> str:
    """Images, steps per model, learning rates, seeds and σx² of a run, and how many models reached a plateau
    (:func:`vaebook.train.curve.plateau_line`), from its metrics."""
    recs = m.get("records") or []
    steps = [r.get("steps") for r in recs if r.get("steps")]
    n, t = m.get("n_train"), m.get("train_config") or {}
    bits = [f"{n:,} training images" if n else "images n/a",
            f"{max(steps):,} steps per model (at most {t.get('epochs', 'n/a')} epoch(s) of batch "
            f"{t.get('batch_size', 'n/a')})" if steps else "steps n/a",
            "learning rates " + ", ".join(f"{v:g}" for v in m.get("lrs") or []) if m.get("lrs") else "lr n/a",
            f"seeds {', '.join(str(s) for s in m.get('seeds') or [])}" if m.get("seeds") else "seeds n/a",
            f"σx² = {fmt(m.get('sigma_x2'), 'g')}, d_z = {m.get('d_z', 'n/a')}, metrics on "
            f"{fmt(m.get('n_eval'), ',d')} training images"]
    return (", ".join(bits) + f"; loss curves: {plateau_line([r.get('plateau') for r in recs if not r.get('failed')])}"
            + f"; {train_time_line(recs)}")


# -- figures -----------------------------------------------------------------------------------------------
MARKERS = {"collapsed": "x", "escaped": "o", "did not train": "^"}
COLOURS = {"random": "tab:blue", "collapsed": "tab:red"}


def outcome_figure(runs: pd.DataFrame, kl_threshold: float):
    """Per run: final KL and MSE against the learning rate, one colour per initialisation, seeds as points
    (× collapsed, ○ escaped, △ did not train), with the KL threshold and tr C (the mean image's MSE)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.3))
    lrs = sorted(runs["lr"].astype(float).unique()) if len(runs) else []
    pos = {v: i for i, v in enumerate(lrs)}
    offset = {init: (-0.12 if init == "random" else 0.12) for init in cl.INITS}
    for ax, col, lab in ((axes[0], "kl", "final KL (nats)"), (axes[1], "mse", "final MSE (summed over pixels)")):
        for r in runs.itertuples():
            y = pd.to_numeric(pd.Series([getattr(r, col)]), errors="coerce").iloc[0]
            if pd.isna(y):
                y = 0.0
            jitter = 0.05 * ((int(r.seed) % 3) - 1)
            ax.scatter(pos[float(r.lr)] + offset.get(r.init, 0.0) + jitter, y,
                       marker=MARKERS.get(r.outcome, "o"), color=COLOURS.get(r.init, "0.3"),
                       facecolors="none" if r.outcome == "escaped" else None, s=30, lw=1.2)
        ax.set_xticks(range(len(lrs)))
        ax.set_xlim(-0.5, max(len(lrs), 1) - 0.5)
        ax.set_xticklabels([f"{v:g}" for v in lrs])
        ax.set_xlabel("Adam learning rate")
        ax.set_ylabel(lab, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].axhline(kl_threshold, color="0.4", ls="--", lw=0.8)
    axes[0].set_yscale("symlog", linthresh=0.1)
    # KL ≥ 0: the axis from just below 0 to above the largest KL, ticked at 0 and the decades in between
    kl = pd.to_numeric(runs["kl"], errors="coerce").dropna() if "kl" in runs else pd.Series(dtype=float)
    top = 1.8 * max(1.0, float(kl.max()) if len(kl) else 1.0)
    axes[0].set_ylim(-0.02, top)
    ticks = [0.0] + [10.0 ** k for k in range(-1, int(np.floor(np.log10(top))) + 1)]
    axes[0].set_yticks(ticks, [f"{t:g}" for t in ticks])
    axes[0].minorticks_off()
    trc = pd.to_numeric(runs.get("tr_c", pd.Series(dtype=float)), errors="coerce").dropna()
    if len(trc):
        axes[1].axhline(float(trc.iloc[0]), color="0.4", ls="--", lw=0.8)
        mse = pd.to_numeric(runs["mse"], errors="coerce").dropna() if "mse" in runs else pd.Series(dtype=float)
        axes[1].set_ylim(top=1.08 * max(float(trc.iloc[0]), float(mse.max()) if len(mse) else 0.0))
        axes[1].text(0.01, float(trc.iloc[0]), " tr C (mean image)", fontsize=7, va="bottom",
                     transform=axes[1].get_yaxis_transform())
    axes[0].text(0.01, kl_threshold, f" KL = {kl_threshold:g}", fontsize=7, va="bottom",
                 transform=axes[0].get_yaxis_transform())
    handles = [plt.Line2D([], [], color=COLOURS[i], marker="s", ls="", label=f"{i} start") for i in cl.INITS]
    handles += [plt.Line2D([], [], color="0.3", marker=MARKERS[o], ls="", markerfacecolor="none"
                           if o == "escaped" else "0.3", label=o) for o in cl.OUTCOMES]
    axes[1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("Outcome per run (seeds as points)", fontsize=9)
    fig.tight_layout()
    return fig


def theory_figure(theory: pd.DataFrame, runs: Optional[pd.DataFrame] = None, sigma_x2: float = 1.0,
                  lam_max: Optional[float] = None):
    """The linear VAE's J_collapse − J* against log10 σx² (d_z = 8, the data's covariance), with the trained
    networks' J_collapse − (−ELBO − const) at their σx² beside it (the same quantity for a nonlinear model)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.3))
    t = theory.sort_values("log10_sigma_x2")
    ax.plot(t["log10_sigma_x2"], t["margin"], "o-", color="0.25", ms=3, lw=1.2,
            label="linear VAE: J_collapse − J* (optimum)")
    if runs is not None and len(runs):
        for init in cl.INITS:
            d = runs[runs["init"] == init]
            v = pd.to_numeric(d["margin_achieved"], errors="coerce").dropna()
            if len(v):
                x = math.log10(float(sigma_x2)) + (0.01 if init == "collapsed" else -0.01)
                ax.scatter(np.full(len(v), x), v, color=COLOURS[init],
                           s=18, marker="D", label=f"networks, {init} start: J_collapse − J (achieved)")
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.set_xlabel("log₁₀ σx²")
    ax.set_ylabel("nats per image below collapse")
    title = f"Depth of the optimum below the collapsed solution (d_z = {D_Z_SECTION4})"
    if lam_max is not None:
        title += f"\nλ_max(C) = {lam_max:.3g}: the linear margin is 0 only for σx² ≥ λ_max"
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    return fig


__all__ = ["SUMMARY_KEYS", "summary", "answer", "table1_row_line", "claim_line", "run_line", "outcome_figure",
           "theory_figure", "TABLE1_LR", "curve_groups"]


def curve_groups(res) -> list:
    """The runs' training loss curves for :func:`vaebook.lab.curve_figure.show_curves`: one group, a panel per run
    (start, learning rate, seed) in plan order, so the seeds of one start and rate share a row."""
    recs = (res.metrics.get("records") or []) if res is not None else []
    if not recs:
        return []
    s2 = res.metrics.get("sigma_x2") or 1.0
    return [(f"the {len(recs)} runs at σx² = {fmt(s2, 'g')}",
             [(f"{r['init']} start, lr {r['lr']:g}, seed {r['seed']}", r) for r in recs])]
