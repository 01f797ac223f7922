"""The status page: one row per claim of the paper (:func:`claims_table`), the theory apart (:func:`theory_line`),
and one row per comparison table of each experiment's largest-scale results (:func:`status_table`, with
:func:`verdict_figure`). Also the small rules an experiment's ``claims(res)`` uses to turn tallies into a status."""
from __future__ import annotations

import math
import re
from typing import Optional, Sequence

import pandas as pd

from vaebook.lab.compare import VERDICTS, verdict_counts

#: the status of a claim, strongest first. ``not reproduced``: our numbers contradict the claim in a way that more
#: training of the same objective would not change (the evidence gives that reason); ``not shown at this scale``:
#: our numbers do not show it, and a longer run might.
CLAIM_STATUSES = ("holds", "partly", "inconclusive", "not reproduced", "not shown at this scale", "not run")
#: theory checks by kind (a ``kind`` column of the theory results table)
THEORY_KINDS = ("confirmed", "corrected", "extension", "counterexample")
THEORY = "theory"
CLAIM_KEYS = ("claim", "section", "status", "evidence", "scale")


# -- rules for an experiment's claims(res) ---------------------------------------------------------
def tally_status(ours: int, paper: int, cells: int) -> str:
    """A claim the paper makes by a tally over ``cells`` cells (e.g. "MLE beats σx² = 1 in 12 of 16 FID
    cells"): ``holds`` when our tally reaches the paper's, ``partly`` when it reaches half of it, else ``not
    shown at this scale``; ``not run`` without cells."""
    if cells <= 0:
        return "not run"
    if ours >= paper:
        return "holds"
    return "partly" if ours >= paper / 2 else "not shown at this scale"


def noisy_tally_status(wins: int, ties: int, paper: int, cells: int) -> str:
    """:func:`tally_status` where some cells are inside the noise floor (``ties``: neither side wins beyond it):
    ``holds`` when the clear wins alone reach the paper's tally, ``inconclusive`` when only counting the ties
    as wins would reach it, else :func:`tally_status` of the clear wins."""
    if cells <= 0:
        return "not run"
    if wins >= paper:
        return "holds"
    if wins + ties >= paper:
        return "inconclusive"
    return tally_status(wins, paper, cells)


def flags_status(flags: Sequence[Optional[bool]]) -> str:
    """A claim checked on several datasets or columns: ``holds`` on all, ``partly`` on some, ``not shown at this
    scale`` on none; ``not run`` when none could be checked (None flags are ignored)."""
    f = [bool(x) for x in flags if x is not None]
    if not f:
        return "not run"
    return "holds" if all(f) else ("partly" if any(f) else "not shown at this scale")


def noisy_flags_status(flags: Sequence[Optional[str]]) -> str:
    """:func:`flags_status` with a third outcome per dataset/column: ``"yes"``, ``"no"`` or ``"tie"`` (inside the
    noise floor). ``inconclusive`` when no flag is "no" and some are ties; None flags are ignored."""
    f = [x for x in flags if x is not None]
    if not f:
        return "not run"
    if "tie" in f and "no" not in f:
        return "inconclusive" if "yes" not in f else "partly"
    return flags_status([x == "yes" for x in f if x != "tie"] + ([False] if "tie" in f else []))


def objective_contradiction(ours_loss: float, claimed_loss: float, what: str, min_margin: float = 0.0) -> tuple:
    """A claim that training *should* end at a solution (e.g. a collapsed posterior) read on the training
    objective: when our trained model's loss is below the loss of the claimed solution by more than
    ``min_margin`` (same units), the optimiser already found something better than the claimed solution, and more
    training of the same objective (which only lowers the loss) cannot bring it back: ``("not reproduced",
    why)``. Else ``(None, why)``: the objective does not decide, read the claim on its other numbers."""
    vals = (ours_loss, claimed_loss, min_margin)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals) or min_margin < 0:
        raise ValueError(f"objective_contradiction needs finite losses and a margin >= 0, got {vals}")
    margin = float(claimed_loss) - float(ours_loss)
    why = (f"our loss {ours_loss:.4g} is {abs(margin):.3g} {'below' if margin > 0 else 'above'} the {what}'s "
           f"{claimed_loss:.4g}")
    if margin > min_margin:
        return "not reproduced", why + ": training that lowers this objective cannot reach the " + what
    return None, why


