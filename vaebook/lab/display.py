"""Showing results in a notebook: tables, figures, glued numbers, the provenance banner."""
from __future__ import annotations

import html
import math
import re
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vaebook.metrics.tsne import maps_from_frame, tsne_grid


def pct(a, b) -> str:
    """``a`` as a percentage of ``b`` for prose: two significant digits below 10 %, whole numbers above
    (``0.64 %``, ``6.8 %``, ``100 %``; never ``1e+02 %``)."""
    v = 100.0 * float(a) / float(b)
    return f"{v:.0f} %" if abs(v) >= 10 else f"{v:.2g} %"


_SCI = re.compile(r"^(-?)(\d(?:\.\d+)?)e([+-])(\d+)$")
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def human_number(text: str) -> str:
    """A formatted number as people write it: ``1.138e+04`` → ``11,380`` (the rounding kept), ``3.97e-05`` →
    ``3.97×10⁻⁵``; anything else as it is."""
    m = _SCI.match(text)
    if not m:
        return text
    sign, mant, esign, exp = m.groups()
    if esign == "+" and int(exp) <= 15:
        decimals = max(0, len(mant.replace(".", "")) - int(exp) - 1)  # keep the significant digits shown
        return f"{sign}{float(mant) * 10 ** int(exp):,.{decimals}f}"
    power = (("-" if esign == "-" else "") + str(int(exp))).translate(_SUPERSCRIPT)
    return f"{sign}{mant}×10{power}"


