"""The rules of the smoothness page (Table 1, Table E.8): how each cell is judged against the paper
(:func:`compare_table`) and how each claim is read (:func:`claims`; its rules in words: :data:`RULES`). The two
collapse claims are read on the training objective by :mod:`._collapse_claims` (the collapse page reads Table 1's
with its own runs). Not an experiment (no ``EXPERIMENT``): :mod:`.smoothness` holds the science (models,
evaluation, tables), this module what is concluded from it, :mod:`._smoothness_page` the page's prose and figures.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from vaebook.experiments import _collapse_claims as cc
from vaebook.experiments import smoothness as sm
from vaebook.experiments._collapse_claims import COLLAPSE_TOL
from vaebook.lab.compare import compare, pairwise_trend, verdict
from vaebook.lab.display import fmt, pct
from vaebook.paper import MI_EVAL_BATCH, paper_table

#: "trend holds" needs ours within this factor (either way) of the paper's value, besides the row's direction
TREND_BAND = 2.0
#: an MI cell is "at ceiling" when ours ≥ ln(batch) − this (nats): Eq. (D.1) cannot exceed ln(batch)
MI_CEILING_TOL = 0.05
#: a claim is "partly" shown when at least this share of its steps/rows (but not all) supports it
PARTLY_MIN = 0.5


# -- cells ---------------------------------------------------------------------------------------------
def _band(paper: float, ours: float) -> tuple[bool, str]:
    """Whether ours is within a factor :data:`TREND_BAND` of the paper's value (both positive)."""
    if not (paper > 0 and ours > 0):
        return False, f"ours {fmt(ours)} and paper {fmt(paper)} are not both positive: no ×{TREND_BAND:g} band"
    r = ours / paper
    ok = 1.0 / TREND_BAND <= r <= TREND_BAND
    return ok, f"ours/paper = {r:.2f} ({'within' if ok else 'outside'} ×{TREND_BAND:g})"


def _row_trend(cell, df: pd.DataFrame, key: str, exclude: set) -> tuple[bool, str]:
    """(holds, why) for one cell: ours within :data:`TREND_BAND` of the paper's value **and**, against each
    neighbouring row of the sweep that we ran (rows in ``exclude`` — collapse rows — and rows without our
    value left out), our change has the paper's sign (:func:`vaebook.lab.compare.pairwise_trend`: where the
    paper's two values are within 5 % of each other ours must be within 10 %)."""
    pv, ov = float(cell["paper"]), float(cell["ours"])
    in_band, why_band = _band(pv, ov)
    sel = df[(df["dataset"] == cell["dataset"]) & (df["metric"] == cell["metric"]) & df["paper"].notna()
             & df["ours"].notna() & ~df["row"].isin(exclude)].sort_values(key, ascending=False, kind="stable")
    rows = list(sel["row"])
    if cell["row"] not in rows:
        return False, why_band + "; direction not judged (row outside the sweep)"
    i = rows.index(cell["row"])
    nbs = [sel.iloc[j] for j in (i - 1, i + 1) if 0 <= j < len(rows)]
    if not nbs:
        return False, why_band + "; no neighbouring row run: direction not judged"
    dirs = [pairwise_trend(pv, float(nb["paper"]), ov, float(nb["ours"]), str(nb["row"])) for nb in nbs]
    return in_band and all(d[0] for d in dirs), "; ".join([why_band] + [d[1] for d in dirs])


