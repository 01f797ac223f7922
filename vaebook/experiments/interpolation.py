"""Section 6.2 — Table 5 (FID of latent interpolations on MNIST and CelebA 64×64) and Figure J.9.

Random pairs of test images are encoded (encoder means), their codes interpolated spherically (slerp,
as in RAE [22]) at ratio 0.5 ("mid-point") or U[0, 1] per pair ("random-point"), decoded, and the FID of
the decoded images against the test images' statistics is reported. The paper uses 10,000 pairs; which
split they come from is not stated (we use the test images). Units are (dataset, model) pairs; the
models are Table 4's (:func:`vaebook.experiments._section6.job`: one cache for both pages).
"""
from __future__ import annotations

import math

import pandas as pd
import torch

from vaebook._util import model_device
from vaebook.experiments import _paired6 as paired
from vaebook.experiments import _datasets6 as ds
from vaebook.experiments import _section6 as scale
from vaebook.experiments._generation_page import floor_sentences
from vaebook.lab import ParamSpec, Unit, rows_frame
from vaebook.lab.compare import compare, verdict_counts, verdict_line
from vaebook.lab.display import fmt, grid_figure
from vaebook.lab.paper import long_rows
from vaebook.lab.status import claim, flags_status, noisy_flags_status, not_run
from vaebook.metrics.interpolation import interpolation_fid

TABLE = "table5"
DATASETS = ("mnist", "celeba64")
PREFIX = {"mnist": "mnist_", "celeba64": "celeba_"}
#: metric -> slerp ratio
RATIOS = {"fid_mid_point": "mid", "fid_random_point": "random"}
METRIC_LABELS = {"fid_mid_point": "FID mid-point", "fid_random_point": "FID random-point",
                 "kid_mid_point": "KID mid-point", "kid_random_point": "KID random-point"}
#: the paper's columns, each followed by our KID beside it (ours only: the paper reports no KID)
METRIC_ORDER = tuple(m for c in RATIOS for m in (c, c.replace("fid_", "kid_", 1)))