def fmt(v, spec: str = ".3g", missing: str = "n/a") -> str:
    """A number for prose; ``missing`` for None/NaN; never in e-notation (:func:`human_number`) or ``-0``."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return missing if v is None else str(v)
    if math.isnan(f):
        return missing
    if spec and spec[-1] in "bcdoxXn":
        return format(int(round(f)), spec)
    out = format(f, spec)
    if out.startswith("-") and float(out.replace(",", "")) == 0:
        return out[1:]  # never "-0"
    return human_number(out)


def glue_all(values: dict) -> None:
    """``myst_nb.glue`` every ``key -> str`` without displaying it (``{glue:text}`key``` in prose)."""
    from myst_nb import glue

    for k, v in values.items():
        glue(k, str(v), display=False)


#: colours of the verdicts and claim statuses (the badges of ``book/_static/vaebook.css`` and the status page's bars)
VERDICT_COLOURS = {
    "match": "#1a7f37", "trend holds": "#4c9a2a", "holds": "#1a7f37", "confirmed": "#1a7f37",
    "partly": "#bf8700", "at ceiling": "#bf8700", "corrected": "#bf8700", "extension": "#0969da",
    "differs": "#cf222e", "not reproduced": "#cf222e", "not shown at this scale": "#57606a",
    "inconclusive": "#9a6700", "counterexample": "#8250df", "unreachable": "#8c959f",
    "ours only": "#0969da", "did not train": "#6e7781", "not evaluable": "#6e7781", "not run": "#d0d7de",
}
#: columns shown as coloured badges
BADGE_COLUMNS = ("verdict", "status", "kind")
#: text longer than this goes into a collapsible block
LONG_TEXT = 80
#: characters of folded text shown before it is opened (in a cell; in the full-width line under a row)
FOLD_SUMMARY = 48
DETAIL_SUMMARY = 110
_MINUS_ZERO = re.compile(r"^-0(\.0*)?(e[+-]?0+)?$")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|&~$:])")


def md_escape(text) -> str:
    """``text`` (e.g. a string read from results) as literal Markdown text: every character Markdown, MyST or HTML
    could read as markup (``<``, ``&``, backticks, brackets, ``{``, ``$`` …) is backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def md_code(text) -> str:
    """``text`` as a Markdown code span that it cannot close early (the fence is longer than any run of
    backticks inside; HTML in a code span is shown, not rendered)."""
    s = str(text).replace("\n", " ")
    n = max((len(m) for m in re.findall(r"`+", s)), default=0) + 1
    pad = " " if s.startswith("`") or s.endswith("`") or n > 1 else ""
    return f"{'`' * n}{pad}{s}{pad}{'`' * n}"


def slug(v) -> str:
    """A CSS-class-safe name of a verdict or status ("trend holds" -> "trend-holds")."""
    return re.sub(r"[^a-z0-9]+", "-", str(v).lower()).strip("-") or "none"


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (v is pd.NA) or (
        isinstance(v, (np.floating,)) and np.isnan(v))


def _is_number(v) -> bool:
    return (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            and not _missing(v))


def cell_text(v, precision: int = 3) -> str:
    """A table cell as text: numbers to ``precision`` significant digits, never ``-0``, "–" when missing."""
    if _missing(v):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return fmt(v, f".{precision}g", "–")
    s = str(v)
    return s[1:] if _MINUS_ZERO.match(s) else s


def _breakable(text: str) -> str:
    """Escaped text that may break after ``_`` and ``+`` (long identifiers such as isoI_SU+SL+BU+BL)."""
    return html.escape(text).replace("_", "_<wbr>").replace("+", "+<wbr>")


def cell_html(col: str, v, precision: int = 3, raw: bool = False, fold: bool = True) -> str:
    """One cell's content: a badge in a verdict/status column, long text in a ``<details>`` block (unless not
    ``fold``), identifiers breakable at ``_`` and ``+``."""
    if raw and not _missing(v):
        return str(v)
    s = cell_text(v, precision)
    if col == "verdict" and s == "–":
        s = "not run"  # a paper cell without a value of ours
    if col in BADGE_COLUMNS and s != "–":
        return f'<span class="vb-badge vb-{slug(s)}">{html.escape(s)}</span>'
    if fold and len(s) > LONG_TEXT:
        cut = s[:FOLD_SUMMARY].rsplit(" ", 1)[0].rstrip(" ,;:(") or s[:FOLD_SUMMARY]
        return (f'<details class="vb-more"><summary>{html.escape(cut)} …</summary>'
                f'<div>{html.escape(s)}</div></details>')
    return _breakable(s)


def table_html(df, precision: int = 3, raw_columns: Sequence[str] = (), css_class: str = "vaebook-table",
               full_text: Sequence[str] = (), max_columns: int = 11) -> str:
    """``df`` as an HTML table that fits the page (see ``book/_static/vaebook.css``).

    Short columns form the table's row; columns of long text (a verdict's ``reason``, notes) go into a second,
    full-width line under it, folded in a ``<details>`` block unless named in ``full_text``, so the table stays
    narrow and the verdict column in view. Verdict/status columns are coloured badges; numbers have
    ``precision`` significant digits and never read ``-0``; headers and identifiers break at ``_``.
    ``raw_columns`` hold HTML shown as it is (never moved). A table of more than ``max_columns`` short columns
    and no verdict (our numbers laid out like the paper's) is cut into blocks of columns, one under the other,
    each led by its first column, so no column is scrolled out of view."""
    cols = [str(c) for c in df.columns]
    d = df.copy()
    d.columns = cols
    long_cols = [c for c in cols if c not in (*BADGE_COLUMNS, *raw_columns)
                 and d[c].map(lambda v: len(cell_text(v, precision)) > LONG_TEXT).any()]
    main = [c for c in cols if c not in long_cols]
    if len(main) > max_columns and not (set(main) & set(BADGE_COLUMNS)) and not long_cols:
        # a wide table of numbers: blocks of columns, each led by the first (key) column, one under the other
        k = max_columns - 1
        blocks = [d[[main[0], *main[1 + i:1 + i + k]]] for i in range(0, len(main) - 1, k)]
        inner = "".join(table_html(b, precision, raw_columns, css_class, full_text, max_columns)
                        .removeprefix('<div class="vaebook-table-wrap">').removesuffix("</div>") for b in blocks)
        return f'<div class="vaebook-table-wrap">{inner}</div>'
    head = "".join(f'<th class="vb-col-{slug(c)}">{_breakable(c)}</th>' for c in main)
    body = []
    for _, r in d.iterrows():
        tds = "".join(f'<td class="vb-col-{slug(c)}{" vb-num" if _is_number(r[c]) else ""}">'
                      f'{cell_html(c, r[c], precision, c in raw_columns)}</td>' for c in main)
        rows = f"<tr>{tds}</tr>"
        extra = []
        for c in long_cols:
            text = cell_text(r[c], precision)
            if text == "–":
                continue
            label = f'<span class="vb-label">{html.escape(c)}:</span> '
            if c in full_text or len(text) <= LONG_TEXT:
                extra.append(f'<div class="vb-line">{label}{html.escape(text)}</div>')
            else:
                cut = text[:DETAIL_SUMMARY].rsplit(" ", 1)[0].rstrip(" ,;:(") or text[:DETAIL_SUMMARY]
                extra.append(f'<details class="vb-more"><summary>{label}{html.escape(cut)} …</summary>'
                             f'<div>{html.escape(text)}</div></details>')
        if extra:
            rows += f'<tr class="vb-detail"><td colspan="{len(main)}">{"".join(extra)}</td></tr>'
        body.append(f'<tbody class="vb-rec">{rows}</tbody>')
    return (f'<div class="vaebook-table-wrap"><table class="{css_class}"><thead><tr>{head}</tr></thead>'
            f'{"".join(body)}</table></div>')


def show_table(df, caption: str = "", precision: int = 3, max_rows: Optional[int] = None,
               raw_columns: Sequence[str] = (), full_text: Sequence[str] = ()):
    """``df`` as an HTML table under ``caption`` (put the provenance label in it); see :func:`table_html`.
    ``raw_columns``: columns holding HTML (e.g. links) shown as they are; ``full_text``: long-text columns shown
    whole rather than folded."""
    from IPython.display import HTML, display

    if df is None or len(df) == 0:
        return
    d = df if max_rows is None else df.head(max_rows)
    cap = f'<p class="vaebook-caption"><em>{html.escape(str(caption))}</em></p>' if caption else ""
    display(HTML(cap + table_html(d, precision, raw_columns, full_text=full_text)))


#: text sizes of a figure drawn ``PAGE_IN`` inches wide: at the page's width (≈ 690 px at a 1280-px window) a point is
#: then ≈ 1.2 px, so tick labels (11 pt) are ≈ 13 px, the body's small print (0.8 rem)
READING_RC = {"font.size": 12, "axes.titlesize": 12, "axes.labelsize": 12, "xtick.labelsize": 11,
              "ytick.labelsize": 11, "legend.fontsize": 11, "figure.titlesize": 13, "savefig.dpi": 200}
#: the width (inches) a figure for the page is drawn at: its text then keeps the sizes above on the page
PAGE_IN = 8.0


def reading_style():
    """``with reading_style(): fig = ...``: a figure's text at :data:`READING_RC` sizes."""
    return plt.rc_context(READING_RC)


def show_figure(res, stem: str, caption: str = "") -> bool:
    """A results figure with its caption; False when the run has no such figure. The book shows it at the page's
    width as a link to the full-size PNG, with the caption as its alt text (``book/_ext/vaebook_sphinx.py``), so
    give every figure a caption."""
    from IPython.display import Image, Markdown, display

    if res is None or stem not in res.figures:
        return False
    display(Image(filename=str(res.figures[stem])))
    if caption:
        display(Markdown(f"*{caption}* ({md_escape(res.label)})"))
    return True


def show_tsne(res, stem: str, caption: str = "", ncols: int = 2, panel_in: float = 3.6) -> bool:
    """A t-SNE figure drawn on the page from the points the run stored (``<stem>_points.csv``, see
    :func:`vaebook.metrics.tsne.tsne_frame`), else the run's PNG (:func:`show_figure`); False when neither."""
    from IPython.display import Markdown, display

    if res is None:
        return False
    pts = res.tables.get(f"{stem}_points")
    if pts is None or pts.empty:
        return show_figure(res, stem, f"{caption} Prior draws in pink, as the paper draws them (this run stored no "
                                      "t-SNE points to re-draw its map in colour-blind-safe colours)." if caption else "")
    with reading_style():
        tsne_grid(maps_from_frame(pts), ncols=ncols, panel_in=panel_in)
        plt.show()
    if caption:
        display(Markdown(f"*{caption} Prior draws: black crosses.* ({md_escape(res.label)})"))
    return True


SMOKE_WARNING = ("**SMOKE TEST — not a result.** These numbers come from the `smoke` preset (a few optimisation "
                 "steps on a few hundred images) that only checks the code runs end to end. They say nothing about "
                 "the paper's claims.")


def banner(res, name: str = "", rerun: str = "") -> str:
    """Markdown: where the shown numbers come from (loud for smoke; one notice when there are none)."""
    if res is None:
        return (f"**No results yet** for {md_code(name)}: nothing under `results/` at any preset. "
                + (rerun or "Run this page in compute mode (see *How to re-run*)."))
    head = f"Results: {md_code(res.label)}"  # the label's strings come from provenance.json
    if res.preset_independent:
        head += " (these computations are identical at every preset)"
    return f"{SMOKE_WARNING}\n\n{head}" if res.is_smoke else head


def display_cells(df: pd.DataFrame, dataset: Optional[str] = None, labels: Optional[dict] = None) -> pd.DataFrame:
    """A comparison table for reading: one dataset, numbers rounded, no verdict blank."""
    if df is None or df.empty:
        return pd.DataFrame()
    d = df if dataset is None or "dataset" not in df else df[df["dataset"] == dataset]
    d = d.drop(columns=[c for c in ("row", "name", "group", "dataset", "printed") if c in d]).copy()
    if "metric" in d and labels:
        d["metric"] = d["metric"].map(lambda m: labels.get(m, m))
    for c in ("paper", "ours"):
        if c in d:
            d[c] = d[c].map(lambda v: fmt(v, ".4g", ""))
    d["verdict"] = d["verdict"].fillna("not run")
    return d.reset_index(drop=True)


def side_by_side(df: pd.DataFrame, dataset: str, labels: Optional[dict] = None, label_col: str = "model") -> pd.DataFrame:
    """Laid out like the paper: a row per model, a column per metric, cells ``ours (paper)``."""
    if df is None or df.empty or "dataset" not in df:
        return pd.DataFrame()
    d = df[df["dataset"] == dataset]
    if d.empty:
        return pd.DataFrame()

    def cell(r):
        o, p = fmt(r["ours"], ".4g", "–"), fmt(r["paper"], ".4g", "–")
        return f"{o} ({p})"

    d = d.assign(cell=d.apply(cell, axis=1))
    order = list(dict.fromkeys(d[label_col]))
    cols = list(dict.fromkeys(d["metric"]))
    wide = d.pivot_table(index=label_col, columns="metric", values="cell", aggfunc="first").reindex(
        index=order, columns=cols)
    wide = wide.fillna("").reset_index().rename(columns=labels or {})
    wide.columns.name = None
    return wide


def image_grid(images, nrow: int = 8, padding: int = 1) -> np.ndarray:
    """``H×W×C`` array of a torchvision ``make_grid`` of images in [0, 1]."""
    import vaebook  # noqa: F401  (torchvision shim)
    from torchvision.utils import make_grid

    g = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=padding, pad_value=1.0)
    return g.permute(1, 2, 0).numpy()