def compare_table(ours: pd.DataFrame, paper: pd.DataFrame, table: str, mi_cap: Optional[float] = None,
                  collapse_rows: Optional[tuple] = None) -> pd.DataFrame:
    """The long comparison of ``table`` (:func:`vaebook.lab.compare.compare`), cell by cell:

    * MI (Eq. D.1 cannot exceed ln N, N the evaluation batch; ``mi_cap`` = our ln N, else the paper's
      ln 10,000): ours within :data:`MI_CEILING_TOL` of ``mi_cap`` is ``at ceiling`` (it says only MI ≥ ours);
      else a paper value above ln N is ``unreachable`` (no value of ours could match it; never ``differs``);
    * ``collapse_rows`` (log10 values; default :data:`smoothness.COLLAPSE`): rows where the paper shows posterior
      collapse of the stochastic encoder, judged by value only (a trend cannot excuse a missing collapse): a
      KL/MI the paper prints as ≈ 0 must be matched within ±:data:`COLLAPSE_TOL` nats, σz² within ±0.05,
      anything else within 10 %;
    * elsewhere ``match`` is within 10 %, else ``trend holds`` when ours is within a factor :data:`TREND_BAND`
      of the paper's value **and** the row's direction holds against each neighbouring row we ran
      (:func:`_row_trend`; collapse rows are not neighbours of stochastic cells), else ``differs``.
    Deterministic (``det_``) columns have no collapse rows.
    """
    collapse = {sm.row_key(table, v) for v in (sm.COLLAPSE[table] if collapse_rows is None else collapse_rows)}
    key = sm.KEY[table]
    reach = mi_cap if mi_cap is not None else math.log(MI_EVAL_BATCH)

    def judge(cell, df):
        m = cell["metric"]
        det, q = m.startswith("det_"), m.replace("det_", "")
        pv, ov = float(cell["paper"]), float(cell["ours"])
        if q == "mi" and mi_cap is not None and ov >= mi_cap - MI_CEILING_TOL:
            return "at ceiling", (f"ours {fmt(ov)} is at our estimator's ceiling ln(batch) = {mi_cap:.2f} (within "
                                  f"{MI_CEILING_TOL:g} nats): it says only MI ≥ {fmt(ov)}; paper {fmt(pv)}")
        if q == "mi" and pv > reach:
            return "unreachable", (f"the paper's {pv:g} exceeds ln N = {reach:.2f}, the most Eq. (D.1) can report "
                                   f"with {'our' if mi_cap is not None else 'the paper’s'} evaluation batch of "
                                   f"N = {math.exp(reach):,.0f}: no value of ours could reach it; ours {fmt(ov)}")
        abs_tol, note, trend = 0.0, "", None
        if not det and cell["row"] in collapse:
            if q in ("kl", "mi") and abs(pv) <= COLLAPSE_TOL:
                abs_tol = COLLAPSE_TOL
                note = f"collapse row: the paper's value ≈ 0 must be matched (±{COLLAPSE_TOL:g} nats)"
            elif q == "sigma_z2":
                abs_tol, note = 0.05, "collapse row: σz² → 1"
            else:
                note = "collapse row: compared by value only"
        else:
            trend = _row_trend(cell, df, key, set() if det else collapse)
        if q == "mi" and mi_cap:
            note = "; ".join(x for x in (note, f"our estimator is capped at ln(batch) = {mi_cap:.2f}") if x)
        return verdict(pv, ov, rel_tol=0.1, abs_tol=abs_tol, trend=trend, note=note)

    df = compare(ours, paper, judge)
    rank = {m: i for i, m in enumerate(sm.COLUMNS.get(table, ()))}
    cols = [c for c in ("dataset", "row", key) if c in df] + [c for c in df.columns if c not in ("dataset", "row", key)]
    return (df[cols].assign(_m=df["metric"].map(lambda m: rank.get(m, len(rank))), _k=-df[key].astype(float))
            .sort_values(["_m", "_k"], kind="stable").drop(columns=["_m", "_k"]).reset_index(drop=True))


# -- reading a run ---------------------------------------------------------------------------------------
def records(res, table: Optional[str] = None) -> list:
    """The run's per-model records; with ``table``, that table's only."""
    return [r for r in res.metrics.get("records", []) if table is None or r.get("table", table) == table]


def model_steps(res, table: Optional[str] = None) -> Optional[int]:
    steps = [r["steps"] for r in records(res, table) if r.get("steps")]
    return int(max(steps)) if steps else None


def scale(res, table: Optional[str] = None) -> str:
    """A claim's scale: steps and images against the paper's, seeds."""
    n, steps = res.metrics.get("n_train"), model_steps(res, table)
    return (f"{steps:,} of {sm.PAPER_STEPS:,.0f} steps ({pct(steps, sm.PAPER_STEPS)}), " if steps else "steps n/a, ") + \
        (f"{n:,} of {sm.PAPER_IMAGES:,} images ({pct(n, sm.PAPER_IMAGES)}), " if n else "images n/a, ") + "1 seed"


