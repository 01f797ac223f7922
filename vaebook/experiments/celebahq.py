"""Section 6.3 — Table 6 (CelebA-HQ 128×128, d_z = 256: test MSE and generation FID) and Figure J.10.

The same protocol as Table 4 (see :mod:`vaebook.experiments.generation`) with the Appendix I.3
networks. CelebA-HQ is not distributed with this project: at ``smoke`` without images the whole path
runs on generated stand-in images (every table row and the notebook say so; the numbers mean nothing);
at ``medium``/``full`` :func:`run` stops with :class:`~vaebook.data.MissingDataError` naming the folder
to put the 30,000 images in.
"""
from __future__ import annotations

import math

import torch

from vaebook.experiments import generation as gen
from vaebook.experiments import section6 as s6
from vaebook.experiments.common import ParamSpec, Run, fmt, set_threads

NOTEBOOK = "celebahq"
TABLE = "table6"
DATASET = "celebahq128"
EX_POST = ("fid_2nd_vae", "fid_gmm10", "fid_gmm100")

PARAMS = s6.section_params(
    (DATASET,),
    sources=ParamSpec("list", choices=s6.SOURCES, allow_none=True, default=None,
                      doc="latent sources for FID; None = all four"),
    figure_images=ParamSpec("int", min=1, max=16, default=8, doc="images per strip in Figure J.10"),
    **s6.FID_PARAMS,
)


def resolve(params: dict) -> dict:
    """Validated parameters (:class:`ParameterError` names the bad one and the allowed values)."""
    return gen.validate(params, PARAMS, (DATASET,), TABLE)


def data_status(params: dict) -> str:
    """Where the CelebA-HQ images are expected and whether any are there."""
    folder = s6.celebahq_folder(params)
    if not folder.is_dir():
        return f"no folder {str(folder)!r}"
    from vaebook.data.images import list_images

    n = len(list_images(folder))
    return f"{n} image(s) in {str(folder)!r}"


def run(params: dict, log=print) -> Run:
    """Table 6 and Figure J.10; returns the finished :class:`Run`. Raises ``MissingDataError`` (with the
    folder to fill) at medium/full when CelebA-HQ is not installed."""
    p = resolve(params)
    set_threads(p["device"])
    s = s6.settings(p["preset"])
    dims = p["fid_dims"] or s.fid_dims
    n_show = p["figure_images"]
    names = gen.plan(p, TABLE)[DATASET]
    data = s6.load_data(DATASET, p)  # raises before a results folder is created
    with Run(NOTEBOOK, p) as run:
        log(f"[{DATASET}] {data.describe()}")
        models = s6.trained_models(DATASET, names, p, data, log=log)
        dev = next((next(iter(tm.model.parameters())).device for tm in models.values() if tm.ok), torch.device("cpu"))
        fid_n = p["fid_samples"] or s.fid_samples[DATASET]
        ref = s6.reference(DATASET, data, dims, dev)
        srcs = gen.sources_for(DATASET, p["sources"], TABLE)
        values, reasons, images = {}, {}, {}
        for name, tm in models.items():
            if not tm.ok:
                reasons[name] = tm.reason
                continue
            log(f"[{DATASET}] evaluating {name}")
            vals, imgs, why = gen.evaluate_generation(tm, data, ref, srcs, p, fid_n, dims, n_show, log)
            values[name], images[name] = vals, imgs
            reasons.update({(name, k): v for k, v in why.items()})
        metric_notes = {c: s6.fid_note(fid_n, dims) for c in s6.SOURCE_COLUMN.values()}
        data_note = "" if not data.generated else f"{data.source}: the numbers say nothing about the paper"
        rows = s6.comparison_rows(TABLE, DATASET, values, reasons, metric_notes, {}, names, data_note=data_note)
        table = s6.rows_frame(rows)
        run.write_table(TABLE, table)
        if images:
            fig = gen.samples_figure(images, data.test, srcs, n_show, f"Figure J.10 — {data.describe()}")
            run.save_figure(fig, "fig_J10_celebahq_samples")
            gen._close(fig)
        cfg = s6.section_train_config(p, DATASET)
        run.write_metrics({
            "values": {DATASET: values}, "verdicts": s6.verdict_counts(table),
            "ex_post_helps": ex_post_helps(values), "paper_ex_post_helps": paper_ex_post_helps(),
            "settings": {DATASET: {"data": data.describe(), "data_source": data.source, "generated": data.generated,
                                   "n_train": len(data.train), "n_test": len(data.test), "fid_samples": fid_n,
                                   "fid_dims": dims, "fid_comparable": s6.fid_comparable(fid_n, dims),
                                   "sources": srcs, "models": names, "train_config": cfg.__dict__,
                                   "from_cache": {n: tm.from_cache for n, tm in models.items()},
                                   "not_available": {n: tm.reason for n, tm in models.items() if not tm.ok}}},
        })
    return run