def pct(a, b) -> str:
    """``a/b`` as a percentage for a scale line ("8%", "0.4%", "100%")."""
    try:
        r = 100.0 * float(a) / float(b)
    except (TypeError, ValueError, ZeroDivisionError):
        return "?"
    if not math.isfinite(r):
        return "?"
    return f"{r:.0f}%" if r >= 10 else f"{r:.2g}%"


def claim(text: str, section: str, status: str, evidence: str, scale: str = "", page: str = "") -> dict:
    """One claim row (validates ``status``)."""
    if status not in CLAIM_STATUSES:
        raise ValueError(f"claim status {status!r}; expected one of {CLAIM_STATUSES}")
    out = {"claim": text, "section": section, "status": status, "evidence": evidence, "scale": scale}
    if page:
        out["page"] = page
    return out


def not_run(claims: Sequence[tuple], why: str = "no results yet") -> list:
    """``(claim, section)`` pairs as ``not run`` rows."""
    return [claim(c, s, "not run", why, "–") for c, s in claims]


# -- the page --------------------------------------------------------------------------------------
def host_page(exp) -> str:
    """The page an experiment is shown on: its ``page`` attribute when it is a *section* of another experiment's page
    (e.g. ``noise_maps`` on ``noise_variance``: no notebook of its own, no line in ``_toc.yml``), else its name."""
    return getattr(exp, "page", "") or getattr(exp, "name", "")


def _book_experiments(sections: bool = True):
    """``(name, experiment)`` in book order (``_toc.yml``): each page's experiment, then (``sections``) the
    experiments shown as sections of that page (:func:`host_page`)."""
    from vaebook.lab.page import experiments
    from vaebook.lab.run_all import notebooks

    exps = experiments()
    out = []
    for n in notebooks():
        if n in exps:
            out.append((n, exps[n]))
        if sections:
            out += [(k, e) for k, e in exps.items() if k != n and host_page(e) == n]
    return out


def datasets_run(exp, res) -> list:
    """The datasets a result was computed on: its ``datasets`` parameter, else the experiment's ``datasets``."""
    if res is None:
        return []
    p = (res.provenance or {}).get("parameters") or {}
    return list(p.get("datasets") or getattr(exp, "datasets", ()) or [])


def on_datasets(claim: str, status: str, datasets: Sequence[str]) -> str:
    """A claim's text saying where it was checked: prefixed "MNIST: " when it was checked on MNIST only and does not
    already name a dataset (a claim not run is left as the paper states it)."""
    if status == "not run" or list(datasets) != ["mnist"] or re.search(r"MNIST|CelebA", claim):
        return claim
    lower = claim[:1].lower() + claim[1:] if claim[1:2].islower() else claim  # "Our FIDs" → "our FIDs"
    return f"MNIST: {lower}"


def _smoke_note(res) -> str:
    return "smoke test, not a result" if res is not None and res.is_smoke else ""


def claims_table(results_dir) -> pd.DataFrame:
    """One row per claim of the paper, in book order (the theory apart: :func:`theory_line`): ``section``,
    ``claim``, ``status``, ``evidence``, ``scale``, ``page`` (the experiment's notebook). Claims read from smoke
    results are ``not run`` (their evidence says so): smoke numbers are not results."""
    rows = []
    for name, exp in _book_experiments():
        if name != THEORY:
            rows += experiment_claims(name, exp, exp.find(results_dir))
    return pd.DataFrame(rows, columns=["section", "claim", "status", "evidence", "scale", "page"])


def experiment_claims(name: str, exp, res) -> list:
    """The claim rows of one experiment read from its results ``res`` (None: not run), checked; a smoke result's
    claims are ``not run`` (smoke numbers are not results)."""
    rows, smoke = [], _smoke_note(res)
    for c in list(exp.claims(res) or []):
        missing = [k for k in CLAIM_KEYS if k not in c]
        if missing:
            raise ValueError(f"{name}.claims: a claim lacks {missing}: {c}")
        if c["status"] not in CLAIM_STATUSES:
            raise ValueError(f"{name}.claims: status {c['status']!r}; expected one of {CLAIM_STATUSES}")
        row = {k: c[k] for k in CLAIM_KEYS}
        row["claim"] = on_datasets(str(row["claim"]), row["status"], datasets_run(exp, res))
        if smoke and row["status"] != "not run":
            row["evidence"] = f"{smoke} (the check itself reads {row['status']}: {row['evidence']})"
            row["status"] = "not run"
        row["page"] = c.get("page") or host_page(exp) or name
        rows.append(row)
    return rows


