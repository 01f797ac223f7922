"""Section 6.1 — Table 4 (test MSE and generation FID on MNIST and CelebA), Figures J.6 (t-SNE),
J.7/J.8 (reconstructions and samples) and 2 (training time per epoch).

For every model row: the MSE E‖x − μθ(μφ(x))‖² on the test images (per image, summed over pixels),
then FID (Eq. 12) of images decoded from latents drawn from the prior, a 2nd-stage VAE, or a GMM with
10 / 100 components fitted to the training codes (the paper has no GMM-100 column for MNIST).
The trained models are cached (see :mod:`vaebook.experiments.section6`) and reused by the
``interpolation`` and ``nll`` notebooks.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import pandas as pd
import torch

from vaebook.experiments import section6 as s6
from vaebook.experiments.common import ParamSpec, Run, set_threads, spearman, validate_params, verdict

NOTEBOOK = "generation"
TABLE = "table4"
DEFAULT_DATASETS = ("mnist", "celeba64")
#: the learned Iso-I σx² the paper quotes in Section 6.1
PAPER_ISO_I_SIGMA2 = {"mnist": 0.0037, "celeba64": 0.0040}

PARAMS = s6.section_params(
    DEFAULT_DATASETS,
    sources=ParamSpec("list", choices=s6.SOURCES, allow_none=True, default=None,
                      doc="latent sources for FID; None = all four (GMM-100 only where the paper has it)"),
    tsne_points=ParamSpec("int", min=10, allow_none=True, default=None,
                          doc="MNIST test codes per t-SNE panel (Figure J.6); None = preset; 0 not allowed"),
    figure_images=ParamSpec("int", min=1, max=16, default=8, doc="images per strip in Figures J.7/J.8"),
    **s6.FID_PARAMS,
)


def validate(params: dict, spec: Optional[dict] = None, default_datasets: Sequence[str] = DEFAULT_DATASETS,
             table: str = TABLE) -> dict:
    """Check the notebook's parameters; resolves ``datasets`` and checks that every requested model is
    reported by ``table`` for at least one of them (:class:`ParameterError` otherwise)."""
    p = validate_params(params, spec or PARAMS)
    p["datasets"] = s6.check_datasets(p, default_datasets)
    per = {d: s6.resolve_models(d, p["models"], p["preset"], table) for d in p["datasets"]}
    s6.check_models_apply(per, p["models"], table)
    return p


def plan(p: dict, table: str = TABLE) -> dict:
    """``{dataset: [model names]}`` a run will train/evaluate."""
    return {d: s6.resolve_models(d, p["models"], p["preset"], table) for d in p["datasets"]}


# --------------------------------------------------------------------------------------------
# evaluation of one model
# --------------------------------------------------------------------------------------------
def evaluate_generation(tm: "s6.TrainedModel", data: "s6.Section6Data", ref, sources: Sequence[str], p: dict,
                        fid_n: int, dims: int, n_show: int = 8, log=print) -> tuple[dict, dict, dict]:
    """MSE and FID per latent source for one trained model.

    Returns ``(values, images, reasons)``: ``values[metric]`` (``mse``, ``fid_prior``, …), ``images``
    (``"recon"`` and each source → ``n_show`` images for the figures), ``reasons[metric]`` for sources that
    do not apply.
    """
    from vaebook.metrics.fid import fid
    from vaebook.metrics.recon import mean_mse
    from vaebook.posterior import generate_images

    s = s6.settings(p["preset"])
    model = tm.model
    dev = next(model.parameters()).device
    seed = int(p["seed"])
    vals, imgs, why = {}, {}, {}
    vals["mse"] = mean_mse(model, data.test, s.eval_batch)
    with torch.no_grad():
        model.eval()
        imgs["recon"] = model.reconstruct(data.test[:n_show].to(dev)).cpu()
    vals["sigma2"] = s6.learned_sigma2(model)
    latents = None
    for src in sources:
        col = s6.SOURCE_COLUMN[src]
        skip = s6.source_skip_reason(model, src, len(data.train))
        if skip:
            why[col] = skip
            continue
        if src != "prior" and latents is None:
            latents = s6.encode_train(model, data, s.eval_batch)
        sampler = s6.fit_sampler(model, src, latents, s, seed, dev)
        shown: list = []
        stream = s6.keep_first(generate_images(model, fid_n, src, sampler, seed=seed, batch_size=s.eval_batch),
                               n_show, shown)
        vals[col] = fid(stream, ref, dims=dims, batch_size=s6.fid_batch(dev), device=dev)
        imgs[src] = torch.cat(shown)[:n_show] if shown else None
    return vals, imgs, why


def sources_for(dataset: str, requested: Optional[Sequence[str]], table: str = TABLE) -> list[str]:
    """The requested latent sources that ``table`` has a column for on ``dataset``."""
    cols = set(s6.table_metrics(table, dataset))
    return [src for src in (requested or s6.SOURCES) if s6.SOURCE_COLUMN[src] in cols]


def samples_figure(rows: dict, test: torch.Tensor, sources: Sequence[str], n_show: int, title: str):
    """Figures J.7/J.8/J.10: ground truth, then per model reconstruction | samples per source."""
    blank = torch.ones(n_show, *test.shape[1:])

    def pad(x):  # every group n_show wide (white where there are fewer images, or none)
        x = blank if x is None else x[:n_show].cpu()
        return torch.cat([x, blank[: n_show - x.shape[0]]]) if x.shape[0] < n_show else x

    groups = ["reconstruction"] + [s6.SOURCE_LABELS[src] for src in sources]
    blocks = [("GT", torch.cat([pad(test)] + [blank] * len(sources)))]  # under the reconstructions
    for name, imgs in rows.items():
        parts = [imgs.get("recon")] + [imgs.get(src) for src in sources]
        blocks.append((s6.ROW_BY_NAME[name].display, torch.cat([pad(x) for x in parts])))
    fig = s6.grid_figure(blocks, columns=groups, title=title)
    return fig


def tsne_figure(models: dict, data: "s6.Section6Data", n_points: int, seed: int):
    """Figure J.6: t-SNE of the test codes (coloured by digit) with prior draws (pink)."""
    import matplotlib.pyplot as plt

    from vaebook.metrics.tsne import plot_tsne, tsne_latents

    items = [(n, tm) for n, tm in models.items() if tm.ok]
    cols = min(5, max(1, len(items)))
    rows = max(1, math.ceil(len(items) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.3 * rows), squeeze=False)
    x, y = data.test[:n_points], data.test_labels[:n_points]
    # small maps: one thread (scikit-learn's OpenMP threads spin badly on a busy machine; 40× slower)
    with s6.small_threads(n_points * 1000):
        maps = [tsne_latents(tm.model, x, y, n_prior=max(10, n_points // 2), seed=seed) for _, tm in items]
    for ax, (name, tm), res in zip(axes.flat, items, maps):
        plot_tsne(res, ax=ax, title=s6.ROW_BY_NAME[name].display, point_size=2.0)
        ax.title.set_fontsize(7)
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def time_figure(times: dict):
    """Figure 2: seconds per training epoch of each model, one panel per dataset."""
    import matplotlib.pyplot as plt

    ds = [d for d in times if times[d]]
    fig, axes = plt.subplots(1, max(1, len(ds)), figsize=(4.2 * max(1, len(ds)), 3.2), squeeze=False)
    for ax, d in zip(axes[0], ds):
        names = list(times[d])
        vals = [times[d][n]["s_per_epoch"] for n in names]
        colors = [{"baseline": "tab:gray", "trainable_Sigma_x": "tab:orange", "proposed_MLE": "tab:blue"}[
            s6.ROW_BY_NAME[n].group] for n in names]
        ax.barh(range(len(names)), vals, color=colors)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([s6.ROW_BY_NAME[n].display for n in names], fontsize=6)
        ax.invert_yaxis()
        devs = sorted({times[d][n]["device"] for n in names})
        ax.set_xlabel(f"seconds per epoch ({', '.join(devs)})", fontsize=7)
        ax.set_title(s6.DATASET_LABELS[d], fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
def sigma2_rows(values: dict) -> list[dict]:
    """The learned Iso-I σx² (MLE) vs the paper's 0.0037 (MNIST) / 0.0040 (CelebA)."""
    rows = []
    for d, paper in PAPER_ISO_I_SIGMA2.items():
        if d not in values:
            continue
        o = values[d].get("mle-iso-i", {}).get("sigma2")
        base = {"dataset": d, "group": "proposed_MLE", "model": s6.ROW_BY_NAME["mle-iso-i"].display,
                "name": "mle-iso-i", "metric": "sigma2", "paper": paper, "ours": o}
        if o is None or (isinstance(o, float) and math.isnan(o)):
            rows.append({**base, "ours": float("nan"), "verdict": None, "reason": "Iso-I (MLE) not run"})
            continue
        v, why = verdict(paper, o, rel_tol=0.15, trend=(o < 0.1, f"learned σx² {o:.3g} is far below 1.0, as in the paper"
                                                       if o < 0.1 else f"learned σx² {o:.3g} is not far below 1.0"))
        rows.append({**base, "verdict": v, "reason": why})
    return rows


