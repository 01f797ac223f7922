"""What the Table-3 page says (the strings it glues): the run, the clean reference, the models that did not train,
Diag-D's finding, the claims and their rules, the training time. Not an experiment (no ``EXPERIMENT``)."""
from __future__ import annotations

import pandas as pd

from vaebook.experiments._noise_variance_cells import (CLEAN_UNIT, CONSTANT_FRACTION, PATTERNS, RECON_VAR_MIN,
                                                      REFERENCE_BAND, TREND_MAX_RATIO)
from vaebook.experiments._noise_variance_claims import CLAIMS, claims, rules, run_line, table_of
from vaebook.experiments._noise_variance_display import SHAPE_NAMES
from vaebook.lab.compare import verdict_line
from vaebook.lab.display import fmt
from vaebook.paper import CLEAN_MNIST_VARIANCE


def _rel_tol(res) -> float:
    return float(((res.provenance.get("parameters") or {}) if res is not None else {}).get("rel_tol", 0.1))


def summary(res) -> dict:
    """Strings for the page's prose (glued); "n/a" when missing."""
    from vaebook.data import noisy_pattern_partitions

    out = {"nv_label": res.label if res is not None else "no results",
           "nv_p_clean": fmt(CLEAN_MNIST_VARIANCE, "g"), "nv_clean": "n/a", "nv_verdicts": "n/a",
           "nv_n_train": "n/a", "nv_diagd_noisy": "n/a", "nv_diagd_clean": "n/a", "nv_diagd_s2": "n/a",
           "nv_diagd_pattern": "n/a", "nv_run": run_line(res), "nv_band": fmt(REFERENCE_BAND, "g"),
           "nv_constant_fraction": fmt(CONSTANT_FRACTION, "g"), "nv_recon_min": fmt(RECON_VAR_MIN, "g"),
           "nv_dnt": "n/a", "nv_diagd_finding": "n/a", "nv_claims": "n/a",
           "nv_clean_ratio": f"the paper quotes {CLEAN_MNIST_VARIANCE:g}", "nv_trend_max": fmt(TREND_MAX_RATIO, "g"),
           "nv_claim_rules": " ".join(f"({i}) {c[0][:1].upper() + c[0][1:]}: {r}." for i, (c, r) in
                                      enumerate(zip(CLAIMS, rules(_rel_tol(res))), 1)),
           "nv_train_time": training_time(res),
           "nv_recount": "The verdicts are those stored with these results"}
    if res is None:
        return out
    m = res.metrics
    out["nv_clean"] = fmt(m.get("clean_estimate_all"), ".3g",
                          "not available (the clean-MNIST reference model was not run or did not train)")
    if m.get("clean_estimate_all"):
        out["nv_clean_ratio"] = (f"{m['clean_estimate_all'] / CLEAN_MNIST_VARIANCE:.1f}× the paper's "
                                 f"{CLEAN_MNIST_VARIANCE:g}")
    out["nv_n_train"] = fmt(m.get("n_train"), ",d") if m.get("n_train") else "n/a"
    t = table_of(res)
    if t is None or not len(t):
        return out
    if m.get("records"):
        out["nv_recount"] = ("The verdicts below are recounted from the per-model estimates these results store, under "
                             "the current rules (no model retrained, no estimate recomputed)")
    out["nv_verdicts"] = verdict_line(t) or "n/a"
    ran = t[t["ours"].notna() | (t["verdict"] == "did not train")]
    dnt = ran[ran["verdict"] == "did not train"]
    # one group per (pattern, s_x², shape); its models = its seeds (single-seed tables: 1, trained unless dnt)
    g = ran.drop_duplicates(["noise_pattern", "s_x2", "model"]).copy()
    n = g["n_seeds"] if "n_seeds" in g else pd.Series(1, index=g.index)
    trained = g["n_trained"] if "n_trained" in g else (g["verdict"] != "did not train").astype(int)
    g["n_dnt"] = (n - trained).astype(int)
    runs, per = int(n.sum()), g[g["n_dnt"] > 0].groupby("model", sort=False)["n_dnt"].sum()
    part = g[(trained > 0) & (trained < n)]
    if len(per):
        whys = [w for u, w in (m.get("did_not_train") or {}).items() if u != CLEAN_UNIT] or list(dnt["reason"])
        why = "; ".join(sorted({str(r).split(" (")[0].removeprefix("did not train: ") for r in whys}))
        out["nv_dnt"] = (f"{int(per.sum())} of {runs} models did not train: "
                         + ", ".join(f"{k} in {v} of its runs" for k, v in per.items()) + f" ({why})"
                         + (f"; their {len(dnt)} cells are shown but not scored" if len(dnt) else "")
                         + (f"; {len(part)} (pattern, s_x², shape) runs with several seeds read the mean of the seeds "
                            "that trained" if len(part) else ""))
    else:
        out["nv_dnt"] = f"All {runs} models on noisy data trained (none non-finite, none independent of its input)"
    out["nv_claims"] = " · ".join(f"{c['claim']}: {c['status']}" for c in claims(res))
    # Diag-D on the largest s_x² of the first pattern that has both noisy and clean partitions
    dd_all = ran[ran["metric"].astype(str).str.startswith("diagD_")]
    dd = dd_all[dd_all["verdict"] != "did not train"]
    if len(dd_all) and not len(dd):
        g = dd_all.drop_duplicates(["noise_pattern", "s_x2"])
        n_runs = int(g["n_seeds"].sum()) if "n_seeds" in g else len(g)
        out["nv_diagd_finding"] = (f"Diag-D did not train in any of its {n_runs} runs, so these results cannot say "
                                   "whether it separates noisy from clean partitions")
    for pattern in ("spatial-conditional", "spatial", "conditional"):
        sub = dd[dd["noise_pattern"] == pattern]
        if len(sub):
            s2 = sub["s_x2"].max()
            sub = sub[sub["s_x2"] == s2]
            noisy = {f"diagD_{k}" for k in noisy_pattern_partitions(pattern)}
            a, b = sub[sub["metric"].isin(noisy)]["ours"].mean(), sub[~sub["metric"].isin(noisy)]["ours"].mean()
            out.update(nv_diagd_noisy=fmt(a), nv_diagd_clean=fmt(b), nv_diagd_s2=fmt(s2, "g"), nv_diagd_pattern=pattern)
            seeds = (f" (means over the {int(sub['n_trained'].iloc[0])} of {int(sub['n_seeds'].iloc[0])} seeds that "
                     "trained)") if "n_seeds" in sub and sub["n_seeds"].iloc[0] > 1 else ""
            out["nv_diagd_finding"] = (f"In the {pattern} pattern with s_x² = {fmt(s2, 'g')}, Diag-D averages "
                                       f"{fmt(a)} on the noisy partitions and {fmt(b)} on the clean ones{seeds}: a "
                                       f"difference of {fmt(a - b)} against the injected {fmt(s2, 'g')}")
            break
    return out