def show_claims(exp, res) -> None:
    """On an experiment's own page: its claims with their status and evidence (the same rows as the status page)."""
    from vaebook.lab.display import show_table

    rows = pd.DataFrame(experiment_claims(exp.name, exp, res),
                        columns=["section", "claim", "status", "evidence", "scale", "page"])
    label = f" Read from {res.label}." if res is not None else " No results yet."
    show_table(claims_display(rows, {exp.name: exp.title}, page_url="{}.html"),
               "The paper's claims on this page, judged on our numbers (statuses as on the Reproduction status page)."
               + label, raw_columns=("claim", "evidence"))


#: evidence longer than this (characters) is folded: its first clause stays in view, the rest opens on a click
EVIDENCE_IN_VIEW = 260


def _folded(text: str) -> str:
    """Evidence as HTML: escaped; when long, its first clause (cut at the first '; ' or '. ' after 60
    characters, at most 200) in view and the whole text in a ``<details>`` block."""
    import html
    import re

    if len(text) <= EVIDENCE_IN_VIEW:
        return html.escape(text)
    m = re.search(r"[;.] ", text[60:200])
    head = text[:60 + m.start() + 1] if m else text[:200].rsplit(" ", 1)[0]
    return (f'<details class="vb-more"><summary>{html.escape(head)} …</summary>'
            f'<div>{html.escape(text)}</div></details>')


def claims_display(table: pd.DataFrame, titles: Optional[dict] = None, page_url: str = "../notebooks/{}.html"
                   ) -> pd.DataFrame:
    """The claims table for the page, three columns that fit it: ``claim`` (HTML: the claim, its section and a
    link to its page), ``status`` (a badge) and ``evidence`` (HTML: the evidence, then the scale in small)."""
    import html

    titles = titles or {}
    rows = []
    for r in table.itertuples():
        page = html.escape(str(r.page))
        link = f'<a href="{page_url.format(page)}">{html.escape(str(titles.get(r.page) or r.page))}</a>'
        rows.append({
            "claim": f'{html.escape(str(r.claim))}<br><span class="vb-where">§ {html.escape(str(r.section))} · '
                     f'{link}</span>',
            "status": r.status,
            "evidence": _folded(str(r.evidence)) + (
                f'<br><span class="vb-scale">scale: {html.escape(str(r.scale))}</span>'
                if str(r.scale).strip() not in ("", "–", "-") else "")})
    return pd.DataFrame(rows, columns=["claim", "status", "evidence"])