def grid_figure(blocks: list, columns: Sequence[str] = (), title: str = "", cell: float = 0.42,
                groups_per_row: int = 2):
    """One strip of images per ``(row label, images K×C×H×W or None)``, ``cell`` inches an image. With ``columns``
    (group names) each strip is cut into that many equal groups, each under its own heading, ``groups_per_row``
    groups side by side and the rest in bands below (so the images stay large at the page's width). Text at
    :data:`READING_RC` sizes; open the saved PNG for full size."""
    n = max(1, len(blocks))
    k = max((b.shape[0] for _, b in blocks if b is not None), default=8)
    g = len(columns) if columns and k % len(columns) == 0 else 1
    per, cols = k // g, min(g, max(1, groups_per_row))
    bands = -(-g // cols)
    with reading_style():
        fig, axes = plt.subplots(n * bands, cols, figsize=(cell * per * cols + 0.15 * (cols - 1) + 2.4,
                                                           0.5 * bands + cell * 1.2 * n * bands),
                                 squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.4})
        for ax in axes.flat:
            ax.axis("off")
        for c in range(g):
            band, col = divmod(c, cols)
            for r, (label, imgs) in enumerate(blocks):
                ax = axes[band * n + r, col]
                ax.axis("on")
                ax.set_xticks([])
                ax.set_yticks([])
                for sp in ax.spines.values():
                    sp.set_visible(False)
                if col == 0:
                    ax.set_ylabel(label, rotation=0, ha="right", va="center")
                if r == 0 and g > 1:
                    ax.set_title(columns[c])
                if imgs is None:
                    ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes)
                    continue
                part = imgs[c * per:(c + 1) * per]
                grid = image_grid(part, nrow=part.shape[0])
                ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid,
                          cmap="gray" if grid.shape[-1] == 1 else None, vmin=0, vmax=1)
        if columns and g == 1:
            axes[0, 0].set_title("   |   ".join(columns))
        if title:
            fig.suptitle(title, y=1.0 + 0.4 / fig.get_figheight())
    return fig


__all__ = ["md_escape", "md_code", "fmt", "human_number", "pct", "glue_all", "show_table", "table_html", "cell_text", "cell_html", "slug", "VERDICT_COLOURS",
           "BADGE_COLUMNS", "show_figure", "show_tsne", "banner", "SMOKE_WARNING", "display_cells",
           "side_by_side", "image_grid", "grid_figure", "READING_RC", "PAGE_IN", "reading_style"]
