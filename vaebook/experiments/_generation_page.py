"""The page layer of Table 4 and Table 6 (:mod:`vaebook.experiments.generation`): the results paragraph, the glued
strings of the page's prose, the MLE-vs-trainable tally it quotes, and the figures (samples, t-SNE, time per
epoch). The experiment's science (its units, evaluation, comparison and claims) stays in ``generation``."""
from __future__ import annotations

from typing import Optional

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.patches import Patch

from vaebook.data import dataset_spec
from vaebook.experiments import _paired6 as paired
from vaebook.experiments import _section6 as scale
from vaebook.lab.compare import verdict_line
from vaebook.lab.display import PAGE_IN, fmt, grid_figure, reading_style
from vaebook.metrics.tsne import tsne_grid

#: the latent sources' names in figures and column labels
SOURCE_LABELS = {"prior": "prior", "2nd-vae": "2nd-stage VAE", "gmm10": "GMM-10", "gmm100": "GMM-100"}
MLE_ROWS = scale.MLE_ROWS


def results_parts(exp, res, t, st: dict, ran: list) -> list:
    """The results paragraph's own sentences of the generation page ``exp`` (see
    :meth:`~vaebook.experiments._section6.base.Section6Experiment.results_markdown`)."""
    out, s0 = [], next(iter(st.values()), {})
    if s0.get("fid_samples"):
        fid = f"FIDs from {fmt(s0['fid_samples'], ',.0f')} samples with {fmt(s0.get('fid_dims'), '.0f')}-d " \
              "Inception features"
        out.append(fid + ("." if s0.get("fid_comparable") else " (not the paper's 10,000 samples with 2048-d "
                                                                "features: only orderings are compared)."))
    out += floor_sentences(st, ran)
    wins = []
    for d in ran:
        w = mle_vs_trainable(t, d)
        if w["ours"][1]:
            clear = [pr for r in MLE_ROWS for m in paired.FID_SOURCES
                     for pr in [paired.pair(t, res.metrics, d, m, r, r.replace("mle-", "trainable-"))] if pr]
            wins.append(f"{w['ours'][0]} of {w['ours'][1]} on {scale.dataset_label(d)} by the point values, "
                        f"{sum(pr['outcome'] == 'yes' for pr in clear)} with the paired interval below zero "
                        f"(paper {w['paper'][0]} of {w['paper'][1]})")
    if wins:
        out.append("\n\n**MLE against trainable Σx.** FID cells where the MLE model beats the trainable "
                   "model of the same shape: " + "; ".join(wins) + ". The claim below counts only the clear "
                   "ones, and says per shape where they come from.")
    vals = res.metrics.get("values", {})
    sig = [f"{fmt(v, '.3g')} on {scale.dataset_label(d)} (paper {exp.paper_sigma2[d]:g})"
           for d in ran if d in exp.paper_sigma2
           for v in [(vals.get(d, {}).get("mle-iso-i") or {}).get("sigma2")] if v is not None]
    if sig:
        out.append("\n\n**Learned variance.** Our Iso-I (MLE) model's learned σx²: " + "; ".join(sig) + ".")
    for d in ran:
        per = [f"{scale.display(m)} {fmt(v.get('sigma2_test', v.get('sigma2')), '.3g')}"
               for m, v in vals.get(d, {}).items() if v.get("sigma2_test", v.get("sigma2")) is not None]
        conv = [why for m in vals.get(d, {}) for ok, why in [paired.converged(res.metrics, t, d, m)] if why]
        if per:
            out.append(f"\n\n**Every model's σx² ({scale.dataset_label(d)}, mean over pixels and test images as "
                       "the model evaluates it).** " + "; ".join(per) + "."
                       + (" Did the trainable Σx converge (within "
                          f"{paired.CONVERGED_FACTOR:g}× of calibration 1)? " + "; ".join(conv) + "." if conv else ""))
    return out


def summary(exp, res) -> dict:
    """Strings for the prose of the generation page ``exp`` (glue); 'n/a' where there are no results."""
    out = {"gen_label": "no results", "gen_verdicts": "n/a", "gen_sigma2_mnist": "n/a", "gen_sigma2_celeba": "n/a",
           "gen_fid_samples": "n/a", "gen_fid_dims": "n/a", "gen_mle_wins_mnist": "n/a",
           "gen_mle_wins_celeba": "n/a"}
    paper = exp.paper_frame().assign(ours=lambda f: f["paper"])
    for d, key in (("mnist", "mnist"), ("celeba64", "celeba")):
        w = mle_vs_trainable(paper, d)["paper"]
        out[f"gen_paper_mle_wins_{key}"] = f"{w[0]} of {w[1]}"
    if res is None:
        return out
    out["gen_label"] = res.label
    t = res.tables.get(exp.table)
    if t is not None:
        out["gen_verdicts"] = verdict_line(t) or "n/a"
        for d, key in (("mnist", "mnist"), ("celeba64", "celeba")):
            w = mle_vs_trainable(t, d)["ours"]
            out[f"gen_mle_wins_{key}"] = f"{w[0]} of {w[1]}" if w[1] else "n/a (rows not run)"
    vals = res.metrics.get("values", {})
    for d, key in (("mnist", "mnist"), ("celeba64", "celeba")):
        out[f"gen_sigma2_{key}"] = fmt((vals.get(d, {}).get("mle-iso-i") or {}).get("sigma2"), ".3g")
    st = next(iter(res.metrics.get("settings", {}).values()), {})
    if st:
        out["gen_fid_samples"] = fmt(st.get("fid_samples"), ",.0f")
        out["gen_fid_dims"] = fmt(st.get("fid_dims"), ".0f")
    return out