def status_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`status_table` for the page, narrow enough to fit it: one ``verdicts`` column of counts."""
    kinds = [k for k in (*VERDICTS, "not run") if k in table.columns]
    rows = []
    for r in table.to_dict("records"):
        counts = " · ".join(f"{int(r[k])} {k}" for k in kinds if int(r[k] or 0))
        rows.append({"results table": f"{r['notebook']} · {r['table']}" if r["table"] != "–" else r["notebook"],
                     "from": r["provenance"], "cells compared": r["cells"], "verdicts": counts or "–",
                     "note": r["note"] or ""})
    return pd.DataFrame(rows, columns=["results table", "from", "cells compared", "verdicts", "note"])


def claim_counts(table: pd.DataFrame) -> dict:
    """Claims per status."""
    s = table["status"] if table is not None and "status" in getattr(table, "columns", []) else pd.Series([])
    return {k: int((s == k).sum()) for k in CLAIM_STATUSES}


def theory_counts(res) -> Optional[dict]:
    """The theory checks by kind (confirmed / corrected / extension / counterexample) when its results table has
    a ``kind`` column (or a ``status`` column holding those kinds), else its verdict counts; None without results."""
    if res is None:
        return None
    tabs = [t for t in res.tables.values() if "verdict" in t.columns or "kind" in t.columns]
    for col in ("kind", "status"):
        for t in tabs:
            if col in t.columns and set(t[col].dropna()) <= set(THEORY_KINDS) and t[col].notna().any():
                return {k: int((t[col] == k).sum()) for k in THEORY_KINDS}
    counts: dict = {}
    for t in tabs:
        for k, v in verdict_counts(t).items():
            counts[k] = counts.get(k, 0) + v
    return counts


def theory_line(results_dir) -> str:
    """One line on the theory checks for the status page."""
    exps = dict(_book_experiments())
    if THEORY not in exps:
        return "no theory page in this book"
    res = exps[THEORY].find(results_dir)
    c = theory_counts(res)
    if c is None:
        return "not run yet"
    n = sum(c.values())
    parts = ", ".join(f"{v} {k}" for k, v in c.items() if v)
    smoke = " (smoke test, not a result)" if res.is_smoke else ""
    return f"{n} derivations checked numerically: {parts}{smoke}" if n else f"no checks recorded{smoke}"


def status_table(results_dir) -> pd.DataFrame:
    """Experiment, table, preset, provenance, cells compared (paper cells we did not run are counted apart, as
    ``not run``) and verdict counts, and a note (smoke = not a result), in book order (``_toc.yml``)."""
    rows = []
    for name, exp in _book_experiments(sections=False):  # a section's claims are on the claims table, its page's here
        res = exp.find(results_dir)
        if res is None:
            rows.append({"notebook": name, "table": "–", "preset": "none", "provenance": "no results yet", "cells": 0,
                         **verdict_counts(None), "note": "run the page in compute mode"})
            continue
        tabs = {k: t for k, t in res.tables.items() if k.startswith("table") and "verdict" in t.columns}
        note = "SMOKE TEST - not a result" if res.is_smoke else ("same at every preset" if res.preset_independent
                                                                 else "")
        if not tabs:
            rows.append({"notebook": name, "table": "–", "preset": res.preset, "provenance": res.label, "cells": 0,
                         **verdict_counts(None), "note": note or "no comparison table"})
        for tname, t in tabs.items():
            c = verdict_counts(t)
            rows.append({"notebook": name, "table": tname, "preset": res.preset, "provenance": res.label,
                         "cells": len(t) - c["not run"], **c, "note": note})
    return pd.DataFrame(rows)


def verdict_figure(table: pd.DataFrame):
    """A stacked horizontal bar of verdict counts per results table (``status_table`` rows), or None when no
    table has a compared cell. Colours as the verdict badges of the pages."""
    import matplotlib.pyplot as plt

    from vaebook.lab.display import VERDICT_COLOURS

    if table is None or table.empty:
        return None
    t = table[table["table"] != "–"]
    kinds = [k for k in (*VERDICTS, "not run") if k in t.columns and t[k].sum() > 0]
    if t.empty or not kinds:
        return None
    labels = [f"{r.notebook} · {r.table}" + (" (smoke)" if str(r.note).startswith("SMOKE") else "")
              for r in t.itertuples()]
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(t) + 1.1))
    left = [0] * len(t)
    for k in kinds:
        vals = [int(v) for v in t[k]]
        ax.barh(range(len(t)), vals, left=left, color=VERDICT_COLOURS.get(k, "#999999"), label=k,
                edgecolor="white", linewidth=0.5)
        for i, (l0, v) in enumerate(zip(left, vals)):
            if v >= max(3, 0.06 * max(1, sum(t.iloc[i][kk] for kk in kinds))):
                ax.text(l0 + v / 2, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if k not in ("not run", "ours only") else "black")
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(range(len(t)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("cells", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    for sp in ("top", "right"):
        ax.spines[sp].set_visible(False)
    ax.legend(fontsize=7, ncol=min(4, len(kinds)), loc="upper center",
              bbox_to_anchor=(0.5, -0.5 / max(1, len(t)) - 0.12), frameon=False)
    fig.tight_layout()
    return fig


__all__ = ["host_page", "CLAIM_STATUSES", "THEORY_KINDS", "objective_contradiction", "tally_status", "noisy_tally_status", "flags_status", "noisy_flags_status", "pct", "claim", "not_run", "datasets_run", "on_datasets", "experiment_claims", "show_claims",
           "claims_table", "claims_display", "status_display", "claim_counts", "theory_counts", "theory_line",
           "status_table", "verdict_figure"]