def training_time(res) -> str:
    """The models' cumulative training time from the per-model records (``train_s``: the zoo's wall time of each
    model's training, in whichever sitting trained it, reused models included), or why it cannot be given."""
    if res is None:
        return "n/a"
    recs = res.metrics.get("records") or []
    times = [r.get("train_s") for r in recs]
    wall = res.provenance.get("wall_s")
    last = (f"the {fmt(wall / 60, '.1f')} min in the run label is the wall time of the sitting that wrote these "
            "results, not the models' training time") if isinstance(wall, (int, float)) else ""
    if recs and all(isinstance(x, (int, float)) for x in times):
        total, reused = sum(times), sum(1 for r in recs if r.get("from_cache"))
        return (f"the {len(recs)} models trained for {fmt(total / 3600, '.2f')} h in all (sum of each model's recorded "
                f"training time, {fmt(min(times), '.0f')}–{fmt(max(times), '.0f')} s per model; {reused} of them "
                "reused from the model cache, trained in earlier sittings)" + (f"; {last}" if last else ""))
    return ("these results do not record the models' training time (runs from this revision on record each model's, "
            "also for models reused from the model cache)" + (f"; {last}" if last else ""))



def curve_groups(res) -> list:
    """The models' training loss curves for :func:`vaebook.lab.curve_figure.show_curves`: one group per noise
    pattern (a panel per s_x², shape and, where a cell has several, model seed), then the clean-MNIST reference."""
    recs = (res.metrics.get("records") or []) if res is not None else []
    n_seeds = pd.Series([(r.get("pattern"), r.get("s_x2"), r.get("model")) for r in recs]).value_counts().to_dict()

    def title(r) -> str:
        t = f"{SHAPE_NAMES.get(r['model'], r['model'])}, s_x² = {fmt(r['s_x2'], 'g')}"
        return t + (f", seed {r['seed']}" if n_seeds.get((r.get("pattern"), r["s_x2"], r["model"]), 1) > 1 else "")

    out = [(f"noisy MNIST, {pattern} pattern", [(title(r), r) for r in recs
                                                if r.get("kind") != "clean" and r.get("pattern") == pattern])
           for pattern in PATTERNS]
    clean = [(f"{SHAPE_NAMES.get(r['model'], r['model'])} on clean MNIST", r) for r in recs if r.get("kind") == "clean"]
    return [g for g in out + [("the clean-MNIST reference", clean)] if g[1]]
