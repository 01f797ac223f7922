"""Section 6.4 — Table 7: upper bounds on the test negative log-likelihood (nats per image) by
k-sample importance weighting (IWAE [37], k = 500 in the paper), for the VAE with σx² = 1 and the four
proposed MLE parameterisations.

Sign convention as the paper: NLL = −L_k where L_k = log mean_i p(x, z_i)/q(z_i|x) ≤ log p(x), so the
printed value "< v" is an upper bound on −log p(x). Pixels are continuous values in [0, 1] (no
dequantisation), so densities above 1 and negative NLLs are possible.

**Σx at evaluation** (the paper does not say; ``GaussianVAE.eval_sigma2``):

* VAE (σx² = 1): the fixed σx² = 1;
* MLE Iso-I / Diag-I: the running (EMA) training estimate of σ̂x² (one value / one per pixel);
* MLE Iso-D / Diag-D: σ̂x² estimated from the reconstruction μθ(μφ(x)) of the evaluated image itself
  (+ ε = 1e-6) — the only reading under which the paper's strongly negative NLLs come out.

The models are the ``generation`` notebook's (same cache); CelebA-HQ rows run when its images are
installed (or, at ``smoke``, when asked for, on generated stand-in images).
"""
from __future__ import annotations

import math


from vaebook.experiments import generation as gen
from vaebook.experiments import section6 as s6
from vaebook.experiments.common import ParamSpec, Run, fmt, set_threads

NOTEBOOK = "nll"
TABLE = "table7"
ALL_DATASETS = ("mnist", "celeba64", "celebahq128")
DEFAULT_DATASETS = {"smoke": ("mnist", "celeba64"), "medium": ALL_DATASETS, "full": ALL_DATASETS}
SIGMA_EVAL = {
    "vae-gaussian": "fixed σx² = 1",
    "mle-iso-i": "running (EMA) training estimate of the scalar σ̂x²",
    "mle-diag-i": "running (EMA) training estimate of the per-pixel σ̂x²",
    "mle-iso-d": "per-image MLE from the reconstruction of the evaluated image (+ε)",
    "mle-diag-d": "per-pixel MLE from the reconstruction of the evaluated image (+ε)",
}

#: images decoded at once (test images × importance samples), bounding activation memory
DECODE_BUDGET = {"mnist": 5_000, "celeba64": 200, "celebahq128": 50}

PARAMS = s6.section_params(
    ALL_DATASETS,
    iwae_k=ParamSpec("int", min=1, allow_none=True, default=None, doc="importance samples; None = preset (paper 500)"),
    k_chunk=ParamSpec("int", min=1, default=50, doc="importance samples decoded at once (memory)"),
)


def resolve(params: dict) -> dict:
    """Validated parameters (:class:`ParameterError` names the bad one and the allowed values)."""
    from vaebook.experiments.common import validate_params

    pre = validate_params(params, PARAMS)
    return gen.validate(params, PARAMS, DEFAULT_DATASETS[pre["preset"]], TABLE)