def floor_sentences(st: dict, ran) -> list:
    """The results paragraph's noise-floor sentence per dataset (the real-vs-real FID/KID at the run's N)."""
    out = []
    for d in ran:
        f = (st.get(d) or {}).get("floor")
        if f:
            out.append(f"FID's bias at this sample size ({scale.dataset_label(d)}): {fmt(f['n'], ',.0f')} real "
                       f"training images score FID {fmt(f['fid'], '.1f')} (KID {fmt(f['kid'], '.4f')}) against the test "
                       "reference. Every model scored at the same N carries a similar bias, so it is not the noise of a "
                       "comparison: a claim is decided by the 95 % interval of the paired bootstrap difference of the "
                       "two models' FIDs (their samples share latent draws and the reference), which must exclude 0. "
                       "KID (ours only) is unbiased in the sample size; FID is not.")
    return out


def mle_vs_trainable(df: pd.DataFrame, dataset: str) -> dict:
    """The paper's comparison of Table 4's bottom eight rows: in how many FID cells does the MLE model beat
    the trainable-Σx model of the same shape? ``{"ours": [wins, cells], "paper": [wins, cells]}`` over the
    cells where both of ours exist."""
    ours, paper = [0, 0], [0, 0]
    if df is None or df.empty:
        return {"ours": ours, "paper": paper}
    d = df[(df["dataset"] == dataset) & df["metric"].astype(str).str.startswith("fid")]
    for shape in ("iso-i", "diag-i", "iso-d", "diag-d"):
        a = d[d["row"] == f"mle-{shape}"].set_index("metric")
        b = d[d["row"] == f"trainable-{shape}"].set_index("metric")
        for m in a.index.intersection(b.index):
            pa, pb, oa, ob = a.at[m, "paper"], b.at[m, "paper"], a.at[m, "ours"], b.at[m, "ours"]
            if any(pd.isna(v) for v in (pa, pb, oa, ob)):
                continue
            paper[0] += int(pa < pb)
            paper[1] += 1
            ours[0] += int(oa < ob)
            ours[1] += 1
    return {"ours": ours, "paper": paper}


# -- figures -----------------------------------------------------------------------------------
def samples_figure(rows: dict, test: torch.Tensor, sources, n_show: int, title: str):
    """Figures J.7/J.8/J.10: ground truth, then per model reconstruction | samples per latent source."""
    blank = torch.ones(n_show, *test.shape[1:])

    def pad(x):  # every group n_show wide (white where there are fewer images, or none)
        x = blank if x is None else x[:n_show].cpu()
        return torch.cat([x, blank[: n_show - x.shape[0]]]) if x.shape[0] < n_show else x

    groups = ["reconstruction"] + [SOURCE_LABELS[s] for s in sources]
    blocks = [("GT", torch.cat([pad(test)] + [blank] * len(sources)))]  # under the reconstructions
    for name, imgs in rows.items():
        blocks.append((scale.display(name), torch.cat([pad(imgs.get(k)) for k in ["recon", *sources]])))
    return grid_figure(blocks, columns=groups, title=title)


def tsne_figure(maps: list):
    """Figure J.6: t-SNE of the test codes (colour = digit, colour-blind-safe) with prior draws (black crosses), one
    panel per model, four a row, one legend."""
    return tsne_grid([(scale.display(name), {k: v.numpy() for k, v in t.items()}) for name, t in maps], ncols=4,
                     panel_in=2.4)


def time_figure(times: dict, order: Optional[dict] = None):
    """Figure 2: seconds per training epoch of each model, one panel per dataset, at the page's width and reading
    sizes; drawn on the page from ``metrics.json``'s ``time_per_epoch`` (``order``: dataset → its models in the
    table's order, e.g. ``settings[d]["models"]``; JSON keeps them sorted by name)."""
    ds = [d for d in times if times[d]]
    colours = {"baseline": "#949494", "trainable_Sigma_x": "#de8f05", "proposed_MLE": "#0173b2"}
    with reading_style():
        rows = max((len(times[d]) for d in ds), default=1)
        fig, axes = plt.subplots(1, max(1, len(ds)), figsize=(PAGE_IN, 0.32 * rows + 1.4), squeeze=False)
        for ax, d in zip(axes[0], ds):
            names = [n for n in (order or {}).get(d, []) if n in times[d]]
            names += [n for n in times[d] if n not in names]
            ax.barh(range(len(names)), [times[d][n]["s_per_epoch"] for n in names],
                    color=[colours.get(scale.group(n), "#029e73") for n in names])
            ax.set_yticks(range(len(names)))
            ax.set_yticklabels([scale.display(n) for n in names])
            ax.invert_yaxis()
            ax.set_xlabel(f"seconds per epoch ({', '.join(sorted({times[d][n]['device'] for n in names}))})")
            ax.set_title(dataset_spec(d).label)
        fig.legend(handles=[Patch(color=c, label=lab) for lab, c in
                            (("baselines", colours["baseline"]), ("trainable Σx", colours["trainable_Sigma_x"]),
                             ("MLE Σx (ours)", colours["proposed_MLE"]))],
                   loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False)
        fig.tight_layout()
    return fig


__all__ = ["SOURCE_LABELS", "results_parts", "summary", "floor_sentences", "mle_vs_trainable", "samples_figure",
           "tsne_figure", "time_figure"]