def table_results(res, table: str):
    """The results a page section shows for ``table``: ``res`` when it holds the table, else the largest
    smaller-preset results beside it that do (a run of Table 1 alone leaves Table E.8 to them), never smoke
    numbers for a non-smoke run; None when there are none. Each section states its own run's scale."""
    if res is None or table in res.tables or f"ours_{table}" in res.tables:
        return res
    other = sm.EXPERIMENT.find(res.path.parent.parent, table=table, below=res.preset)
    return None if other is None or (other.is_smoke and not res.is_smoke) else other


def collapse_results(res):
    """The collapse page's results beside ``res`` (same results folder) at σx² = 1, never smoke numbers for a
    non-smoke run; None when there are none."""
    from vaebook.lab.page import get_experiment  # by name: the collapse module is not part of this page's code

    path = getattr(res, "path", None)
    if path is None:
        return None
    cl = get_experiment("collapse").find(path.parent.parent)
    if cl is None or (cl.is_smoke and not res.is_smoke) or float(cl.metrics.get("sigma_x2", 1.0)) != 1.0:
        return None
    return cl


def trace_c(res) -> tuple[Optional[float], str]:
    """(tr C, where it comes from) of the training images ``res``'s models were trained on: the run's own
    ``tr_c_train``, else the collapse page's of the same number of images of the same dataset; None when
    neither is recorded."""
    m = res.metrics
    n = m.get("n_train")
    if m.get("tr_c_train") is not None:
        return float(m["tr_c_train"]), f"tr C = {fmt(m['tr_c_train'], '.4g')} of the run's {fmt(n, ',d')} training images"
    cl = collapse_results(res)
    th = (cl.metrics.get("theory") or {}) if cl is not None else {}
    if th.get("tr_c_train") is not None and n and th.get("n_images") == n:
        return float(th["tr_c_train"]), (f"tr C = {fmt(th['tr_c_train'], '.4g')} of the same {n:,} training images, "
                                         "recorded by the collapse page's run")
    return None, f"tr C of the run's {fmt(n, ',d')} training images is not recorded"


# -- claims ----------------------------------------------------------------------------------------------
LABELS = {"els": "ELS", "gap_1e-2": "Δ²(1e-2)", "gap_1e-3": "Δ²(1e-3)", "mi": "MI", "sigma_z2": "σz²",
          "det_els": "det ELS"}
CLAIMS = (
    ("collapse", "MNIST: σx² = 1 collapses the posterior (KL and MI ≈ 0)", "4.2"),
    ("sz", "MNIST: the learned σz² falls with σx²", "4.2"),
    ("els", "MNIST: the decoder gets rougher (ELS and expected gaps rise) as σx² falls", "4.2"),
    ("mi", "MNIST: the MI bound rises as σx² falls", "4.2"),
    ("det_rough", "MNIST: the deterministic encoder's decoder is rougher (higher ELS) than the stochastic one's", "4.2"),
    ("det_els", "MNIST: without σz², the decoder gets rougher (higher ELS) as σx² rises (deterministic encoding)", "4.2"),
    ("det_mi", "MNIST: at σx² = 1 the deterministic encoder's MI stays far above the collapsed stochastic one's", "4.2"),
    ("e8_els", "MNIST: a larger fixed σz² makes the decoder smoother (ELS and expected gaps fall)", "E"),
    ("e8_mi", "MNIST: the MI bound falls as σz² rises", "E"),
    ("e8_collapse", "MNIST: a large σz² collapses the posterior without KL collapse", "E"),
)
_STEPS = (f"consecutive steps of our sweep (the variance falling) that move the paper's way: all → holds, at least "
          f"{PARTLY_MIN:.0%} → partly, fewer → not shown at this scale; the paper's tally on the same rows beside it")