def run(params: dict, log=print) -> Run:
    """Train (or load) every model, evaluate Table 4, draw Figures J.6–J.8 and 2; returns the finished :class:`Run`."""
    p = validate(params)
    set_threads(p["device"])
    s = s6.settings(p["preset"])
    dims = p["fid_dims"] or s.fid_dims
    n_show = p["figure_images"]
    table_rows, sig_rows, all_values, times, info = [], [], {}, {}, {}
    with Run(NOTEBOOK, p) as run:
        for dataset, names in plan(p).items():
            data = s6.load_data(dataset, p)
            log(f"[{dataset}] {data.describe()}")
            models = s6.trained_models(dataset, names, p, data, log=log)
            dev = next((next(iter(tm.model.parameters())).device for tm in models.values() if tm.ok),
                       torch.device("cpu"))
            fid_n = p["fid_samples"] or s.fid_samples[dataset]
            ref = s6.reference(dataset, data, dims, dev)
            srcs = sources_for(dataset, p["sources"])
            values, reasons, images = {}, {}, {}
            for name, tm in models.items():
                if not tm.ok:
                    reasons[name] = tm.reason
                    continue
                log(f"[{dataset}] evaluating {name}")
                vals, imgs, why = evaluate_generation(tm, data, ref, srcs, p, fid_n, dims, n_show, log)
                values[name], images[name] = vals, imgs
                reasons.update({(name, k): v for k, v in why.items()})
            metric_notes = {c: s6.fid_note(fid_n, dims) for c in s6.SOURCE_COLUMN.values()}
            rows = s6.comparison_rows(TABLE, dataset, values, reasons, metric_notes, {}, names,
                                      data_note="" if not data.generated else data.source)
            table_rows += rows
            all_values[dataset] = values
            cfg = s6.section_train_config(p, dataset)
            times[dataset] = {n: {"s_per_epoch": s6.epoch_times(tm.history, len(data.train), cfg.batch_size),
                                  "device": tm.meta.get("device", "?")} for n, tm in models.items() if tm.ok}
            info[dataset] = {"data": data.describe(), "n_train": len(data.train), "n_test": len(data.test),
                             "fid_samples": fid_n, "fid_dims": dims, "fid_comparable": s6.fid_comparable(fid_n, dims),
                             "sources": srcs, "models": names, "train_config": cfg.__dict__,
                             "from_cache": {n: tm.from_cache for n, tm in models.items()},
                             "not_available": {n: tm.reason for n, tm in models.items() if not tm.ok}}
            # figures
            if images:
                title = {"mnist": "Figure J.7 (MNIST)", "celeba64": "Figure J.8 (CelebA)"}[dataset]
                fig = samples_figure(images, data.test, srcs, n_show, title + f" — {data.describe()}")
                run.save_figure(fig, f"fig_{'J7' if dataset == 'mnist' else 'J8'}_{dataset}_samples")
                _close(fig)
            if dataset == "mnist" and data.test_labels is not None:
                npts = min(p["tsne_points"] or s.tsne_points, len(data.test))
                fig = tsne_figure(models, data, npts, int(p["seed"]))
                run.save_figure(fig, "fig_J6_mnist_tsne")
                _close(fig)
            # correlation of our column with the paper's, per metric
            df = s6.rows_frame(rows)
            info[dataset]["spearman"] = {
                m: spearman(g["paper"].tolist(), g["ours"].tolist()) if g["ours"].notna().sum() >= 3 else None
                for m, g in df.dropna(subset=["ours"]).groupby("metric")} if not df.empty else {}
        if any(times.values()):
            fig = time_figure(times)
            run.save_figure(fig, "fig_2_time_per_epoch")
            _close(fig)
        table_rows += s6.not_selected_rows(TABLE, p["datasets"])
        table = s6.rows_frame(table_rows)
        run.write_table(TABLE, table)
        sig_rows = sigma2_rows(all_values)
        run.write_table("table4_iso_i_sigma2", s6.rows_frame(sig_rows))
        run.write_metrics({"values": all_values, "time_per_epoch": times, "settings": info,
                           "verdicts": s6.verdict_counts(table),
                           "mle_vs_trainable": {d: mle_vs_trainable(table, d) for d in all_values}})
    return run


