"""The smoothness page's prose and figures: the glued strings (:func:`summary`), each section's run line
(:func:`run_line`, with the models' cumulative training time) and the figures (D.3, D.4 / E.5, the sweeps).
Not an experiment (no ``EXPERIMENT``); the rules are in :mod:`._smoothness_claims`."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

import numpy as np
import pandas as pd
import torch

from vaebook.experiments import _collapse_claims as cc
from vaebook.experiments import _smoothness_claims as rules
from vaebook.experiments import smoothness as sm
from vaebook.lab.compare import spearman, verdict_line
from vaebook.lab.display import PAGE_IN, fmt, pct, reading_style
from vaebook.metrics.tsne import tsne_grid
from vaebook.paper import paper_table
from vaebook.train.curve import plateau_line


def train_time_line(recs: list) -> str:
    """The cumulative training time of the models behind ``recs`` (one record per model; ``train_s``, the zoo's
    training wall time, so a model reused from an earlier sitting counts with its own training), or why not."""
    recs = [r for r in recs if not r.get("failed")]
    t = [float(r["train_s"]) for r in recs if r.get("train_s") is not None]
    if not recs:
        return "training time n/a (no model trained)"
    if not t:
        return f"cumulative training time of its {len(recs)} models: not recorded in this run"
    s = f"{sum(t):,.0f} s ({sum(t) / 3600:.2g} h)"
    return (f"cumulative training time of its {len(recs)} models {s}, reused models included" if len(t) == len(recs)
            else f"cumulative training time at least {s} ({len(t)} of {len(recs)} models recorded)")


def run_line(res, table: Optional[str] = None) -> str:
    """Images, epochs, steps per model (with their share of the paper's), seeds, how many models reached a plateau
    (:func:`vaebook.train.curve.plateau_line`) and their cumulative training time; with ``table``, that table's
    models only."""
    if res is None:
        return "n/a"
    m = res.metrics
    t, n, steps = m.get("train_config") or {}, m.get("n_train"), rules.model_steps(res, table)
    epochs = (m.get("epochs_by_table") or {}).get(table, t.get("epochs"))
    seed = (res.provenance.get("parameters") or {}).get("seed", t.get("seed"))
    recs = rules.records(res, table)
    trained = [r.get("plateau") for r in recs if not r.get("failed")]
    return ", ".join([
        f"{n:,} training images ({pct(n, sm.PAPER_IMAGES)} of the paper's {sm.PAPER_IMAGES:,})" if n else "images n/a",
        f"{epochs} of the paper's {sm.PAPER_EPOCHS} epochs" if epochs else "epochs n/a",
        f"{steps:,} steps per model ({pct(steps, sm.PAPER_STEPS)} of the paper's {sm.PAPER_STEPS:,.0f})" if steps
        else "steps n/a",
        f"one seed ({seed}): every number is a single run, with no error bar (the paper states no seeds either)"]) + \
        f"; loss curves{f' of {sm.TITLES.get(table, table)}' if table else ''}: {plateau_line(trained)}" + \
        f"; {train_time_line(recs)}"


def summary(res) -> dict:
    """Strings for the page's prose from loaded :class:`~vaebook.lab.results.Results` (or None)."""
    p1, pe8 = paper_table("table1", as_printed=True), paper_table("tableE8", as_printed=True)

    def paper_at(tab, key, value, col):
        row = tab[tab[key].astype(float) == value]
        return row[col].iloc[0] if len(row) else "n/a"

    out = {"sm_label": res.label if res is not None else "no results",
           "sm_p_sz_hi": paper_at(p1, "log10_sigma_x2", 0.0, "sigma_z2"),
           "sm_p_sz_lo": paper_at(p1, "log10_sigma_x2", -1.0, "sigma_z2"),
           "sm_p_kl_hi": paper_at(p1, "log10_sigma_x2", 0.0, "kl"),
           "sm_p_mi_hi": paper_at(p1, "log10_sigma_x2", 0.0, "mi"),
           "sm_p_els_hi": paper_at(p1, "log10_sigma_x2", 0.0, "els"),
           "sm_p_els_lo": paper_at(p1, "log10_sigma_x2", -1.0, "els"),
           "sm_p_det_els_lo": paper_at(p1, "log10_sigma_x2", -1.0, "det_els"),
           "sm_p_e8_mse_hi": paper_at(pe8, "log10_sigma_z2", 1.0, "mse"),
           "sm_p_e8_kl_hi": paper_at(pe8, "log10_sigma_z2", 1.0, "kl"),
           "sm_p_loss_collapse": fmt(float(paper_at(p1, "log10_sigma_x2", 0.0, "mse")) / 2.0
                                     + float(paper_at(p1, "log10_sigma_x2", 0.0, "kl"))),
           "sm_p_mi_max": fmt(pd.to_numeric(p1["mi"]).max(), ".3g"),
           "sm_p_e8_mi_max": fmt(pd.to_numeric(pe8["mi"]).max(), ".3g")}
    keys = ("sm_sz_hi", "sm_sz_lo", "sm_kl_hi", "sm_mi_hi", "sm_els_hi", "sm_els_lo", "sm_det_els_lo", "sm_sz_rho",
            "sm_t1_verdicts", "sm_e8_verdicts", "sm_mi_cap", "sm_e8_mse_hi", "sm_e8_mse_lo", "sm_e8_kl_hi",
            "sm_e8_mi_hi", "sm_e8_mi_lo", "sm_x_hi", "sm_x_lo", "sm_z_hi", "sm_z_lo", "sm_n_train", "sm_steps",
            "sm_loss_hi", "sm_j_collapse")
    out.update({k: "n/a" for k in keys})
    res8 = rules.table_results(res, "tableE8")
    out.update(sm_e8_run=("not run: no results hold Table E.8" if res8 is None else
                          "the run of Table 1, Table E.8's models: " + run_line(res, "tableE8") if res8 is res else
                          f"this preset's run did not include Table E.8, so this section shows another run: "
                          f"{res8.label}. {run_line(res8, 'tableE8')}"))
    out.update(sm_run=run_line(res, "table1"), sm_band=fmt(rules.TREND_BAND, "g"), sm_mi_tol=fmt(rules.MI_CEILING_TOL, "g"),
               sm_collapse_tol=fmt(rules.COLLAPSE_TOL, "g"), sm_margin=fmt(cc.OBJECTIVE_MARGIN, "g"),
               sm_margin_mle=fmt(cc.OBJECTIVE_MARGIN_MLE, "g"))
    for (cid, _, _), c in zip(rules.CLAIMS, rules.claims(res)):
        out[f"sm_c_{cid}"] = f"{c['status']} ({c['evidence']})"
        out[f"sm_r_{cid}"] = rules.RULES[cid]
    if res is None:
        return out
    t1 = res.tables.get("ours_table1")
    e8 = res8.tables.get("ours_tableE8") if res8 is not None else None
    if t1 is not None and len(t1):
        hi, lo = t1.loc[t1["log10_sigma_x2"].idxmax()], t1.loc[t1["log10_sigma_x2"].idxmin()]
        out.update(sm_x_hi=fmt(10 ** hi["log10_sigma_x2"], ".2g"), sm_x_lo=fmt(10 ** lo["log10_sigma_x2"], ".2g"))
        for k, col in (("sz", "sigma_z2"), ("kl", "kl"), ("mi", "mi"), ("els", "els"), ("det_els", "det_els")):
            if col in t1:
                out[f"sm_{k}_hi"], out[f"sm_{k}_lo"] = fmt(hi[col]), fmt(lo[col])
        if "det_els" not in t1 or pd.isna(lo["det_els"]):
            out["sm_det_els_lo"] = "not in this run (it trained the stochastic encoder only)"
        s2 = 10 ** float(hi["log10_sigma_x2"])
        if pd.notna(hi.get("final_loss")):
            out["sm_loss_hi"] = fmt(cc.eq3_loss(hi["final_loss"], s2))
        trc = rules.trace_c(res)
        out["sm_j_collapse"] = (f"{fmt(cc.j_collapse_eq3(trc[0], s2))} ({trc[1]})" if trc[0] is not None
                                else f"not computed: {trc[1]}")
        if "sigma_z2" in t1 and t1["sigma_z2"].notna().sum() >= 3:
            ok = t1["sigma_z2"].notna()
            out["sm_sz_rho"] = fmt(spearman(t1.loc[ok, "log10_sigma_x2"], t1.loc[ok, "sigma_z2"]), ".2f")
    if e8 is not None and len(e8):
        hi, lo = e8.loc[e8["log10_sigma_z2"].idxmax()], e8.loc[e8["log10_sigma_z2"].idxmin()]
        out.update(sm_z_hi=fmt(10 ** hi["log10_sigma_z2"], ".2g"), sm_z_lo=fmt(10 ** lo["log10_sigma_z2"], ".2g"),
                   sm_e8_mse_hi=fmt(hi.get("mse")), sm_e8_mse_lo=fmt(lo.get("mse")), sm_e8_kl_hi=fmt(hi.get("kl")),
                   sm_e8_mi_hi=fmt(hi.get("mi")), sm_e8_mi_lo=fmt(lo.get("mi")))
    if res.tables.get("table1") is not None:
        out["sm_t1_verdicts"] = verdict_line(res.tables.get("table1"))
    if e8 is not None:
        out["sm_e8_verdicts"] = verdict_line(res8.tables.get("tableE8"))
    out["sm_mi_cap"] = fmt(res.metrics.get("mi_cap_ln_batch"), ".3g")
    out["sm_n_train"] = fmt(res.metrics.get("n_train"), "d") if res.metrics.get("n_train") else "n/a"
    steps = [r.get("steps") for r in res.metrics.get("records", []) if r.get("steps")]
    out["sm_steps"] = fmt(max(steps), "d") if steps else "n/a"
    return out


# --- figures (the panels are computed in each unit's evaluation) ------------------------------
@torch.no_grad()
def perturbed_decodes(model, x, s2: float, seed: int, n_images: int = 4, n_perturb: int = 6) -> torch.Tensor:
    """Figure D.3 panel: rows [original | reconstruction | decodes of μφ(x) + ε, ε ~ N(0, s²I)] (one image)."""
    g = torch.Generator().manual_seed(seed)
    xs = x[:n_images].to(model.device)
    mu = model.encode(xs).mean
    eps = torch.randn((n_perturb,) + tuple(mu.shape), generator=g, dtype=torch.float64) * math.sqrt(s2)
    pert = model.decode(mu.unsqueeze(0) + eps.to(mu.device, mu.dtype))  # P×B×1×28×28
    cols = [xs.cpu(), model.decode(mu).cpu()] + [pert[j].cpu() for j in range(n_perturb)]
    return torch.cat([torch.cat([c[i, 0] for c in cols], dim=1) for i in range(len(xs))], dim=0).float()


def tsne_panel(model, x, labels, n: int, seed: int, max_iter: Optional[int]) -> dict:
    """Figures D.4 / E.5 panel: t-SNE of μφ(x) (coloured by digit) with n/2 prior draws."""
    from threadpoolctl import threadpool_limits

    from vaebook.metrics.tsne import tsne_latents

    kw = {} if max_iter is None else {"max_iter": max_iter}
    # Barnes-Hut on a few hundred points: OpenMP threads cost more than they save (and a lot on a busy CPU)
    with threadpool_limits(limits=1 if n < 1000 else None):
        r = tsne_latents(model, x[:n], labels[:n], n_prior=max(10, n // 2), seed=seed, **kw)
    return {k: torch.as_tensor(np.asarray(r[k])) for k in ("embedding", "labels", "is_prior")}


def figure_perturbed(panels: dict, s2: float):
    """Figure D.3: per model, rows of [original (red) | reconstruction (blue) | decodes of μφ(x) + ε], titles at
    reading size."""
    names = list(panels)
    rows = panels[names[0]].shape[0] // 28
    n_perturb = panels[names[0]].shape[1] // 28 - 2
    with reading_style():
        fig, axes = plt.subplots(len(names), 1, figsize=(max(PAGE_IN, 0.75 * (n_perturb + 2)),
                                                         0.75 * rows * len(names) + 0.5 * len(names)), squeeze=False)
        for ax, name in zip(axes[:, 0], names):
            ax.imshow(panels[name].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{name}: original (red), reconstruction (blue), {n_perturb} decodes of μφ(x) + ε, s² = {s2:g}")
            for k, color in ((0, "red"), (1, "blue")):
                ax.add_patch(plt.Rectangle((k * 28 + 0.5, 0.5), 27, 28 * rows - 2, fill=False, edgecolor=color, lw=2))
        fig.tight_layout()
    return fig


def figure_tsne(panels: dict):
    """Figures D.4 / E.5: t-SNE of μφ(x) coloured by digit (colour-blind-safe), prior draws as black crosses, two
    panels a row with one legend (see :func:`vaebook.metrics.tsne.tsne_grid`)."""
    return tsne_grid([(name, {k: np.asarray(v) for k, v in r.items()}) for name, r in panels.items()], ncols=2)


#: each quantity of Tables 1 and E.8 in words, with its unit (the ``det_`` columns: the deterministic encoder's)
SWEEP_TITLES = {"mse": "MSE (summed over pixels)", "kl": "KL(q‖p) (nats)", "sigma_z2": "learned σz²",
                "mi": "MI bound, Eq. (D.1) (nats)", "gap_1e-2": "expected gap Δ², s² = 10⁻²",
                "gap_1e-3": "expected gap Δ², s² = 10⁻³", "els": "ELS (higher = rougher)"}


def sweep_title(metric: str) -> str:
    """A column of Table 1 / E.8 in words (``det_els`` → "ELS (higher = rougher)": the figure's heading names the
    encoder)."""
    return SWEEP_TITLES.get(metric.removeprefix("det_"), metric)


def sweep_groups(table: pd.DataFrame) -> list:
    """``[(heading, metrics)]``: the stochastic encoder's quantities, then the deterministic encoder's (if any)."""
    metrics = list(dict.fromkeys(table["metric"]))
    det = [m for m in metrics if m.startswith("det_")]
    sto = [m for m in metrics if m not in det]
    return [(h, ms) for h, ms in (("stochastic encoder (learned σz²)", sto), ("deterministic encoder (σz² = 0)", det))
            if ms]


def figure_sweep(table: pd.DataFrame, key: str, metrics: Optional[Sequence[str]] = None, title: str = ""):
    """Paper vs ours over the sweep, one panel per quantity (``metrics``, default all), two panels a row at the page's
    width, titles in words with units, log scale where every value is positive; the shaded band is the
    factor-``TREND_BAND`` magnitude a "trend holds" cell must stay within."""
    band = rules.TREND_BAND
    metrics = list(metrics or dict.fromkeys(table["metric"]))
    cols = 2
    rows = -(-len(metrics) // cols)
    xlabel = {"log10_sigma_x2": "log₁₀ σx² (fixed decoder variance)",
              "log10_sigma_z2": "log₁₀ σz² (fixed encoder variance)"}.get(key, key)
    with reading_style():
        fig, axes = plt.subplots(rows, cols, figsize=(PAGE_IN, 2.9 * rows + 0.5 + 0.35 * bool(title)), squeeze=False)
        for ax, m in zip(axes.flat, metrics):
            t = table[table["metric"] == m].sort_values(key)
            p = t.dropna(subset=["paper"])
            o = t.dropna(subset=["ours"])
            ax.fill_between(p[key], p["paper"] / band, p["paper"] * band, color="0.88", lw=0,
                            label=f"paper ×/÷ {band:g} (trend band)")
            ax.plot(p[key], p["paper"], "o-", color="0.3", ms=4, lw=1.2, label="paper")
            ax.plot(o[key], o["ours"], "s-", color="#0173b2", ms=5, lw=1.5, label="ours")
            vals = pd.concat([p["paper"], o["ours"]])
            if len(vals) and (vals > 0).all():
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(sweep_title(m))
            ax.set_xlabel(xlabel)
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        head = 0.5 + 0.35 * bool(title)
        fig.tight_layout(rect=(0, 0, 1, 1 - head / (2.9 * rows + head)))
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=3, frameon=False,
                   bbox_to_anchor=(0.5, 1 - 0.35 * bool(title) / (2.9 * rows + head)))
        if title:
            fig.suptitle(title, y=1.0, fontweight="bold")
    return fig


def curve_groups(res, tables: Sequence[str] = ("table1", "tableE8")) -> list:
    """The models' training loss curves for :func:`vaebook.lab.curve_figure.show_curves`: Table 1's stochastic and
    deterministic encoders, then Table E.8 (of ``tables``), a panel per model from the largest fixed variance down."""
    if res is None:
        return []
    out = []
    for table, encoding, head, var in (("table1", "stochastic", "Table 1, stochastic encoder (learned σz²)", "σx²"),
                                       ("table1", "deterministic", "Table 1, deterministic encoder (σz² = 0)", "σx²"),
                                       ("tableE8", "stochastic", "Table E.8, σz² fixed, σx² by MLE", "σz²")):
        recs = sorted((r for r in rules.records(res, table) if r.get("encoding", "stochastic") == encoding),
                      key=lambda r: -float(r["log10"])) if table in tables else []
        if recs:
            out.append((head, [(f"log₁₀ {var} = {float(r['log10']):g}", r) for r in recs]))
    return out


__all__ = ["summary", "run_line", "train_time_line", "perturbed_decodes", "tsne_panel", "figure_perturbed",
           "figure_tsne", "figure_sweep", "sweep_groups", "sweep_title", "curve_groups"]
