"""Section 6.1 — Table 4 (test MSE and generation FID on MNIST and CelebA 64×64), Figures J.6 (t-SNE),
J.7/J.8 (reconstructions and samples) and 2 (training time per epoch).

Per model row: the MSE E‖x − μθ(μφ(x))‖² on the test images (per image, summed over pixels), the FID
(Eq. 12) of images decoded from latents drawn from the prior, a second-stage VAE, or a GMM with 10 / 100
components fitted to the training codes (the paper has no GMM-100 column for MNIST), and the learned
Iso-I σ̂x² the paper quotes (0.0037 MNIST, 0.0040 CelebA). Units are (dataset, model) pairs; the models
come from :func:`vaebook.experiments._section6.job`, shared with Tables 5 and 7. :class:`Generation` is
also Table 6 (CelebA-HQ, :mod:`vaebook.experiments.celebahq`).
"""
from __future__ import annotations

import math
from typing import Optional

import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from vaebook._util import encode_means, model_device
from vaebook.experiments import _datasets6 as ds
from vaebook.experiments import _paired6 as paired
from vaebook.experiments import _section6 as scale
from vaebook.experiments import _generation_page as page
from vaebook.experiments._generation_page import (SOURCE_LABELS, mle_vs_trainable, samples_figure, time_figure,
                                                  tsne_figure)
from vaebook.lab import ParamSpec, Unit, rows_frame
from vaebook.lab.compare import compare, spearman, verdict, verdict_counts
from vaebook.lab.paper import long_rows
from vaebook.lab.status import claim, not_run
from vaebook.metrics.fid import fid_features
from vaebook.metrics.fid_spread import bootstrap_fid_kid
from vaebook.metrics.recon import mse_per_image
from vaebook.metrics.tsne import tsne_frame, tsne_latents
from vaebook.paper import paper_table
from vaebook.posterior import fit_sampler, generate_images, keep_first, source_skip_reason


def kid_metric(fid_metric: str) -> str:
    """The KID metric beside an FID metric (ours only: the paper reports no KID)."""
    return fid_metric.replace("fid_", "kid_", 1)


#: latent source -> metric (the paper's column without its dataset prefix)
SOURCE_COLUMN = {"prior": "fid_prior", "2nd-vae": "fid_2nd_vae", "gmm10": "fid_gmm10", "gmm100": "fid_gmm100"}
METRIC_ORDER = ("mse", *(m for c in SOURCE_COLUMN.values() for m in (c, kid_metric(c))))
METRIC_LABELS = {"mse": "MSE", "fid_prior": "FID prior", "fid_2nd_vae": "FID 2nd VAE", "fid_gmm10": "FID GMM-10",
                 "fid_gmm100": "FID GMM-100", "sigma2": "learned σx²",
                 **{kid_metric(c): f"KID {SOURCE_LABELS[s]}" for s, c in SOURCE_COLUMN.items()}}
#: the paper's column prefix per (table, dataset)
PREFIX = {"table4": {"mnist": "mnist_", "celeba64": "celeba_"}, "table6": {"celebahq128": ""}}
#: the learned Iso-I σx² (MLE) quoted in Section 6.1
PAPER_ISO_I_SIGMA2 = {"mnist": 0.0037, "celeba64": 0.0040}
#: the paper's footnotes that bear on a comparison: (dataset, row) -> note
PAPER_NOTES = {
    "table4": {("celeba64", "trainable-diag-d"): "paper: this training did not converge; it reports the checkpoint "
                                                 "with the best test MSE",
               **{(d, "trainable-iso-i"): "trainable Iso-I + 2nd-stage VAE is the two-stage VAE of Dai & Wipf [18]"
                  for d in ("mnist", "celeba64")}},
}


