"""The rescue page's table and glued sentences (:mod:`vaebook.experiments.rescue`), from
:func:`vaebook.experiments._rescue_claims.judge`."""
from __future__ import annotations

import math

import pandas as pd

from vaebook.experiments import _rescue_claims as rc
from vaebook.lab.display import fmt
from vaebook.lab.results import fmt_duration

#: the paper's MNIST training length (App. I.1: 100 epochs of batch 64 on 60,000 images)
PAPER_STEPS = 100 * math.ceil(60_000 / 64)
KEYS = ("rs_black", "rs_label", "rs_scale", "rs_fates", "rs_mse", "rs_nll", "rs_noise", "rs_fid", "rs_cost", "rs_verdict")


def label(row: str, labels: dict) -> str:
    return (labels.get(row) or {}).get("label", row)


def scale_text(res) -> str:
    """Scale of the run: steps (fraction of the paper's), images, seeds, evaluation sizes."""
    st = (res.metrics or {}).get("settings") or {}
    steps = int((st.get("train") or {}).get("max_steps") or 0)
    n = st.get("n_train")
    return (f"{fmt(steps, ',.0f')} steps of batch 64 per model ({100 * steps / PAPER_STEPS:.2g} % of the paper's "
            f"{PAPER_STEPS:,}) on {'all 60,000' if n is None else fmt(n, ',.0f')} MNIST training images; "
            f"{len(st.get('seeds') or [])} model seeds per row; {fmt(st.get('n_test'), ',.0f')} test images; valid "
            f"NLL with k = {st.get('iwae_k')} importance samples; FID/KID from {fmt(st.get('fid_samples'), ',.0f')} "
            f"prior samples ({st.get('fid_dims')}-d features, {st.get('fid_bootstrap')} paired bootstrap replicates); "
            f"noisy MNIST: pattern {st.get('noise_pattern')}, s_x² = {st.get('noise_s2')}, estimates on "
            f"{'all' if st.get('n_estimate') is None else fmt(st.get('n_estimate'), ',.0f')} training images")


def table(res) -> pd.DataFrame:
    """One row per model row: fates, values (mean ± s.d. over seeds that are evidence) and the paired tests."""
    j = rc.judge(res)
    if j.empty:
        return j
    labels = (res.metrics or {}).get("rows") or {}
    out = []
    for _, r in j.iterrows():
        t = r["tests"]
        fates = ", ".join(f"{v} {k}" for k, v in r["fates"].items())
        if r["noisy_fates"]:
            fates += " · noisy: " + ", ".join(f"{v} {k}" for k, v in r["noisy_fates"].items())
        out.append({
            "model": label(r["row"], labels), "seeds (fate)": fates,
            "MSE": _pm(r["mse"], r["mse_sd"], ".2f"),
            f"MSE − {rc.MSE_BOUND:.2f}×Iso-I [95 %]": _cell(t["mse"], r["sharp mean"], ".2f"),
            "valid NLL (nats)": _pm(r["nll"], r["nll_sd"], ",.0f"),
            "− Iso-I [95 %]": _cell(t["nll_iso-i"], None, ",.0f"),
            "− Diag-I [95 %]": _cell(t["nll_diag-i"], None, ",.0f"),
            "FID prior": _pm(r["fid"], r["fid_sd"], ".1f"),
            "− Iso-I [95 %] ": _cell(t["fid"], r["prior FID"], ".1f"),
            "KID − Iso-I [95 %]": _cell(t["kid"], None, ".3g"),
            "noise in SU / s_x² [95 %]": _cell(t["noise"], r["noise located"], ".2f"),
            "train s (fastest seed)": fmt(r["train_s_min"], ".0f"),
        })
    return pd.DataFrame(out)


def _pm(v, sd, digits) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return fmt(v, digits) + ("" if sd is None or not math.isfinite(sd) else f" ± {fmt(sd, digits)}")


def _cell(t, verdict, digits) -> str:
    if t is None:
        return "–"
    s = rc.interval(t, digits)
    return s + (f" ({verdict})" if verdict else "")