class Interpolation(scale.Section6Experiment):
    table = TABLE
    """Table 5: interpolation FIDs per model row, and Figure J.9."""
    name = "interpolation"
    title = "Latent interpolation (Table 5)"
    presets = scale.experiment_presets(["n_train", "n_test", "fid_samples", "fid_dims", "eval_batch", "models"],
                                       DATASETS)
    params = {
        "datasets": ParamSpec("list", choices=ds.RegisteredDatasets(), allow_none=True, default=None,
                              doc=f"registered datasets to run; None = {list(DATASETS)}"),
        **scale.SIZE_PARAMS,
        **scale.FID_PARAMS,  # fid_samples = interpolation pairs per FID
        "fid_bootstrap": ParamSpec("int", min=2, max=5_000, default=200,
                                   doc="bootstrap replicates of each FID (paired differences of two models)"),
        "figure_pairs": ParamSpec("int", min=1, max=8, default=2, doc="image pairs per model in Figure J.9"),
        "figure_steps": ParamSpec("int", min=3, max=16, default=8, doc="interpolation steps per pair in Figure J.9"),
    }
    full_cost = ("`python -m vaebook.lab.run_all --preset full --mode compute --device cuda --only interpolation` "
                 "reuses the models the `generation` page trained (run it first: about a day on one recent data-centre "
                 "GPU, our estimate); the 2 × 10,000-pair FIDs of the 28 models then take well under an hour.")

    def paper_frame(self) -> pd.DataFrame:

        columns = {PREFIX[d] + m: (d, m) for d in DATASETS for m in RATIOS}
        return long_rows(TABLE, scale.paper_row_key, columns, extra=scale.paper_extra)

    def evaluate(self, unit: Unit, ctx) -> dict:
        """One model: mid-point and random-point interpolation FIDs, and the strips of Figure J.9."""
        s = self.eval_setup(unit, ctx)
        if s.reason:
            return s.failed(METRIC_ORDER)
        p, d, tm, data, base, out = s.p, s.dataset, s.tm, s.data, s.base, s.out
        model, dev = tm.model.eval(), model_device(tm.model)
        n_pairs, dims = ds.required(p, "fid_samples", d), int(p["fid_dims"])
        note = "; ".join(x for x in (scale.fid_note(n_pairs, dims), scale.data_note(data)) if x)
        ref = scale.reference(data, dims, dev)
        rows = []
        for col, ratio in RATIOS.items():
            r = interpolation_fid(model, data.test, ref, n_pairs=n_pairs, ratio=ratio, seed=int(p["seed"]),
                                  batch_size=int(p["eval_batch"]), dims=dims, fid_batch_size=scale.fid_batch(dev),
                                  device=dev, n_boot=int(p["fid_bootstrap"]))
            rows.append({**base, "metric": col, "ours": float(r["fid"]), "note": note})
            if "fid_boot" in r:
                out.setdefault("boot", {})[col] = [round(x, 4) for x in r["fid_boot"]]
            if "kid" in r:
                kid = col.replace("fid_", "kid_", 1)
                rows.append({**base, "metric": kid, "ours": float(r["kid"]), "note": scale.data_note(data)})
                out.setdefault("kid_std", {})[kid] = float(r["kid_std"])
        k = min(int(p["figure_pairs"]), len(data.test) // 2)
        strips = [interpolation_strip(model, data.test[2 * i], data.test[2 * i + 1], int(p["figure_steps"]))
                  for i in range(k)]
        return {**out, "rows": rows, "strip": torch.cat(strips) if strips else None}

    def report(self, ctx, results: dict, run) -> None:

        p = ctx.p
        ours, paper = rows_frame(results), self.paper_frame()
        floors = scale.fid_floors(ctx, list(dict.fromkeys(r["dataset"] for r in results.values())))
        table = compare(ours, paper, scale.judge(twin=True, bias=scale.fid_bias(floors)), scale.order(paper, ours))
        ran = {(r["model"], r["dataset"]) for r in results.values()}
        run.write_table(TABLE, scale.finish_table(table, ran, p["datasets"], metric_order=METRIC_ORDER))
        settings, values, boot = {}, {}, {}
        for d in p["datasets"]:
            res = [r for r in results.values() if r["dataset"] == d]
            if not res:
                continue
            boot[d] = {"n_boot": int(p["fid_bootstrap"]), "seed": int(p["seed"]),
                       "replicates": {r["model"]: r.get("boot", {}) for r in res if "reason" not in r}}
            data = scale.load(ctx, d)
            n_pairs, dims = ds.required(p, "fid_samples", d), int(p["fid_dims"])
            values[d] = {r["model"]: {**{x["metric"]: x["ours"] for x in r["rows"]}, "kid_std": r.get("kid_std", {})}
                         for r in res if "reason" not in r}
            settings[d] = {"data": data.describe(), "generated": data.generated, "n_pairs": n_pairs, "fid_dims": dims,
                           "fid_comparable": scale.fid_comparable(n_pairs, dims), "models": [r["model"] for r in res],
                           "floor": floors.get(d),
                           "from_cache": {r["model"]: r["from_cache"] for r in res},
                           "did_not_train": {r["model"]: r["reason"] for r in res if "reason" in r},
                           "best": best_rows(values[d])}
            blocks = [(scale.display(r["model"]), r["strip"]) for r in res if r.get("strip") is not None]
            if blocks:
                k = min(int(p["figure_pairs"]), len(data.test) // 2)
                fig = grid_figure(blocks, columns=[f"pair {i + 1}: t = 0 → 1" for i in range(k)],
                                  title=f"Figure J.9 ({data.spec.label}) — {data.describe()}")
                run.save_figure(fig, f"fig_J9_{d}_interpolations")
        run.write_metrics({"values": values, "settings": settings, "verdicts": verdict_counts(table),
                           "paper_best": {d: self.paper_best(d) for d in DATASETS}, "bootstrap": boot})

    def paper_best(self, dataset: str) -> dict:
        """Per column: the row with the lowest FID in the paper's Table 5."""
        paper = self.paper_frame()
        paper = paper[paper["dataset"] == dataset]
        return {c: (paper.loc[paper.loc[paper["metric"] == c, "paper"].idxmin(), "row"]
                    if (paper["metric"] == c).any() else None) for c in RATIOS}

    # -- the status page ----------------------------------------------------------------------
    SECTION = "6.2 (Table 5)"
    CLAIMS = ("Diag-D (MLE) gives the best interpolation FID on MNIST (mid- and random-point)",
              "On CelebA the MLE models are competitive (best MLE row within 10 % of the best row)",
              "Our interpolation FIDs rank the models as the paper's do (Spearman's ρ per column)")

    def claims(self, res, within: float = 0.10) -> list:
        """Table 5's ordering: on MNIST the lowest FID of each column is MLE Diag-D's; on CelebA the best MLE row
        is within ``within`` of the best row. Read over the rows we ran (the paper's best among the same rows)."""
        if res is None or res.tables.get(TABLE) is None:
            return not_run([(c, self.SECTION) for c in self.CLAIMS])
        t = res.tables[TABLE]
        evals = []
        st = next(iter(res.metrics.get("settings", {}).values()), {})
        if st.get("n_pairs"):
            evals.append(("FID pairs", st["n_pairs"], scale.PAPER_FID_SAMPLES))
        ran = [d for d in DATASETS if d in set(t.loc[t["ours"].notna(), "dataset"])]
        sc = scale.run_scale(res, ran, evals)
        out = []
        # MNIST: the best row, every paired interval excluding zero (paired bootstrap replicates when recorded)
        flags, parts = [], []
        for m in RATIOS:
            o, p = scale.both(t, "mnist", m)
            if "mle-diag-d" not in o or len(o) < 2:
                continue
            ob, pb = min(o, key=o.get), min(p, key=p.get)
            flag, text = paired.best_of(t, res.metrics, "mnist", m, "mle-diag-d", list(o))
            flags.append(flag)
            parts.append(f"{METRIC_LABELS[m]}: best {scale.display(ob)} of {len(o)} rows (paper: {scale.display(pb)}); "
                         f"Diag-D: {text}")
        out.append(claim(self.CLAIMS[0], self.SECTION, noisy_flags_status(flags),
                         "; ".join(parts) if flags else "MNIST or MLE Diag-D not run", sc))
        # CelebA: competitive
        flags, parts = [], []
        for m in RATIOS:
            o, p = scale.both(t, "celeba64", m)
            mle = [r for r in o if r.startswith("mle-")]
            if not mle or len(o) < 2:
                continue
            bm, best = min(o[r] for r in mle), min(o.values())
            flags.append(bm <= (1 + within) * best)
            parts.append(f"{METRIC_LABELS[m]}: best MLE {fmt(bm, '.3g')} vs best row {fmt(best, '.3g')} "
                         f"(paper {fmt(min(p[r] for r in mle), '.3g')} vs {fmt(min(p.values()), '.3g')})")
        out.append(claim(self.CLAIMS[1], self.SECTION, flags_status(flags),
                         "; ".join(parts) if flags else "CelebA or its MLE rows not run", sc))
        out.append(claim(self.CLAIMS[2], self.SECTION, *paired.rank_agreement(t, ran, res.metrics, columns=RATIOS,
                                                                                labels=METRIC_LABELS),
                         sc))
        return out

    def results_parts(self, res, t, st: dict, ran: list) -> list:
        """The results paragraph's own sentences (see :meth:`Section6Experiment.results_markdown`)."""
        out = []
        any_ds = next(iter(st.values()), {})
        if any_ds.get("n_pairs"):
            out.append(f"{fmt(any_ds['n_pairs'], ',.0f')} pairs per FID with {fmt(any_ds.get('fid_dims'), '.0f')}-d "
                       "features" + ("." if any_ds.get("fid_comparable") else " (not the paper's 10,000 pairs with "
                                                                             "2048-d features: only orderings are "
                                                                             "compared)."))
        best = []
        for d in ran:
            b, pb = (st[d].get("best") or {}).get("fid_mid_point"), self.paper_best(d)["fid_mid_point"]
            if b:
                best.append(f"{scale.dataset_label(d)}: ours {scale.display(b)} of {len(st[d].get('models', []))} "
                            f"rows run, paper {scale.display(pb) if pb else '–'} of all its rows")
        if best:
            out.append("\n\n**Best mid-point FID.** " + "; ".join(best) + ".")

        out += floor_sentences(st, ran)
        return out

    def summary(self, res) -> dict:
        """Strings for the page's prose (glue); 'n/a' where there are no results."""
        best = self.paper_best("mnist")["fid_mid_point"]
        out = {"interp_label": "no results", "interp_verdicts": "n/a", "interp_best_mnist": "n/a",
               "interp_paper_best_mnist": scale.display(best) if best else "n/a", "interp_pairs": "n/a",
               "interp_dims": "n/a"}
        if res is None:
            return out
        out["interp_label"] = res.label
        t = res.tables.get(TABLE)
        if t is not None:
            out["interp_verdicts"] = verdict_line(t) or "n/a"
        st = res.metrics.get("settings", {})
        b = (st.get("mnist", {}).get("best") or {}).get("fid_mid_point")
        out["interp_best_mnist"] = scale.display(b) if b else "n/a"
        any_ds = next(iter(st.values()), {})
        if any_ds:
            out["interp_pairs"] = fmt(any_ds.get("n_pairs"), ",.0f")
            out["interp_dims"] = fmt(any_ds.get("fid_dims"), ".0f")
        return out


@torch.no_grad()
def interpolation_strip(model, x1: torch.Tensor, x2: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` decoded slerp points from the code of ``x1`` (t = 0) to that of ``x2`` (t = 1)."""
    dev = model_device(model)
    model.eval()
    t = torch.linspace(0.0, 1.0, steps)
    a, b = x1.unsqueeze(0).expand(steps, *x1.shape).to(dev), x2.unsqueeze(0).expand(steps, *x2.shape).to(dev)
    return model.interpolate(a, b, t.to(dev)).cpu()


def best_rows(values: dict) -> dict:
    """Per column: the row with the lowest FID (ours)."""
    out = {}
    for col in RATIOS:
        cand = [(v[col], n) for n, v in values.items() if v.get(col) is not None and not math.isnan(v[col])]
        out[col] = min(cand)[1] if cand else None
    return out


EXPERIMENT = Interpolation()

__all__ = ["Interpolation", "EXPERIMENT", "TABLE", "RATIOS", "METRIC_LABELS", "interpolation_strip", "best_rows"]
