"""The verdict rule of Tables 4–7 (:func:`judge`: match, trend against :func:`reference_row`, or differs), a
committed table judged again under today's rule (:func:`recount`), and a table's not-run reasons and order
(:func:`finish_table`)."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import pandas as pd

from vaebook.experiments._section6.presets import DATASETS
from vaebook.experiments._section6.rows import display
from vaebook.lab.compare import SCORED, compare, fmt, pairwise_trend, verdict

MLE_ROWS = ("mle-iso-i", "mle-iso-d", "mle-diag-i", "mle-diag-d")


def reference_row(name: str, available: Sequence[str], twin: bool) -> Optional[str]:
    """The row a cell's trend is read against: an MLE model against the trainable-Σx model of the same
    shape (``twin``: Tables 4, 5 — the paper's comparison of their bottom eight rows), else against the
    σx² = 1 VAE (Tables 6, 7); a trainable model against its MLE twin; any other row against the first
    MLE row that ran."""
    if name.startswith("mle-"):
        prefs = ([name.replace("mle-", "trainable-")] if twin else []) + ["vae-gaussian"]
    elif name.startswith("trainable-"):
        prefs = [name.replace("trainable-", "mle-")]
    else:
        prefs = list(MLE_ROWS)
    return next((r for r in prefs if r != name and r in available), None)


#: the magnitude bound of a Section-6 "trend holds": ours within this factor of the paper's value
TREND_MAX_RATIO = 3.0


def judge(twin: bool, notes: Optional[dict] = None, rel_tol: float = 0.1, max_ratio: float = TREND_MAX_RATIO,
          offset=None, bias=None):
    """The verdict rule of Tables 4–7 for :func:`vaebook.lab.compare.compare`.

    ``match`` within ``rel_tol`` of the paper; else ``trend holds`` when ours lies on the same side of
    :func:`reference_row` as the paper's value (:func:`~vaebook.lab.compare.pairwise_trend`; the paper's
    ties within 5 % must stay within 10 %) and within ``max_ratio``× of the paper's value; else ``differs``.
    A cell with a ``note`` (an FID off the paper's scale, stand-in images) cannot ``match``.
    ``notes[(dataset, row)]``: the paper's footnotes. ``offset(dataset)``: a constant every value of the column
    contains whatever the model (e.g. the D/2·ln 2π of a Gaussian NLL); the match tolerance and the magnitude
    bound are read on the values minus it, so a tolerance of 10 % cannot be met by the constant alone.
    ``bias(dataset, metric)``: what our own value carries that the paper's does not (FID's bias at our sample size:
    the real-vs-real FID at the same N, :func:`real_floor`); the magnitude bound is read on ours minus it, so a
    model no worse than real data at N = 300 is not ruled out by the bias alone. None or 0: no correction.
    """
    notes = notes or {}

    def rule(cell: pd.Series, df: pd.DataFrame) -> tuple:
        c = float(offset(cell["dataset"])) if offset is not None else 0.0
        b = float((bias(cell["dataset"], cell["metric"]) if bias is not None else 0.0) or 0.0)
        same = df[(df["dataset"] == cell["dataset"]) & (df["metric"] == cell["metric"]) & df["ours"].notna()]
        ref = reference_row(cell["row"], list(same["row"]), twin)
        trend = None
        if ref is not None:
            r = same[same["row"] == ref].iloc[0]
            trend = pairwise_trend(cell["paper"], r["paper"], cell["ours"], r["ours"], display(ref))
        note = cell.get("note") if isinstance(cell.get("note"), str) else ""
        text = "; ".join(x for x in (note, notes.get((cell["dataset"], cell["row"]), "")) if x)
        if c:
            text = "; ".join(x for x in (text, f"tolerance and magnitude bound read on the values minus the constant "
                                                f"{c:.1f} every model's value contains") if x)
        if b:
            text = "; ".join(x for x in (text, f"magnitude bound read on ours minus FID's bias at our sample size "
                                                f"(real-vs-real FID {b:.3g})") if x)
        po, oo = cell["paper"] - c, cell["ours"] - c - b
        v, why = verdict(po, oo, rel_tol=0.0 if note else rel_tol, trend=trend, note=text, max_ratio=max_ratio)
        if c or b:  # the reason quotes the values as printed
            why = why.replace(f"ours {fmt(oo)} vs paper {fmt(po)}",
                              f"ours {fmt(cell['ours'])} vs paper {fmt(cell['paper'])} (read as {fmt(oo)} vs "
                              f"{fmt(po)})")
        if note and v == "match":  # equal by chance: a value off the paper's scale cannot match
            v = "trend holds" if (trend and trend[0]) else "differs"
        return v, why

    return rule


def recount(table: pd.DataFrame, rule, notes: dict, paper: pd.DataFrame, datasets: Sequence[str],
            metric_order: Sequence[str] = ()) -> pd.DataFrame:
    """A committed comparison table judged again under today's ``rule`` from its own values: ours and the paper's
    columns are kept, each scored cell gets the verdict and reason the rule gives now. ``notes[metric]``: the note a
    cell of that metric carried when it was judged (e.g. :func:`fid_note` of the run's sample size). Cells that were
    not scored (ours only, did not train, not run) keep their verdict."""
    scored = table[table["verdict"].isin(SCORED)]
    ours = scored[["row", "dataset", "metric", "ours", *(c for c in ("model", "group") if c in scored)]].copy()
    ours["note"] = ours["metric"].map(lambda m: notes.get(m, ""))
    again = compare(ours, paper[paper.set_index(["row", "dataset", "metric"]).index.isin(
        scored.set_index(["row", "dataset", "metric"]).index)], rule).set_index(["row", "dataset", "metric"])
    out = table.copy()
    for i, r in out.iterrows():
        k = (r["row"], r["dataset"], r["metric"])
        if r["verdict"] in SCORED and k in again.index:
            out.at[i, "verdict"], out.at[i, "reason"] = again.at[k, "verdict"], again.at[k, "reason"]
    return out


def finish_table(df: pd.DataFrame, ran: set, datasets: Sequence[str], metric_hint: str = "not computed in this run",
                 dataset_order: Sequence[str] = DATASETS, metric_order: Sequence[str] = ()) -> pd.DataFrame:
    """Say why a paper cell was not run (dataset / model / metric not selected: ``metric_hint``), drop the
    helper columns, and sort: datasets in ``dataset_order``, then metrics in ``metric_order`` (the paper's
    column order), then rows as given. ``ran``: the (row, dataset) pairs that were run."""
    df = df.drop(columns=[c for c in ("note",) if c in df]).copy()
    if len(df):
        rows = {r: i for i, r in enumerate(dict.fromkeys(df["row"]))}
        key = pd.DataFrame({"d": df["dataset"].map(lambda d: list(dataset_order).index(d) if d in dataset_order
                                                    else len(dataset_order)),
                            "r": df["row"].map(rows),
                            "m": df["metric"].map(lambda m: list(metric_order).index(m) if m in metric_order
                                                  else len(metric_order))}, index=df.index)
        df = df.loc[key.sort_values(["d", "m", "r"], kind="stable").index].reset_index(drop=True)
    for i, r in df.iterrows():
        if r["verdict"] is None or (isinstance(r["verdict"], float) and math.isnan(r["verdict"])):
            if r["reason"] != "not run":
                continue
            if r["dataset"] not in datasets:
                why = f"not run: dataset {r['dataset']!r} not selected (parameter 'datasets')"
            elif (r["row"], r["dataset"]) not in ran:
                why = "not run: model not selected (parameter 'models'; the smoke preset runs a subset)"
            else:
                why = f"not run: {metric_hint}"
            df.at[i, "reason"] = why
    return df



__all__ = ["MLE_ROWS", "reference_row", "TREND_MAX_RATIO", "judge", "recount", "finish_table"]
