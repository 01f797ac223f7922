"""Comparing our numbers with the paper's: verdict rules, long comparison rows, counts.

A comparison row is one cell: ``row`` (our key of the table row), ``dataset``, ``metric``, ``paper``,
``ours``, ``verdict``, ``reason`` (plus display columns such as ``model``/``group``). Rows are the outer
join of ours and the paper's: a paper cell we did not compute has no verdict ("not run"), a cell we
computed that the paper does not print is ``ours only``, a cell of a model that did not train is
``did not train`` and is never scored.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

SCORED = ("match", "trend holds", "differs")
#: ``at ceiling``: our value sits at the most its estimator can report (e.g. an MI bound at ln(batch)), so it
#: says nothing about the paper's value; it is not scored against it.
#: ``unreachable``: the paper's value lies beyond what our estimator can report at all (e.g. an MI of 760 nats
#: against a bound that cannot exceed ln N = 9.21): no value of ours could match it, so the cell is not scored
#: and never counted as ``differs``.
VERDICTS = SCORED + ("ours only", "did not train", "at ceiling", "unreachable")
KEY = ("row", "dataset", "metric")


def isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt(v) -> str:
    if isnan(v):
        return "n/a"
    v = float(v)
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 or v == 0 else f"{v:.2e}"


def verdict(paper, ours, rel_tol: float = 0.1, abs_tol: float = 0.0, trend=None, note: str = "",
            max_ratio: Optional[float] = None) -> tuple[str, str]:
    """One number against the paper's: ``match`` when ``|ours − paper| <= rel_tol·|paper| + abs_tol``, else
    ``trend holds`` when ``trend`` (a bool or ``(bool, why)``) is true, else ``differs``. Returns (verdict, reason).

    ``max_ratio``: the magnitude bound of ``trend holds``: a cell whose value is more than ``max_ratio`` times
    the paper's, or less than 1/``max_ratio`` of it (both of one sign), is ``differs`` even when its ordering
    agrees: a trend read on numbers that far from the paper's says little about the paper's numbers."""
    if max_ratio is not None and not (isinstance(max_ratio, (int, float)) and max_ratio > 1):
        raise ValueError(f"max_ratio must be a number > 1 (the largest ours/paper ratio a trend may span), "
                         f"got {max_ratio!r}")
    why = ""
    if isinstance(trend, tuple):
        trend, why = bool(trend[0]), str(trend[1])
    reasons = []
    if isnan(paper) or isnan(ours):
        v = "trend holds" if trend else "differs"
        reasons.append(f"no value to compare (paper {fmt(paper)}, ours {fmt(ours)})")
    else:
        p, o = float(paper), float(ours)
        if abs(o - p) <= rel_tol * abs(p) + abs_tol:
            v = "match"
            reasons.append(f"ours {fmt(o)} vs paper {fmt(p)}: within {rel_tol:.0%}" + (f" + {abs_tol:g}" if abs_tol else ""))
        else:
            v = "trend holds" if trend else "differs"
            ratio = o / p if p != 0 else math.inf
            if v == "trend holds" and max_ratio is not None and not (1 / max_ratio <= ratio <= max_ratio):
                v = "differs"
                reasons.append(f"ours/paper = {fmt(ratio)}, outside the trend's magnitude bound "
                               f"[{fmt(1 / max_ratio)}, {fmt(max_ratio)}]")
            rel = abs(o - p) / abs(p) if p != 0 else math.inf
            reasons.append(f"ours {fmt(o)} vs paper {fmt(p)} ({rel:.0%} apart)" if math.isfinite(rel)
                           else f"ours {fmt(o)} vs paper {fmt(p)}")
    if trend is not None and why:
        reasons.append(("ordering as the paper's: " if trend else "trend does not hold: ") + why
                       if v == "differs" and trend else
                       ("trend holds: " if trend else "trend does not hold: ") + why)
    if note:
        reasons.append(note)
    return v, "; ".join(reasons)


def pairwise_trend(paper_v, paper_ref, ours_v, ours_ref, ref_display: str, tie: float = 0.05) -> Optional[tuple]:
    """(holds, why): ours lies on the same side of a reference row as the paper's value. Where the paper's
    two values are within ``tie`` (relative) it claims no ordering; ours must then be within ``2·tie``."""
    if any(isnan(v) for v in (paper_v, paper_ref, ours_v, ours_ref)):
        return None
    rel = {1: ">", -1: "<", 0: "="}

    def close(a, b, t):
        return abs(a - b) <= t * max(abs(a), abs(b), 1e-12)

    if close(paper_v, paper_ref, tie):
        ok = close(ours_v, ours_ref, 2 * tie)
        return ok, (f"vs {ref_display}: paper {fmt(paper_v)} ≈ {fmt(paper_ref)} (within {tie:.0%}), ours "
                    f"{fmt(ours_v)} vs {fmt(ours_ref)} {'within' if ok else 'not within'} {2 * tie:.0%}")
    sp, so = int(np.sign(paper_v - paper_ref)), int(np.sign(ours_v - ours_ref))
    return sp == so, (f"vs {ref_display}: paper {fmt(paper_v)} {rel[sp]} {fmt(paper_ref)}, "
                      f"ours {fmt(ours_v)} {rel[so]} {fmt(ours_ref)}")


def join(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Outer join of our long values (``row, dataset, metric, ours`` [+ ``reason``, ``failed``, display
    columns]) with the paper's (``row, dataset, metric, paper`` [+ ``printed``, display columns])."""
    key = list(KEY)
    o = ours.copy() if ours is not None and len(ours) else pd.DataFrame(columns=key + ["ours"])
    p = paper.copy() if paper is not None and len(paper) else pd.DataFrame(columns=key + ["paper"])
    both = [c for c in o.columns if c in p.columns and c not in key]
    df = o.merge(p, on=key, how="outer", suffixes=("", "_paper"))
    for c in both:  # display columns: ours first, the paper's where we have none
        df[c] = df[c].where(df[c].notna(), df.pop(c + "_paper")) if c + "_paper" in df else df[c]
    for c in ("ours", "paper"):
        if c not in df:
            df[c] = np.nan
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def compare(ours: pd.DataFrame, paper: pd.DataFrame, judge: Callable[[pd.Series, pd.DataFrame], tuple],
            order: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """The comparison table: :func:`join`, then per cell

    * the model did not train (``failed`` holds the reason) → ``did not train``;
    * no paper value → ``ours only`` (the reason says it is not in the paper);
    * no value of ours → no verdict (``reason``: why, default "not run");
    * else ``judge(cell, table) -> (verdict, reason)`` (the table lets a rule look at other rows).
    ``order``: row keys in display order (others after).
    """
    df = join(ours, paper)
    verdicts, reasons = [], []
    failed = df["failed"] if "failed" in df else pd.Series([None] * len(df), index=df.index)
    given = df["reason"] if "reason" in df else pd.Series([None] * len(df), index=df.index)
    for i, cell in df.iterrows():
        f, g = failed.loc[i], given.loc[i]
        if isinstance(f, str) and f:
            verdicts.append("did not train")
            reasons.append(f)
        elif isnan(cell["paper"]):
            verdicts.append("ours only" if not isnan(cell["ours"]) else None)
            reasons.append("not in the paper" + (f"; {g}" if isinstance(g, str) and g else ""))
        elif isnan(cell["ours"]):
            verdicts.append(None)
            reasons.append(g if isinstance(g, str) and g else "not run")
        else:
            v, why = judge(cell, df)
            if v not in VERDICTS:
                raise ValueError(f"judge returned verdict {v!r}; expected one of {VERDICTS}")
            verdicts.append(v)
            reasons.append(why + (f"; {g}" if isinstance(g, str) and g else ""))
    df["verdict"], df["reason"] = verdicts, reasons
    df = df.drop(columns=[c for c in ("failed",) if c in df])
    if order is not None:
        rank = {r: i for i, r in enumerate(order)}
        df = df.assign(_o=df["row"].map(lambda r: rank.get(r, len(rank)))).sort_values(
            ["_o", "dataset", "metric"], kind="stable").drop(columns="_o")
    cols = [c for c in ("dataset", "group", "model", "row", "metric", "paper", "ours", "verdict", "reason") if c in df]
    return df[cols + [c for c in df.columns if c not in cols]].reset_index(drop=True)


def verdict_counts(df) -> dict:
    """Cells per verdict, and ``not run`` (paper cells without a value of ours)."""
    v = df["verdict"] if df is not None and "verdict" in getattr(df, "columns", []) else pd.Series(dtype=object)
    out = {k: int((v == k).sum()) for k in VERDICTS}
    out["not run"] = int(v.isna().sum())
    return out


def verdict_line(df) -> str:
    return " · ".join(f"{n} {k}" for k, n in verdict_counts(df).items() if n)


def monotone(values: Sequence[float], direction: str, tol: float = 0.0) -> bool:
    """Whether ``values`` move in ``direction`` (``increasing``/``decreasing``) with steps against it of at
    most ``tol`` of the series' range."""
    if direction not in ("increasing", "decreasing"):
        raise ValueError(f"direction must be 'increasing' or 'decreasing', got {direction!r}")
    vals = [float(v) for v in values if not isnan(v)]
    if len(vals) < 2:
        return False
    span = (max(vals) - min(vals)) or 1.0
    sign = 1 if direction == "increasing" else -1
    return all(sign * (b - a) >= -tol * span for a, b in zip(vals, vals[1:]))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (scipy); NaN when undefined."""
    from scipy.stats import spearmanr

    if len(x) < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)


__all__ = ["verdict", "pairwise_trend", "join", "compare", "verdict_counts", "verdict_line", "monotone", "spearman",
           "VERDICTS", "SCORED", "fmt", "isnan"]