def mle_vs_trainable(df: pd.DataFrame, dataset: str) -> dict:
    """The paper's comparison of the bottom eight rows of Table 4: in how many FID cells does the MLE model
    beat the trainable-Σx model of the same shape? ``{"ours": [wins, cells], "paper": [wins, cells]}``
    (cells where both of ours exist)."""
    ours, paper = [0, 0], [0, 0]
    if df is None or df.empty:
        return {"ours": ours, "paper": paper}
    d = df[(df["dataset"] == dataset) & df["metric"].astype(str).str.startswith("fid")]
    for shape in ("iso-i", "diag-i", "iso-d", "diag-d"):
        a = d[d["name"] == f"mle-{shape}"].set_index("metric")
        b = d[d["name"] == f"trainable-{shape}"].set_index("metric")
        for m in a.index.intersection(b.index):
            pa, pb, oa, ob = a.at[m, "paper"], b.at[m, "paper"], a.at[m, "ours"], b.at[m, "ours"]
            if any(pd.isna(v) for v in (pa, pb, oa, ob)):
                continue
            paper[0] += int(pa < pb)
            paper[1] += 1
            ours[0] += int(oa < ob)
            ours[1] += 1
    return {"ours": ours, "paper": paper}


def summary(res) -> dict:
    """Strings for the notebook's prose (myst-nb glue); 'n/a' without results."""
    from vaebook.experiments.common import fmt

    out = {"gen_label": "no results", "gen_verdicts": "n/a", "gen_sigma2_mnist": "n/a", "gen_sigma2_celeba": "n/a",
           "gen_fid_samples": "n/a", "gen_fid_dims": "n/a", "gen_mle_wins_mnist": "n/a",
           "gen_mle_wins_celeba": "n/a", "gen_paper_mle_wins_mnist": "n/a", "gen_paper_mle_wins_celeba": "n/a"}
    for d, key in (("mnist", "mnist"), ("celeba64", "celeba")):
        pw = mle_vs_trainable(_paper_only_frame(d), d)["paper"]
        out[f"gen_paper_mle_wins_{key}"] = f"{pw[0]} of {pw[1]}"
    if res is None:
        return out
    out["gen_label"] = res.label
    t = res.tables.get(TABLE)
    if t is not None:
        out["gen_verdicts"] = ", ".join(f"{n} {k}" for k, n in s6.verdict_counts(t).items())
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


def _paper_only_frame(dataset: str) -> pd.DataFrame:
    """Table 4's paper values in the long layout (ours = paper), for counting the paper's own tallies."""
    rows = []
    for n in s6.models_for(dataset, TABLE):
        r = s6.ROW_BY_NAME[n]
        for m in s6.table_metrics(TABLE, dataset):
            v = s6.paper_value(TABLE, n, dataset, m)
            rows.append({"dataset": dataset, "name": n, "group": r.group, "metric": m, "paper": v, "ours": v})
    return pd.DataFrame(rows)


resolve = validate


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


__all__ = ["PARAMS", "NOTEBOOK", "TABLE", "validate", "resolve", "summary", "mle_vs_trainable", "plan", "run", "evaluate_generation", "samples_figure",
           "sources_for", "tsne_figure", "time_figure", "sigma2_rows"]