class Generation(scale.Section6Experiment):
    """Table 4 (``table="table4"``, MNIST and CelebA) or Table 6 (``table="table6"``, CelebA-HQ):
    MSE and FID per latent source for every model row."""

    def __init__(self, name: str = "generation", table: str = "table4", datasets=("mnist", "celeba64"),
                 title: str = "Generation quality (Table 4)", figures: Optional[dict] = None, tsne: bool = True,
                 time_figure: bool = True, paper_sigma2: Optional[dict] = None, full_cost: str = ""):
        self.name, self.table, self.title, self.datasets = name, table, title, tuple(datasets)
        #: dataset -> (figure file stem, the paper's figure)
        self.figures = dict(figures if figures is not None else
                            {"mnist": ("fig_J7_mnist_samples", "Figure J.7"),
                             "celeba64": ("fig_J8_celeba64_samples", "Figure J.8")})
        self.tsne, self.time_figure = tsne, time_figure
        self.paper_sigma2 = dict(PAPER_ISO_I_SIGMA2 if paper_sigma2 is None else paper_sigma2)
        self.twin = table == "table4"  # Table 4 has trainable-Σx rows: MLE is read against them
        self.full_cost = full_cost
        keys = ["n_train", "n_test", "fid_samples", "fid_dims", "second_stage", "gmm_max_iter", "eval_batch", "models"]
        self.presets = scale.experiment_presets(keys + (["tsne_points"] if tsne else []), self.datasets)
        params = {}
        if len(self.datasets) == 1:  # Table 6: its page is CelebA-HQ's
            self.fixed_datasets = (f"{self.datasets[0]!r} only ({title}); Table 4 ('generation') takes any "
                                   "registered dataset")
        if len(self.datasets) > 1:
            params["datasets"] = ParamSpec("list", choices=ds.RegisteredDatasets(), allow_none=True, default=None,
                                           doc=f"registered datasets to run; None = {list(self.datasets)}")
        params.update(scale.SIZE_PARAMS)
        params["sources"] = ParamSpec("list", choices=tuple(SOURCE_COLUMN), allow_none=True, default=None,
                                      doc="latent sources for FID; None = the paper's columns for each dataset")
        params.update(scale.FID_PARAMS)
        if tsne:
            params["tsne_points"] = ParamSpec("int", min=10, max=10_000, allow_none=True, default=None,
                                              doc="test codes per t-SNE panel (Figure J.6); None = preset")
        params["fid_bootstrap"] = ParamSpec("int", min=2, max=5_000, default=200,
                                            doc="bootstrap replicates of each FID/KID (its spread and the paired "
                                                "differences of two models; vaebook.metrics.fid_spread)")
        params["figure_images"] = ParamSpec("int", min=1, max=16, default=8, doc="images per strip in the figures")
        self.params = params

    # -- the paper ---------------------------------------------------------------------------
    def paper_frame(self) -> pd.DataFrame:
        """The paper's cells of this table as long rows (row = registry name)."""
        cols = set(paper_table(self.table).columns)
        columns = {pre + m: (d, m) for d, pre in PREFIX[self.table].items() for m in ["mse", *SOURCE_COLUMN.values()]
                   if pre + m in cols}
        return long_rows(self.table, scale.paper_row_key, columns, extra=scale.paper_extra)

    def paper_sources(self, dataset: str) -> list:
        """The latent sources the paper reports for ``dataset`` (none for a dataset the table does not have)."""
        if dataset not in PREFIX[self.table]:
            return []
        cols, pre = set(paper_table(self.table).columns), PREFIX[self.table][dataset]
        return [s for s, c in SOURCE_COLUMN.items() if pre + c in cols]

    def sources_for(self, p: dict, dataset: str) -> list:
        """The ``sources`` parameter, else the paper's columns for ``dataset``, else (a dataset the paper does not
        have) every column the table prints on any dataset."""
        if p.get("sources"):
            return list(dict.fromkeys(p["sources"]))
        own = self.paper_sources(dataset)
        if own or dataset in PREFIX[self.table]:
            return own
        every = {s for d in PREFIX[self.table] for s in self.paper_sources(d)}
        return [s for s in SOURCE_COLUMN if s in every]

    # -- the experiment -------------------------------------------------------------------------
    def evaluate(self, unit: Unit, ctx) -> dict:
        """One model: MSE, its learned σx², FID per latent source, images for the figures, time per epoch."""
        s = self.eval_setup(unit, ctx)
        p, d, job, tm, data, base, out = s.p, s.dataset, s.job, s.tm, s.data, s.base, s.out
        srcs = self.sources_for(p, d)
        if s.reason:
            has_prior = getattr(job.build(), "has_prior", True)  # no prior: no prior-FID cell (as in the paper)
            return s.failed(["mse", *(c for src in srcs if src != "prior" or has_prior
                                      for c in (SOURCE_COLUMN[src], kid_metric(SOURCE_COLUMN[src])))])
        model, seed, bs, n_show = tm.model.eval(), int(p["seed"]), int(p["eval_batch"]), int(p["figure_images"])
        dev, dims, n_fid = model_device(model), int(p["fid_dims"]), ds.required(p, "fid_samples", d)
        dnote = scale.data_note(data)
        fnote = "; ".join(x for x in (scale.fid_note(n_fid, dims), dnote) if x)
        per_mse = mse_per_image(model, data.test, bs)
        rows = [{**base, "metric": "mse", "ours": float(per_mse.mean()), "note": dnote}]
        # per-image squared errors of the same test images for every model: paired MSE differences in the claims
        out["per_image"] = {"mse": [round(float(v), 4) for v in per_mse]}
        with torch.no_grad():
            images = {"recon": model.reconstruct(data.test[:n_show].to(dev)).cpu()}
        ref = scale.reference(data, dims, dev) if srcs else None
        latents = None
        for src in srcs:
            col = SOURCE_COLUMN[src]
            skip = source_skip_reason(model, src, len(data.train))
            if skip:
                if src != "prior":  # no prior: the paper prints "-" too, so there is no cell
                    rows.append({**base, "metric": col, "ours": math.nan, "reason": f"not computed: {skip}"})
                continue
            if src != "prior" and latents is None:
                latents = encode_means(model, data.train, bs)
            sampler = fit_sampler(model, src, latents, seed, p["second_stage"], p["gmm_max_iter"])
            shown: list = []
            stream = keep_first(generate_images(model, n_fid, src, sampler, seed=seed, batch_size=bs), n_show, shown)
            feats = fid_features(stream, scale.fid_batch(dev), dev, ref.shape[1], max_images=n_fid)
            v = bootstrap_fid_kid(feats, ref, int(p["fid_bootstrap"]), seed)
            rows.append({**base, "metric": col, "ours": float(v["fid"]), "note": fnote})
            rows.append({**base, "metric": kid_metric(col), "ours": float(v["kid"]), "note": dnote})
            out.setdefault("kid_std", {})[kid_metric(col)] = float(v["kid_sd"])
            out.setdefault("fid_sd", {})[col] = float(v["fid_sd"])
            out.setdefault("boot", {})[col] = [round(x, 4) for x in v["fid_boot"]]
            out["boot"][kid_metric(col)] = [float(f"{x:.5g}") for x in v["kid_boot"]]
            images[src] = torch.cat(shown)[:n_show] if shown else None
        out.update(rows=rows, images=images, sigma2=learned_sigma2(model), device=str(tm.meta.get("device", dev)),
                   **{f"{k}_test": v for k, v in test_variance(model, data.test[:bs]).items()},
                   train_s=float(sum(float(r.get("time_s") or 0.0) for r in tm.history)),
                   s_per_epoch=scale.epoch_seconds(tm.history, len(data.train), job.train_dict["batch_size"]))
        if self.tsne and data.test_labels is not None:
            out["tsne"] = _tsne(model, data, min(int(p["tsne_points"]), len(data.test)), seed)
        return out

    def report(self, ctx, results: dict, run) -> None:
        p = ctx.p
        ours, paper = rows_frame(results), self.paper_frame()
        # FID's bias at the run's N per dataset: the real-vs-real FID (read by the magnitude bound)
        floors = scale.fid_floors(ctx, [d for d in dict.fromkeys(r["dataset"] for r in results.values())
                                        if self.sources_for(p, d)])
        table = compare(ours, paper, scale.judge(self.twin, PAPER_NOTES.get(self.table), bias=scale.fid_bias(floors)),
                        scale.order(paper, ours))
        ran = {(r["model"], r["dataset"]) for r in results.values()}
        table = scale.finish_table(table, ran, p["datasets"], "latent source not selected (parameter 'sources')",
                                   metric_order=METRIC_ORDER)
        run.write_table(self.table, table)
        sig = self.sigma2_table(results, ran, p["datasets"])
        if len(sig):
            run.write_table(f"{self.table}_iso_i_sigma2", sig)

        by_ds: dict = {}
        for r in results.values():
            by_ds.setdefault(r["dataset"], []).append(r)
        settings, values, times, boot = {}, {}, {}, {}
        for d, res in by_ds.items():
            data = scale.load(ctx, d)
            n_fid, dims = ds.required(p, "fid_samples", d), int(p["fid_dims"])
            ok = [r for r in res if "reason" not in r]
            values[d] = {r["model"]: {**{x["metric"]: x["ours"] for x in r["rows"]}, "sigma2": r.get("sigma2"),
                                      "sigma2_test": r.get("sigma2_test"), "calibration": r.get("calibration_test"),
                                      "train_s": r.get("train_s"),
                                      "kid_std": r.get("kid_std", {}), "fid_sd": r.get("fid_sd", {}),
                                      "recon_var": r.get("recon_var")}
                         for r in ok}
            boot[d] = {"n_boot": int(p["fid_bootstrap"]), "seed": int(p["seed"]),
                       "replicates": {r["model"]: r.get("boot", {}) for r in ok},
                       "per_image": {r["model"]: r.get("per_image", {}) for r in ok}}
            times[d] = {r["model"]: {"s_per_epoch": r["s_per_epoch"], "device": r["device"]} for r in ok}
            job = scale.job(res[0]["model"], d, p)
            tab = table[(table["dataset"] == d) & table["ours"].notna()]
            settings[d] = {
                "data": data.describe(), "generated": data.generated, "n_train": len(data.train),
                "n_test": len(data.test),
                "fid_samples": n_fid, "fid_dims": dims, "fid_comparable": scale.fid_comparable(n_fid, dims),
                "sources": self.sources_for(p, d), "models": [r["model"] for r in res], "train": job.train_dict,
                "from_cache": {r["model"]: r["from_cache"] for r in res},
                "floor": floors.get(d),
                "did_not_train": {r["model"]: r["reason"] for r in res if "reason" in r},
                "spearman": {m: spearman(g["paper"].tolist(), g["ours"].tolist())
                             for m, g in tab.dropna(subset=["paper"]).groupby("metric") if len(g) >= 3}}
            imgs = {r["model"]: r["images"] for r in ok}
            if imgs and d in self.figures:
                stem, fig_name = self.figures[d]
                run.save_figure(samples_figure(imgs, data.test, self.sources_for(p, d), int(p["figure_images"]),
                                               f"{fig_name} ({data.spec.label}) — {data.describe()}"), stem)
            maps = [(r["model"], r["tsne"]) for r in ok if r.get("tsne")]
            if maps:  # the points too, so the page can re-draw the maps without re-running t-SNE
                run.write_table(f"fig_J6_{d}_tsne_points", tsne_frame({scale.display(m): t for m, t in maps}))
                run.save_figure(tsne_figure(maps), f"fig_J6_{d}_tsne")
        if self.time_figure and any(times.values()):
            run.save_figure(time_figure(times), "fig_2_time_per_epoch")
        metrics = {"values": values, "time_per_epoch": times, "settings": settings, "verdicts": verdict_counts(table),
                   "verdicts_sigma2": verdict_counts(sig), "bootstrap": boot}
        if self.twin:
            metrics["mle_vs_trainable"] = {d: mle_vs_trainable(table, d) for d in by_ds}
        run.write_metrics(metrics)

    def sigma2_table(self, results: dict, ran: set, datasets) -> pd.DataFrame:
        """The learned Iso-I σx² (MLE) against the values Section 6.1 quotes."""
        paper = pd.DataFrame([{"row": "mle-iso-i", "dataset": d, "metric": "sigma2", "paper": v, "printed": f"{v:g}",
                               **scale.row_info("mle-iso-i")} for d, v in self.paper_sigma2.items()],
                             columns=["row", "dataset", "metric", "paper", "printed", "model", "group"])
        ours = []
        for r in results.values():
            if r["model"] != "mle-iso-i":
                continue
            base = {"row": "mle-iso-i", "dataset": r["dataset"], "metric": "sigma2", **scale.row_info("mle-iso-i")}
            ours.append({**base, "ours": math.nan, "failed": r["reason"]} if "reason" in r else
                        {**base, "ours": math.nan if r.get("sigma2") is None else r["sigma2"]})

        def rule(cell, _df):
            o = float(cell["ours"])
            far = o < 0.1
            why = f"learned σx² {o:.3g} is {'' if far else 'not '}far below 1.0, as in the paper"
            return verdict(cell["paper"], o, rel_tol=0.15, trend=(far, why))

        df = compare(pd.DataFrame(ours), paper, rule)
        return scale.finish_table(df, ran, datasets)

    # -- the status page ----------------------------------------------------------------------
    SECTION = "6.1 (Table 4)"
    CLAIMS = (
        "MLE Σx beats σx² = 1 on FID (prior and GMM-10 latents)",
        "MLE Σx is comparable with AE/WAE/RAE (best MLE row within 10 % of the best of them)",
        "MLE Σx beats trainable Σx of the same shape in most FID cells",
        "Diag-D (MLE) has the best prior FID among the VAEs",
        "Our FIDs rank the models as the paper's do (Spearman's ρ per column)",
    )

    def claims(self, res) -> list:
        """Table 4's claims, each read the same way on the paper's numbers and on ours (over the cells we ran)."""
        if res is None or res.tables.get(self.table) is None:
            return not_run([(c, self.SECTION) for c in self.CLAIMS])
        t = res.tables[self.table]
        datasets = [d for d in dict.fromkeys(t.loc[t["ours"].notna(), "dataset"])]
        evals = []
        st = next(iter(res.metrics.get("settings", {}).values()), {})
        if st.get("fid_samples"):
            evals.append(("FID samples", st["fid_samples"], scale.PAPER_FID_SAMPLES))
        sc = scale.run_scale(res, datasets, evals)
        rules = (paired.mle_beats_unit_variance, paired.comparable_with_ae, paired.mle_beats_trainable,
                 paired.diag_d_best_prior, lambda *a: paired.rank_agreement(*a, labels=METRIC_LABELS))
        return [claim(c, self.SECTION, *rule(t, datasets, res.metrics), sc) for c, rule in zip(self.CLAIMS, rules)]

    def results_parts(self, res, t, st: dict, ran: list) -> list:
        """The results paragraph's own sentences (:func:`vaebook.experiments._generation_page.results_parts`)."""
        return page.results_parts(self, res, t, st, ran)

    def summary(self, res) -> dict:
        """Strings for the page's prose (glue; :func:`vaebook.experiments._generation_page.summary`)."""
        return page.summary(self, res)