def run(params: dict, log=print) -> Run:
    """Table 7; returns the finished :class:`Run`. A dataset whose images are missing is skipped (its rows
    say so) unless it was asked for explicitly."""
    from vaebook.data import DataError
    from vaebook.metrics.nll import iwae_nll

    p = resolve(params)
    explicit = params.get("datasets") is not None
    set_threads(p["device"])
    s = s6.settings(p["preset"])
    k = p["iwae_k"] or s.iwae_k
    table_rows, values_all, info = [], {}, {}
    with Run(NOTEBOOK, p) as run:
        plan = gen.plan(p, TABLE)
        for dataset, names in plan.items():
            try:
                data = s6.load_data(dataset, p)
            except DataError as e:
                if explicit:
                    raise
                why = f"not run: {str(e).split('. ')[0]}"
                log(f"[{dataset}] {why}")
                table_rows += s6.comparison_rows(TABLE, dataset, {}, {n: why for n in names}, {}, {}, [])
                info[dataset] = {"skipped": str(e)}
                continue
            log(f"[{dataset}] {data.describe()}")
            models = s6.trained_models(dataset, names, p, data, log=log)
            values, reasons, extra = {}, {}, {}
            for name, tm in models.items():
                if not tm.ok:
                    reasons[name] = tm.reason
                    continue
                log(f"[{dataset}] IWAE bound, k = {k}: {name}")
                k_chunk = max(1, min(k, p["k_chunk"], DECODE_BUDGET[dataset]))
                r = iwae_nll(tm.model, data.test, k=k, batch_size=max(1, DECODE_BUDGET[dataset] // k_chunk),
                             k_chunk=k_chunk, seed=int(p["seed"]))
                values[name] = {"nll": r["nll"]}
                extra[name] = {"nll": r["nll"], "nll_stderr": r["nll_stderr"], "elbo": r["elbo"],
                               "nll_elbo": r["nll_elbo"], "k": r["k"], "n": r["n"],
                               "sigma_x_at_eval": SIGMA_EVAL.get(name, "")}
            rows = s6.comparison_rows(TABLE, dataset, values, reasons, {}, {}, names,
                                      data_note="" if not data.generated else data.source)
            for r in rows:
                if r["verdict"] is not None:
                    r["ours_printed"] = f"< {r['ours']:.2f}"
                    r["reason"] += f"; k = {k} importance samples (paper 500) on {len(data.test)} test images; " \
                                   f"Σx at evaluation: {SIGMA_EVAL.get(r['name'], '?')}"
            table_rows += rows
            values_all[dataset] = extra
            info[dataset] = {"data": data.describe(), "iwae_k": k, "n_test": len(data.test), "models": names,
                             "from_cache": {n: tm.from_cache for n, tm in models.items()},
                             "not_available": {n: tm.reason for n, tm in models.items() if not tm.ok},
                             "claims": claims({n: v["nll"] for n, v in values.items()})}
        table_rows += s6.not_selected_rows(TABLE, list(plan))
        table = s6.rows_frame(table_rows)
        run.write_table(TABLE, table)
        run.write_metrics({"values": values_all, "settings": info, "verdicts": s6.verdict_counts(table),
                           "sigma_x_at_eval": SIGMA_EVAL, "paper_claims": {d: paper_claims(d) for d in ALL_DATASETS}})
    return run


def claims(nll: dict) -> dict:
    """The paper's two claims on one dataset: every MLE model has a lower NLL than the σx² = 1 VAE, and
    Diag-D is the lowest of the MLE models. Values None where the rows are missing."""
    mle = {n: v for n, v in nll.items() if n.startswith("mle-") and v is not None and not math.isnan(v)}
    base = nll.get("vae-gaussian")
    all_below = None if base is None or not mle else all(v < base for v in mle.values())
    lowest = min(mle, key=mle.get) if mle else None
    return {"all_mle_below_vae": all_below, "lowest_mle": lowest}


def paper_claims(dataset: str) -> dict:
    return claims({n: s6.paper_value(TABLE, n, dataset, "nll") for n in s6.models_for(dataset, TABLE)})


def summary(res) -> dict:
    """Strings for the notebook's prose (myst-nb glue); 'n/a' without results."""
    out = {"nll_label": "no results", "nll_verdicts": "n/a", "nll_k": "n/a", "nll_below_mnist": "n/a",
           "nll_lowest_mnist": "n/a", "nll_mnist_diagd": "n/a", "nll_mnist_vae": "n/a"}
    if res is None:
        return out
    out["nll_label"] = res.label
    t = res.tables.get(TABLE)
    if t is not None:
        out["nll_verdicts"] = ", ".join(f"{n} {k}" for k, n in s6.verdict_counts(t).items())
    st = res.metrics.get("settings", {})
    mn = st.get("mnist", {})
    out["nll_k"] = fmt(mn.get("iwae_k"), ".0f") if mn else "n/a"
    c = mn.get("claims", {})
    if c:
        out["nll_below_mnist"] = {True: "yes", False: "no", None: "n/a"}[c.get("all_mle_below_vae")]
        lo = c.get("lowest_mle")
        out["nll_lowest_mnist"] = s6.ROW_BY_NAME[lo].display if lo else "n/a"
    vals = res.metrics.get("values", {}).get("mnist", {})
    out["nll_mnist_diagd"] = fmt((vals.get("mle-diag-d") or {}).get("nll"), ".2f")
    out["nll_mnist_vae"] = fmt((vals.get("vae-gaussian") or {}).get("nll"), ".2f")
    return out


__all__ = ["PARAMS", "NOTEBOOK", "TABLE", "resolve", "run", "summary", "claims", "paper_claims", "SIGMA_EVAL"]