#: each claim's rule, in words (the page prints it where the claim is read)
RULES = {
    "collapse": cc.RULE_COLLAPSE,
    "sz": "σz² must fall: " + _STEPS, "els": "ELS and both gaps must rise: " + _STEPS,
    "mi": "MI must rise: " + _STEPS + "; a step with an end at the MI ceiling is not informative and caps it at partly",
    "det_rough": (f"deterministic ELS above stochastic at every σx² run (at least {PARTLY_MIN:.0%}: partly), with "
                  "the ratio's range beside the paper's"),
    "det_els": "deterministic ELS must fall as σx² falls: " + _STEPS,
    "det_mi": (f"holds when at σx² = 1 the deterministic MI exceeds the stochastic MI by more than {COLLAPSE_TOL:g} "
               "nats, as the paper's does; otherwise not shown at this scale (never not reproduced: the deterministic "
               "MI depends on an Eq. (D.1) kernel width the paper does not give)"),
    "e8_els": "ELS and both gaps must rise as σz² falls: " + _STEPS,
    "e8_mi": "MI must rise as σz² falls: " + _STEPS + "; steps at the MI ceiling cap it at partly",
    "e8_collapse": cc.RULE_E8_COLLAPSE,
}


def _status(n_ok: int, n: int) -> str:
    if n == 0:
        return "not shown at this scale"
    if n_ok == n:
        return "holds"
    return "partly" if n_ok >= PARTLY_MIN * n and n_ok > 0 else "not shown at this scale"


def _series(wide: Optional[pd.DataFrame], key: str, col: str) -> list:
    """``[(log10, value)]`` of a wide table's column, largest variance first, rows without a value left out."""
    if wide is None or col not in wide:
        return []
    w = wide[[key, col]].apply(pd.to_numeric, errors="coerce").dropna().sort_values(key, ascending=False)
    return list(zip(w[key].astype(float), w[col].astype(float)))


def _steps(series: list, sign: int, ceiling: Optional[float] = None) -> tuple[int, int, int]:
    """Consecutive steps of ``series`` (variance falling) whose change has ``sign`` (+1 rises, −1 falls):
    (agreeing, informative, saturated). A step with an end at the MI ``ceiling`` is saturated, not informative."""
    ok = n = sat = 0
    for (_, a), (_, b) in zip(series, series[1:]):
        if ceiling is not None and max(a, b) >= ceiling - MI_CEILING_TOL:
            sat += 1
            continue
        n += 1
        ok += int(np.sign(b - a) == sign)
    return ok, n, sat


def _ends(series: list, sym: str) -> str:
    return f"{fmt(series[0][1])} → {fmt(series[-1][1])} ({sym} {fmt(10 ** series[0][0], '.2g')} → " \
           f"{fmt(10 ** series[-1][0], '.2g')})" if series else "n/a"


def _direction_claim(series_by_col: dict, sign: int, sym: str, ceiling: Optional[float] = None,
                     paper: Optional[dict] = None) -> tuple:
    """(status, evidence) of 'every column moves with ``sign`` as the variance falls', pooled over columns; with
    ``paper`` (column → the paper's series), the paper's tally on the rows we ran beside ours."""
    ok = n = sat = 0
    parts = []
    for col, ser in series_by_col.items():
        if len(ser) < 2:
            continue
        o, k, s_ = _steps(ser, sign, ceiling)
        ok, n, sat = ok + o, n + k, sat + s_
        ran = {round(lv, 6) for lv, _ in ser}
        pser = [(lv, v) for lv, v in (paper or {}).get(col, []) if round(lv, 6) in ran]
        po, pk, _ = _steps(pser, sign) if len(pser) >= 2 else (0, 0, 0)
        parts.append(f"{LABELS.get(col, col)} {_ends(ser, sym)}: {o} of {k} steps"
                     + (f", {s_} at the MI ceiling" if s_ else "") + (f" (paper: {po} of {pk})" if pk else ""))
    if not parts:
        return "not run", "fewer than two rows run"
    status = _status(ok, n)
    if sat and status == "holds":
        status = "partly"  # the ceiling hides the rest of the sweep
    return status, "; ".join(parts)


