"""Section 6.2 — Table 5 (FID of latent interpolations on MNIST and CelebA) and Figure J.9.

Random pairs of test images are encoded (encoder means), their codes interpolated spherically
(slerp, as in RAE [22]) with ratio 0.5 ("mid-point") or U[0, 1] per pair ("random-point"), decoded,
and the FID of the decoded images against the test images' statistics is reported. The paper uses
10,000 pairs; the split the pairs come from is not stated (we use the test images). The models are
the ``generation`` notebook's (same cache; run it first or they are trained here).
"""
from __future__ import annotations

import math

import torch

from vaebook.experiments import generation as gen
from vaebook.experiments import section6 as s6
from vaebook.experiments.common import ParamSpec, Run, fmt, set_threads

NOTEBOOK = "interpolation"
TABLE = "table5"
DEFAULT_DATASETS = ("mnist", "celeba64")
RATIOS = {"fid_mid_point": "mid", "fid_random_point": "random"}

PARAMS = s6.section_params(
    DEFAULT_DATASETS,
    figure_pairs=ParamSpec("int", min=1, max=8, default=2, doc="image pairs per model in Figure J.9"),
    figure_steps=ParamSpec("int", min=3, max=16, default=8, doc="interpolation steps per pair in Figure J.9"),
    **s6.FID_PARAMS,
)


def resolve(params: dict) -> dict:
    """Validated parameters (:class:`ParameterError` names the bad one and the allowed values)."""
    return gen.validate(params, PARAMS, DEFAULT_DATASETS, TABLE)


@torch.no_grad()
def interpolation_strip(model, x1: torch.Tensor, x2: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` decoded slerp points from the code of ``x1`` (t = 0) to that of ``x2`` (t = 1)."""
    dev = next(model.parameters()).device
    model.eval()
    t = torch.linspace(0.0, 1.0, steps)
    a, b = x1.unsqueeze(0).expand(steps, *x1.shape).to(dev), x2.unsqueeze(0).expand(steps, *x2.shape).to(dev)
    return model.interpolate(a, b, t.to(dev)).cpu()


def run(params: dict, log=print) -> Run:
    """Interpolation FIDs for every model row (Table 5) and Figure J.9; returns the finished :class:`Run`."""
    from vaebook.metrics.interpolation import interpolation_fid

    p = resolve(params)
    set_threads(p["device"])
    s = s6.settings(p["preset"])
    dims = p["fid_dims"] or s.fid_dims
    table_rows, values_all, info = [], {}, {}
    with Run(NOTEBOOK, p) as run:
        for dataset, names in gen.plan(p, TABLE).items():
            data = s6.load_data(dataset, p)
            log(f"[{dataset}] {data.describe()}")
            models = s6.trained_models(dataset, names, p, data, log=log)
            dev = next((next(iter(tm.model.parameters())).device for tm in models.values() if tm.ok),
                       torch.device("cpu"))
            n_pairs = p["fid_samples"] or s.fid_samples[dataset]
            ref = s6.reference(dataset, data, dims, dev)
            values, reasons, strips = {}, {}, {}
            npairs_fig, steps = p["figure_pairs"], p["figure_steps"]
            for name, tm in models.items():
                if not tm.ok:
                    reasons[name] = tm.reason
                    continue
                log(f"[{dataset}] interpolating with {name}")
                values[name] = {}
                for col, ratio in RATIOS.items():
                    r = interpolation_fid(tm.model, data.test, ref, n_pairs=n_pairs, ratio=ratio, seed=int(p["seed"]),
                                          batch_size=s.eval_batch, dims=dims, fid_batch_size=s6.fid_batch(dev),
                                          device=dev)
                    values[name][col] = r["fid"]
                k = min(npairs_fig, len(data.test) // 2)
                strips[name] = torch.cat([interpolation_strip(tm.model, data.test[2 * i], data.test[2 * i + 1], steps)
                                          for i in range(k)]) if k else None
            note = s6.fid_note(n_pairs, dims)
            rows = s6.comparison_rows(TABLE, dataset, values, reasons, {c: note for c in RATIOS}, {}, names,
                                      data_note="" if not data.generated else data.source)
            table_rows += rows
            values_all[dataset] = values
            info[dataset] = {"data": data.describe(), "n_pairs": n_pairs, "fid_dims": dims,
                             "fid_comparable": s6.fid_comparable(n_pairs, dims), "models": names,
                             "from_cache": {n: tm.from_cache for n, tm in models.items()},
                             "not_available": {n: tm.reason for n, tm in models.items() if not tm.ok},
                             "best": best_rows(values)}
            if strips:
                k = min(npairs_fig, len(data.test) // 2)
                blocks = [(s6.ROW_BY_NAME[n].display, st) for n, st in strips.items()]
                fig = s6.grid_figure(blocks, columns=[f"pair {i + 1}: t = 0 → 1" for i in range(k)],
                                     title=f"Figure J.9 ({s6.DATASET_LABELS[dataset]}) — {data.describe()}")
                run.save_figure(fig, f"fig_J9_{dataset}_interpolations")
                gen._close(fig)
        table_rows += s6.not_selected_rows(TABLE, p["datasets"])
        table = s6.rows_frame(table_rows)
        run.write_table(TABLE, table)
        run.write_metrics({"values": values_all, "settings": info, "verdicts": s6.verdict_counts(table)})
    return run


def best_rows(values: dict) -> dict:
    """Per column: the row with the lowest FID (ours)."""
    out = {}
    for col in RATIOS:
        cand = [(v[col], n) for n, v in values.items() if v.get(col) is not None and not math.isnan(v[col])]
        out[col] = min(cand)[1] if cand else None
    return out


def paper_best(dataset: str) -> dict:
    """Per column: the row with the lowest FID in the paper's Table 5."""
    out = {}
    for col in RATIOS:
        cand = [(s6.paper_value(TABLE, n, dataset, col), n) for n in s6.models_for(dataset, TABLE)]
        cand = [c for c in cand if not math.isnan(c[0])]
        out[col] = min(cand)[1] if cand else None
    return out


def summary(res) -> dict:
    """Strings for the notebook's prose (myst-nb glue); 'n/a' without results."""
    out = {"interp_label": "no results", "interp_verdicts": "n/a", "interp_best_mnist": "n/a",
           "interp_paper_best_mnist": s6.ROW_BY_NAME[paper_best("mnist")["fid_mid_point"]].display,
           "interp_pairs": "n/a", "interp_dims": "n/a"}
    if res is None:
        return out
    out["interp_label"] = res.label
    t = res.tables.get(TABLE)
    if t is not None:
        c = s6.verdict_counts(t)
        out["interp_verdicts"] = ", ".join(f"{n} {k}" for k, n in c.items())
    st = res.metrics.get("settings", {})
    mn = st.get("mnist", {})
    b = (mn.get("best") or {}).get("fid_mid_point")
    out["interp_best_mnist"] = s6.ROW_BY_NAME[b].display if b else "n/a"
    any_ds = next(iter(st.values()), {})
    out["interp_pairs"] = fmt(any_ds.get("n_pairs"), ",.0f") if any_ds else "n/a"
    out["interp_dims"] = fmt(any_ds.get("fid_dims"), ".0f") if any_ds else "n/a"
    return out


__all__ = ["PARAMS", "NOTEBOOK", "TABLE", "resolve", "run", "summary", "interpolation_strip", "best_rows",
           "paper_best"]