def _crit_line(j: pd.DataFrame, crit: str, key: str, labels: dict, digits: str, what: str) -> str:
    rescued = j[j["row"].str.startswith("diag-d")]
    parts = []
    for _, r in rescued.iterrows():
        t = r["tests"].get(key)
        if t is None:
            continue
        parts.append(f"{label(r['row'], labels)} {rc.interval(t, digits)} ({r[crit]})")
    return f"{what}: " + ("; ".join(parts) if parts else "no Diag-D row is evidence") + "."


def summary(res) -> dict:
    """The glued strings ('no results yet' without results)."""
    out = {k: "no results yet" for k in KEYS}
    if res is None:
        return out
    j = rc.judge(res)
    if j.empty:
        return {k: "the run holds no records" for k in KEYS}
    labels = (res.metrics or {}).get("rows") or {}
    prov = res.provenance or {}
    out["rs_label"] = res.label
    dev = prov.get("device") or {}
    out["rs_scale"] = (scale_text(res) + f"; device: {dev.get('device', 'n/a')}, {dev.get('threads', '?')} threads"
                       + (f", {dev['capability']}" if dev.get("capability") else "") + ", fp32.")
    fates = [f"{label(r['row'], labels)}: " + ", ".join(f"{v} {k}" for k, v in r["fates"].items())
             for _, r in j.iterrows()]
    out["rs_fates"] = "; ".join(fates) + "."
    out["rs_mse"] = _crit_line(j, "sharp mean", "mse", labels, ".2f",
                               f"MSE − {rc.MSE_BOUND:.2f} × Iso-I's, mean over seeds [95 %]")
    out["rs_nll"] = (_crit_line(j, "likelihood", "nll_iso-i", labels, ",.0f", "valid NLL − Iso-I's (nats)") + " " +
                     _crit_line(j, "likelihood", "nll_diag-i", labels, ",.0f", "Against Diag-I's"))
    out["rs_noise"] = _crit_line(j, "noise located", "noise", labels, ".2f",
                                 "(SU − clean partitions) / s_x², mean over seeds [95 %]")
    out["rs_fid"] = _crit_line(j, "prior FID", "fid", labels, ".1f", "FID − Iso-I's [95 %]")
    iso = j.loc[j["row"] == "iso-i", "train_s_min"]
    base = float(iso.iloc[0]) if len(iso) else math.nan
    out["rs_cost"] = "; ".join(f"{label(r['row'], labels)} {fmt(r['train_s_min'], '.0f')} s"
                               + (f" (×{r['train_s_min'] / base:.2f})" if math.isfinite(base) and base > 0 else "")
                               for _, r in j.iterrows()) + \
        f". Training in all: {fmt_duration(float(sum(_records_train_s(res))))}."
    df = rc.frame(res)
    black = df[df["fate"] == "black"]
    names = "; ".join(label(r, labels) for r in dict.fromkeys(black["row"]))
    out["rs_black"] = ("No seed went black." if black.empty else
                       f"Not drawn: the rows whose output went black ({names}; mean pixel value at most "
                       f"{fmt(float(black['mean_output'].max()), '.2g')} on the test images).")
    keep = [label(r["row"], labels) for _, r in j.iterrows() if r["row"].startswith("diag-d+") and rc.keeps(r)]
    out["rs_verdict"] = (f"Kept every promise at every seed: {', '.join(keep)}." if keep else
                         "No rescue kept all four promises at every seed at this scale.")
    return out


def _records_train_s(res) -> list:
    return [float(r.get("train_s") or 0.0) for r in ((res.metrics or {}).get("records") or {}).values()]


def curve_groups(res) -> list:
    """The models' training loss curves for :func:`vaebook.lab.curve_figure.show_curves`: MNIST, then noisy MNIST, a
    panel row per model row (in the run's order) with its seeds side by side."""
    if res is None:
        return []
    m = res.metrics or {}
    recs, labels, st = list((m.get("records") or {}).values()), m.get("rows") or {}, m.get("settings") or {}
    order = {row: i for i, row in enumerate(labels)}
    recs.sort(key=lambda r: (order.get(r["row"], len(order)), int(r["seed"])))
    noisy = f"noisy MNIST ({st.get('noise_pattern', 'noisy')} pattern, s_x² = {st.get('noise_s2', '?')})"
    return [(head, [(f"{label(r['row'], labels)}, seed {r['seed']}", r) for r in recs if r.get("kind") == kind])
            for kind, head in (("mnist", "MNIST"), ("noisy", noisy))]