def det_mi_claim(det_mi: float, mi: float, paper_row: dict, kernel: Optional[float], cap: Optional[float],
                 steps: Optional[int]) -> tuple:
    """(status, evidence) of "at σx² = 1 the deterministic MI stays far above the stochastic one" (:data:`RULES`):
    holds when det_mi − mi > :data:`COLLAPSE_TOL` with the stochastic MI below the ceiling."""
    pd_, ps = paper_row.get("det_mi"), paper_row.get("mi")
    at_cap = cap is not None and mi >= cap - MI_CEILING_TOL
    ok = not at_cap and det_mi - mi > COLLAPSE_TOL
    gap = f"{pd_ - ps:+.3g}" if pd_ is not None and ps is not None else "n/a"
    ev = (f"at σx² = 1: deterministic MI {fmt(det_mi)} nats vs stochastic {fmt(mi)}, a difference of "
          f"{det_mi - mi:+.3g} nats (paper {fmt(pd_)} vs {fmt(ps)}, {gap}"
          + (f"; its {fmt(pd_)} exceeds ln {MI_EVAL_BATCH:,} = {math.log(MI_EVAL_BATCH):.2f}, the most Eq. (D.1) can "
             "report at its own batch" if pd_ is not None and pd_ > math.log(MI_EVAL_BATCH) else "") + ")")
    if at_cap:
        ev += "; the stochastic MI is at the estimator's ceiling, so no deterministic value could exceed it"
    if not ok:
        ev += (f"; not a contradiction of the objective: Eq. (D.1) for a deterministic encoder needs a kernel width the "
               f"paper does not give (ours: the stochastic model's σz² = {fmt(kernel)}), and without noise the "
               "objective's ½‖μφ(x)‖² shrinks the codes at no cost to the reconstruction (the decoder rescales them), so "
               f"at a fixed kernel the value says how far the codes shrank in {fmt(steps, ',d')} steps, not which "
               "solution the objective prefers")
    return ("holds" if ok else "not shown at this scale"), ev


def _row_at(wide, key, value):
    if wide is None or key not in wide:
        return None
    r = wide[pd.to_numeric(wide[key], errors="coerce").round(6) == round(value, 6)]
    return r.iloc[0] if len(r) else None


def _val(row, col):
    v = row.get(col) if row is not None else None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def table1_row(res) -> Optional[dict]:
    """Our Table-1 stochastic row at σx² = 1 (``kl``, ``mi``, ``sigma_z2``, ``final_loss``), or None."""
    r = _row_at(res.tables.get("ours_table1"), "log10_sigma_x2", 0.0) if res is not None else None
    return {c: _val(r, c) for c in ("kl", "mi", "sigma_z2", "final_loss")} if r is not None else None