def learned_sigma2(model) -> Optional[float]:
    """Mean learned σx² of the -I variance shapes (MLE: running estimate; trainable: the parameter)."""
    v = getattr(model, "variance", None)
    if v is None or getattr(v, "dependent", True):
        return None
    try:
        return float(v.current().detach().float().mean())
    except Exception:  # noqa: BLE001 - a variance without a current value
        return None


@torch.no_grad()
def test_variance(model, x: torch.Tensor) -> dict:
    """The decoder variance as the model evaluates it on the reconstructions of ``x``
    (:meth:`GaussianVAE.eval_sigma2`: the −D heads or per-image estimates, the −I values): ``{"sigma2": mean σx²
    over pixels and images, "calibration": mean r²/σx²}`` with r = x − μθ(μφ(x)). At a stationary point of the
    Gaussian likelihood in log σx², ½(1 − r²/σx²) averages to 0, so a variance that has converged has a
    calibration near 1; a variance far below the residuals it meets gives a calibration far above 1. Empty for a
    model without a Σx."""
    if getattr(model, "variance", None) is None or not hasattr(model, "eval_sigma2"):
        return {}
    x = x.to(model_device(model))
    z = model.encode(x).mean.unsqueeze(0)  # one "sample" per image, the S×B×… layout the Σx hooks take
    mu, head = model._decode_all(z) if hasattr(model, "_decode_all") else (model.decode(z), None)
    s2 = model.variance.pixel_variance(model.eval_sigma2(x, mu, head)).float()  # diag Σx, per pixel
    r2 = (x.unsqueeze(0) - mu).float() ** 2
    return {"sigma2": float(s2.expand(torch.broadcast_shapes(s2.shape, r2.shape)).mean()),
            "calibration": float((r2 / s2).mean())}  # s2 broadcasts against r2 (1×B×C×H×W)


def _tsne(model, data, n: int, seed: int) -> dict:
    """t-SNE of ``n`` test codes with n/2 prior draws (Figure J.6), as tensors."""
    with threadpool_limits(1):  # small maps: scikit-learn's OpenMP threads spin badly on a busy CPU
        r = tsne_latents(model, data.test[:n], data.test_labels[:n], n_prior=max(10, n // 2), seed=seed)
    return {k: torch.as_tensor(r[k]) for k in ("embedding", "labels", "is_prior")}


EXPERIMENT = Generation(full_cost=(
    "`python -m vaebook.lab.run_all --preset full --mode compute --device cuda --only generation` trains the 28 "
    "models of Table 4 for the paper's epochs (MNIST 100, CelebA 70) and draws 10,000 samples per FID: about a "
    "day on one recent data-centre GPU (our estimate from the networks' FLOP counts, not measured); the `medium` "
    "preset (data subsets, 8 epochs) takes a few hours on a GPU."))

__all__ = ["Generation", "EXPERIMENT", "SOURCE_COLUMN", "SOURCE_LABELS", "METRIC_LABELS", "PAPER_ISO_I_SIGMA2", "mle_vs_trainable",
           "learned_sigma2", "samples_figure", "tsne_figure", "time_figure"]
