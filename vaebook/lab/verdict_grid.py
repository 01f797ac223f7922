"""A comparison table that shows its pattern: one row per setting (σx², a model), one column per metric, each cell
our value as a badge coloured by its verdict with the paper's value under it; the reasons folded (a cell's
reason is its tooltip, and the cell-by-cell table with every reason is one closed ``<details>`` under the grid);
the settings this run did not run in one line, not as rows.

    show_verdict_grid(table1, "log10_sigma_x2", metrics, labels, caption="…", key_label="log₁₀ σx²")
    show_folded(cell_by_cell_df, "Why each verdict: …")
"""
from __future__ import annotations

import html
from typing import Callable, Optional, Sequence

import pandas as pd

from vaebook.lab.display import cell_text, slug, table_html


def _keys(df: pd.DataFrame, key: str) -> tuple:
    """(the settings with a value of ours, the settings without) in the table's order."""
    order = list(dict.fromkeys(df[key]))
    ran = set(df.loc[df["ours"].notna() | df["verdict"].notna(), key])
    return [k for k in order if k in ran], [k for k in order if k not in ran]


def grid_html(df: pd.DataFrame, key: str, metrics: Optional[Sequence[str]] = None, labels: Optional[dict] = None,
              key_label: str = "", key_format: Callable = str, precision: int = 3) -> str:
    """The grid as HTML (see the module's doc); settings without a value of ours are left out (:func:`not_run_line`)."""
    labels = labels or {}
    metrics = list(metrics or dict.fromkeys(df["metric"]))
    ran, _ = _keys(df[df["metric"].isin(metrics)], key)
    cells = {(r[key], r["metric"]): r for _, r in df.iterrows()}
    head = "".join(f'<th class="vb-col-{slug(m)}">{html.escape(str(labels.get(m, m)))}</th>' for m in metrics)
    body = []
    for k in ran:
        tds = [f'<th class="vb-col-key">{html.escape(key_format(k))}</th>']
        for m in metrics:
            r = cells.get((k, m))
            if r is None:
                tds.append("<td>–</td>")
                continue
            ours, paper = cell_text(r["ours"], precision), cell_text(r["paper"], precision)
            verdict = r["verdict"] if isinstance(r["verdict"], str) else ("not run" if ours == "–" else "")
            why = html.escape(f"{verdict}: {r['reason']}" if isinstance(r.get("reason"), str) else verdict, quote=True)
            value = (f'<span class="vb-badge vb-{slug(verdict)}" title="{why}">{html.escape(ours)}</span>'
                     if verdict else html.escape(ours))
            under = f'<div class="vb-paper">paper {html.escape(paper)}</div>' if paper != "–" else ""
            tds.append(f'<td class="vb-num">{value}{under}</td>')
        body.append(f'<tr>{"".join(tds)}</tr>')
    return (f'<div class="vaebook-table-wrap"><table class="vaebook-table vb-grid"><thead><tr>'
            f'<th class="vb-col-key">{html.escape(key_label or key)}</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def not_run_line(df: pd.DataFrame, key: str, key_label: str = "", key_format: Callable = str) -> str:
    """One line naming the settings of the paper's table this run has no value for ("" when none)."""
    _, missing = _keys(df, key)
    if not missing:
        return ""
    cells = int(df[df[key].isin(missing)]["paper"].notna().sum())
    names = ", ".join(key_format(k) for k in missing)
    return (f"Not run here ({len(missing)} of the paper's rows, {cells} printed value{'' if cells == 1 else 's'}): "
            f"{key_label + ' ' if key_label else ''}{names}.")


def split_not_run(df: pd.DataFrame, key: str, key_label: str = "", key_format: Callable = str) -> tuple:
    """``(the rows of the settings with a value of ours, the one line naming the others)``: a table shows the first
    and says the second in words, rather than carrying rows of "not run" (see :func:`not_run_line`)."""
    if df is None or df.empty:
        return df, ""
    ran, _ = _keys(df, key)
    return df[df[key].isin(ran)].reset_index(drop=True), not_run_line(df, key, key_label, key_format)


def legend_html(df: pd.DataFrame) -> str:
    """The verdicts the grid uses, as badges with their counts."""
    counts = df["verdict"].dropna().value_counts()
    return ('<p class="vb-scale">Cell colour = verdict (hover a value for its reason): '
            + " ".join(f'<span class="vb-badge vb-{slug(v)}">{html.escape(v)}</span>&nbsp;{n}'
                       for v, n in counts.items()) + "</p>")


def show_verdict_grid(df: pd.DataFrame, key: str, metrics: Optional[Sequence[str]] = None,
                      labels: Optional[dict] = None, caption: str = "", key_label: str = "",
                      key_format: Callable = str, precision: int = 3) -> None:
    """Display the grid under ``caption``, its verdict legend and the not-run line."""
    from IPython.display import HTML, display

    if df is None or df.empty:
        return
    sub = df if metrics is None else df[df["metric"].isin(metrics)]
    cap = f'<p class="vaebook-caption"><em>{html.escape(caption)}</em></p>' if caption else ""
    line = not_run_line(sub, key, key_label, key_format)
    display(HTML(cap + legend_html(sub) + grid_html(sub, key, metrics, labels, key_label, key_format, precision)
                 + (f'<p class="vb-scale">{html.escape(line)}</p>' if line else "")))


def folded_html(df: pd.DataFrame, summary: str, precision: int = 3) -> str:
    """``df`` as a table inside a closed ``<details>`` block whose summary is ``summary``."""
    return (f'<details class="vb-more vb-folded-table"><summary>{html.escape(summary)}</summary>'
            f'{table_html(df, precision)}</details>')


def show_folded(df: pd.DataFrame, summary: str, precision: int = 3) -> None:
    """Display :func:`folded_html` (nothing for an empty table)."""
    from IPython.display import HTML, display

    if df is not None and len(df):
        display(HTML(folded_html(df, summary, precision)))


__all__ = ["grid_html", "not_run_line", "split_not_run", "legend_html", "show_verdict_grid", "folded_html", "show_folded"]