def claims(res) -> list:
    """The claims of Section 4.2 (Table 1) and Appendix E (Table E.8), each ``{claim, section, status, evidence,
    scale}`` computed from ``res``'s wide tables, Appendix E's from :func:`table_results`, Table 1's collapse
    claim also from the collapse page's runs beside it (:func:`collapse_results`); rules: :data:`RULES`. None →
    ``not run``; smoke → ``not run`` (smoke numbers are not results)."""
    out = {cid: {"claim": c, "section": sec, "status": "not run", "evidence": "no results", "scale": "n/a"}
           for cid, c, sec in CLAIMS}
    if res is None:
        return list(out.values())
    res8 = table_results(res, "tableE8")
    t1 = res.tables.get("ours_table1")
    e8 = res8.tables.get("ours_tableE8") if res8 is not None else None
    cap = res.metrics.get("mi_cap_ln_batch")
    cap8 = res8.metrics.get("mi_cap_ln_batch") if res8 is not None else None
    x, z = "log10_sigma_x2", "log10_sigma_z2"

    def put(cid, status, evidence, extra=""):
        src = res8 if cid.startswith("e8_") else res  # Appendix E is judged on Table E.8's run
        out[cid].update(status=status, evidence=evidence, smoke=src.is_smoke,
                        scale=scale(src, "tableE8" if cid.startswith("e8_") else "table1") + extra)

    p1, pe8 = paper_table("table1"), paper_table("tableE8")
    pr1, pr8 = _row_at(p1, x, 0.0), _row_at(pe8, z, 1.0)
    paper1 = {c: _val(pr1, c) for c in ("kl", "mi", "sigma_z2", "det_mi")}
    r, row = _row_at(t1, x, 0.0), table1_row(res)
    cl = collapse_results(res)
    runs = cl.tables.get("table_collapse_runs") if cl is not None else None
    st, ev = cc.collapse_claim(row, trace_c(res), runs, paper1)
    if st != "not run":
        put("collapse", st, ev, f"; collapse page: {len(runs)} models, {cl.label}" if runs is not None else "")
    if t1 is not None:
        pser = lambda cols, key, tab: {c: _series(tab, key, c) for c in cols}  # noqa: E731
        for cid, cols, sign, ceil in (("sz", ("sigma_z2",), -1, None), ("els", ("els", "gap_1e-2", "gap_1e-3"), +1, None),
                                      ("mi", ("mi",), +1, cap), ("det_els", ("det_els",), -1, None)):
            st, ev = _direction_claim({c: _series(t1, x, c) for c in cols}, sign, "σx²", ceil, pser(cols, x, p1))
            put(cid, st, ev) if st != "not run" else None
        pairs = [(lx, dict(_series(t1, x, "els")).get(lx), v) for lx, v in _series(t1, x, "det_els")]
        pairs = [(lx, s_, d) for lx, s_, d in pairs if s_ is not None]
        if pairs:
            k = sum(d > s_ for _, s_, d in pairs)
            ratios = [d / s_ for _, s_, d in pairs if s_ > 0]
            ran = {round(lx, 6) for lx, _, _ in pairs}
            pp = p1[p1[x].round(6).isin(ran)]
            pr = (pp["det_els"].astype(float) / pp["els"].astype(float))
            put("det_rough", _status(k, len(pairs)),
                f"deterministic ELS above stochastic at {k} of {len(pairs)} σx² run (paper: {int((pr > 1).sum())} of "
                f"{len(pr)})" + (f"; ratio {fmt(min(ratios))}–{fmt(max(ratios))} (paper {fmt(pr.min())}–"
                                 f"{fmt(pr.max())})" if ratios else ""))
        dmi, mi = _val(r, "det_mi"), _val(r, "mi")
        if dmi is not None and mi is not None:
            put("det_mi", *det_mi_claim(dmi, mi, paper1, _val(r, "det_mi_kernel_sigma_z2") or row.get("sigma_z2"),
                                        cap, model_steps(res, "table1")))
    if t1 is not None and ("det_els" not in t1 or t1["det_els"].isna().all()):
        for cid in ("det_els", "det_rough", "det_mi"):  # a run that left the deterministic encoder out
            out[cid]["evidence"] = "not in this run (it trained the stochastic encoder only)"
    if e8 is not None:
        cols = ("els", "gap_1e-2", "gap_1e-3")
        st, ev = _direction_claim({c: _series(e8, z, c) for c in cols}, +1, "σz²", None,
                                  {c: _series(pe8, z, c) for c in cols})
        put("e8_els", st, ev) if st != "not run" else None
        st, ev = _direction_claim({"mi": _series(e8, z, "mi")}, +1, "σz²", cap8, {"mi": _series(pe8, z, "mi")})
        put("e8_mi", st, ev) if st != "not run" else None
        big = [(lz, _row_at(e8, z, lz)) for lz, _ in _series(e8, z, "mi") if lz >= 0.9 - 1e-9]
        if big:
            rows = [(lz, _val(w, "mi"), _val(w, "kl"), _val(w, "final_loss")) for lz, w in big]
            put("e8_collapse", *cc.e8_collapse_claim(rows, trace_c(res8), {c: _val(pr8, c) for c in ("mi", "kl")}))
    for rec in out.values():
        if rec.pop("smoke", False):
            rec.update(status="not run", evidence="smoke test, not a result: " + rec["evidence"])
    return list(out.values())


__all__ = ["TREND_BAND", "MI_CEILING_TOL", "COLLAPSE_TOL", "PARTLY_MIN", "CLAIMS", "RULES", "compare_table", "claims",
           "det_mi_claim", "table_results", "collapse_results", "trace_c", "scale", "records", "model_steps"]