def _helps(vals: dict, col: str):
    prior, post = vals.get("fid_prior"), vals.get(col)
    if prior is None or post is None or math.isnan(prior) or math.isnan(post):
        return None
    return bool(post < prior)


def ex_post_helps(values: dict) -> dict:
    """``{source column: {model: FID(source) < FID(prior)}}`` for the models with a prior. The paper:
    the 2nd-stage VAE improves on the prior for every model except the σx² = 1 VAE."""
    return {c: {n: _helps(v, c) for n, v in values.items() if _helps(v, c) is not None} for c in EX_POST}


def paper_ex_post_helps() -> dict:
    """:func:`ex_post_helps` of the paper's Table 6."""
    values = {n: {m: s6.paper_value(TABLE, n, DATASET, m) for m in s6.table_metrics(TABLE, DATASET)}
              for n in s6.models_for(DATASET, TABLE)}
    return ex_post_helps(values)


def _count(h: dict) -> str:
    return f"{sum(bool(v) for v in h.values())} of {len(h)}" if h else "n/a"


def summary(res) -> dict:
    """Strings for the notebook's prose (myst-nb glue); 'n/a' without results."""
    out = {"hq_label": "no results", "hq_verdicts": "n/a", "hq_data": "n/a", "hq_generated": "n/a",
           "hq_helps": "n/a", "hq_paper_helps": "n/a", "hq_fid_samples": "n/a", "hq_fid_dims": "n/a"}
    ph = paper_ex_post_helps()
    out["hq_paper_helps"] = _count(ph["fid_2nd_vae"])
    out["hq_paper_helps_gmm"] = _count(ph["fid_gmm100"])
    out["hq_helps_gmm"] = "n/a"
    if res is None:
        return out
    out["hq_label"] = res.label
    t = res.tables.get(TABLE)
    if t is not None:
        out["hq_verdicts"] = ", ".join(f"{n} {k}" for k, n in s6.verdict_counts(t).items())
    st = res.metrics.get("settings", {}).get(DATASET, {})
    out["hq_data"] = st.get("data", "n/a")
    out["hq_generated"] = ("generated stand-in images, NOT CelebA-HQ — the numbers test the code only"
                           if st.get("generated") else "the CelebA-HQ images")
    h = res.metrics.get("ex_post_helps", {})
    out["hq_helps"] = _count(h.get("fid_2nd_vae", {}))
    out["hq_helps_gmm"] = _count(h.get("fid_gmm100", {}))
    out["hq_fid_samples"] = fmt(st.get("fid_samples"), ",.0f")
    out["hq_fid_dims"] = fmt(st.get("fid_dims"), ".0f")
    return out


__all__ = ["PARAMS", "NOTEBOOK", "TABLE", "DATASET", "resolve", "run", "summary", "data_status", "ex_post_helps",
           "paper_ex_post_helps"]
