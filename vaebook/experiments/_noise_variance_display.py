"""Table 3 for reading: our estimates in the paper's layout, each cell as mean ± s.d. over its seeds, and the two
figures of the page (ours against the paper's values, ours against the reference the injected noise implies).
Not an experiment (no ``EXPERIMENT``); the cells come from :mod:`vaebook.experiments._noise_variance_cells`."""
from __future__ import annotations

from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from vaebook.data import noisy_pattern_partitions
from vaebook.experiments._noise_variance_cells import (ALTERNATIVE_COLUMNS, COLUMN_ORDER, COLUMNS, PATTERNS,
                                                      REFERENCE_BAND, SEED_COLUMNS)
from vaebook.lab.display import PAGE_IN, fmt, reading_style
from vaebook.paper import CLEAN_MNIST_VARIANCE


def wide_table(long: pd.DataFrame) -> pd.DataFrame:
    """Our estimates in the paper's layout (one row per pattern × s_x², one column per model/partition); a
    column with several seeds is followed by ``<column> s.d.`` (over the seeds that trained)."""
    long = long[long["ours"].notna()] if len(long) else long
    if long.empty:
        return pd.DataFrame(columns=["noise_pattern", "s_x2"])
    w = long.pivot_table(index=["noise_pattern", "s_x2"], columns="metric", values="ours", aggfunc="first")
    cols = [c for c in COLUMN_ORDER if c in w.columns]
    if "ours_sd" in long and long["ours_sd"].notna().any():
        sd = long.pivot_table(index=["noise_pattern", "s_x2"], columns="metric", values="ours_sd", aggfunc="first")
        for c in sd.columns:
            w[f"{c} s.d."] = sd[c]
        cols = [x for c in cols for x in (c, f"{c} s.d.") if x in w.columns]
    w = w[cols].reset_index()
    w.columns.name = None
    w["noise_pattern"] = pd.Categorical(w["noise_pattern"], PATTERNS, ordered=True)
    return w.sort_values(["noise_pattern", "s_x2"]).reset_index(drop=True)


def cell_text(r) -> str:
    """One cell for reading: ``mean ± s.d.`` over seeds (``k of n seeds trained`` when some did not), the
    value alone for one seed, ``… (did not train)`` when none did."""
    from vaebook.lab.compare import isnan

    t = fmt(r["ours"], ".3g", "")
    n, k, sd = r.get("n_seeds"), r.get("n_trained"), r.get("ours_sd")
    if t and not isnan(sd):
        t += f" ± {fmt(sd, '.2g')}"
    if not isnan(n) and 0 < k < n:
        t += f" ({int(k)} of {int(n)} seeds trained)"
    return t + (" (did not train)" if t and r.get("verdict") == "did not train" else "")


def wide_display(long: Optional[pd.DataFrame]) -> pd.DataFrame:
    """:func:`wide_table` for reading: cells of :func:`cell_text` (mean ± s.d. where a cell has several seeds)."""
    if long is None or long.empty or not long["ours"].notna().any():
        return pd.DataFrame()
    d = long[long["ours"].notna()]
    d = d.assign(cell=[cell_text(r) for _, r in d.iterrows()])
    w = d.pivot_table(index=["noise_pattern", "s_x2"], columns="metric", values="cell", aggfunc="first")
    w = w[[c for c in COLUMN_ORDER if c in w.columns]].fillna("").reset_index()
    w.columns.name = None
    w["noise_pattern"] = pd.Categorical(w["noise_pattern"], PATTERNS, ordered=True)
    return w.sort_values(["noise_pattern", "s_x2"]).reset_index(drop=True)


#: the Σx shapes' names as the paper prints them
SHAPE_NAMES = {"iso-i": "Iso-I", "diag-i": "Diag-I", "iso-d": "Iso-D", "diag-d": "Diag-D"}
#: Table 3's columns in words: the Σx shape, then the partitions its estimate averages (S/B: small/big digit
#: classes, U/L: upper/lower half of the image)
COLUMN_LABELS = {c: f"{SHAPE_NAMES[shape]} {'+'.join(parts)}" for shape, cols in COLUMNS.items() for c, parts in cols}
#: the compact grids of Table 3: the shapes with one or two columns together, Diag-D's four partitions apart
GRID_GROUPS = (("Iso-I, Diag-I and Iso-D", [c for s in ("iso-i", "diag-i", "iso-d") for c, _ in COLUMNS[s]]),
               ("Diag-D", [c for c, _ in COLUMNS["diag-d"]]))


def grid_frame(long: Optional[pd.DataFrame]) -> pd.DataFrame:
    """Table 3 for :func:`vaebook.lab.verdict_grid.show_verdict_grid`: one ``setting`` per noise pattern and s_x²
    ("spatial, s_x² = 0.1") in the paper's order; ``ours`` is a several-seed cell's mean (its spread is in the cell's
    reason and in :func:`wide_display`: with it, Diag-D's four columns do not fit the page)."""
    if long is None or long.empty:
        return pd.DataFrame(columns=["setting", "metric", "paper", "ours", "verdict", "reason"])
    d = long.copy()
    d["_p"] = pd.Categorical(d["noise_pattern"], PATTERNS, ordered=True)
    d = d.sort_values(["_p", "s_x2"], kind="stable").drop(columns="_p")
    d["setting"] = [f"{p}, s_x² = {fmt(s, 'g')}" for p, s in zip(d["noise_pattern"], d["s_x2"])]
    return d.reset_index(drop=True)


def grid_groups(grid: pd.DataFrame) -> list:
    """``[(heading, columns)]`` of :data:`GRID_GROUPS` that ``grid`` has values for."""
    have = set(grid.loc[grid["ours"].notna(), "metric"]) if len(grid) else set()
    return [(h, [c for c in cols if c in have]) for h, cols in GRID_GROUPS if any(c in have for c in cols)]


def display_table3(long: Optional[pd.DataFrame]) -> pd.DataFrame:
    """The long Table 3 for reading (:func:`vaebook.lab.display.display_cells`), ``ours`` as :func:`cell_text`; the
    per-seed columns and the claim-4 alternatives left out (each cell's reason gives its seeds' range)."""
    from vaebook.lab.display import display_cells

    d = display_cells(long)
    if d.empty:
        return d
    if "n_seeds" in long:
        d["ours"] = [cell_text(r) for _, r in long.reset_index(drop=True).iterrows()]
    return d.drop(columns=[c for c in (*SEED_COLUMNS, *ALTERNATIVE_COLUMNS) if c in d])


def _error_bars(ax, x, grp, **kw) -> None:
    """Min–max over the trained seeds of the cells of ``grp`` that have several (always positive on log axes)."""
    if "ours_min" not in grp:
        return
    g = grp[grp["n_seeds"] > 1]
    if len(g):
        ax.errorbar(x[g.index], g["ours"], yerr=[g["ours"] - g["ours_min"], g["ours_max"] - g["ours"]], fmt="none",
                    lw=0.8, capsize=2, **kw)


#: the Σx shapes in words (panel titles)
SHAPE_WORDS = {"Iso-I": "Iso-I: one σ² for all images and pixels", "Diag-I": "Diag-I: one σ² per pixel",
               "Iso-D": "Iso-D: one σ² per image", "Diag-D": "Diag-D: one σ² per image and pixel"}
#: axis text: estimated variances are of pixel values in [0, 1]
VAR_UNIT = "(pixel values in [0, 1])"


def figure_estimates(long: pd.DataFrame):
    """Ours vs the paper per cell (models that did not train left out), with the identity line and the
    s_x² + 0.007 references; a cell with several seeds is their mean, its bar their min–max. Drawn at the page's
    width with text at reading sizes."""
    long = long[long["ours"].notna() & long["paper"].notna() & (long["verdict"] != "did not train")]
    palette = sns.color_palette("colorblind", 4)
    with reading_style():
        fig, ax = plt.subplots(figsize=(PAGE_IN * 0.75, PAGE_IN * 0.62))
        markers = {"Iso-I": "o", "Diag-I": "s", "Iso-D": "^", "Diag-D": "D"}
        for i, (m, grp) in enumerate(long.groupby("model", sort=False)):
            ax.scatter(grp["paper"], grp["ours"], marker=markers.get(m, "o"), label=m, alpha=0.85, color=palette[i % 4])
            _error_bars(ax, grp["paper"], grp, ecolor=palette[i % 4])
        vals = pd.concat([long["paper"], long["ours"]]).replace([np.inf, -np.inf], np.nan).dropna()
        vals = vals[vals > 0]
        if len(vals):
            lo, hi = float(vals.min()) / 1.5, float(vals.max()) * 1.5
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.9, label="ours = paper")
            ax.set_xscale("log"), ax.set_yscale("log")
        for s2 in sorted(long["s_x2"].unique()):
            ax.axhline(s2 + CLEAN_MNIST_VARIANCE, color="gray", lw=0.7, ls=":")
        ax.axhline(CLEAN_MNIST_VARIANCE, color="gray", lw=0.7, ls=":", label="0.007 and s_x² + 0.007")
        ax.set_xlabel(f"paper's estimated σ² (Table 3) {VAR_UNIT}")
        ax.set_ylabel("our estimated σ²")
        if len(long):
            ax.legend(loc="upper left")
        ax.set_title("Estimated decoder variances, ours against the paper's")
        fig.tight_layout()
    return fig


def figure_vs_reference(table: pd.DataFrame):
    """Each estimate against the variance the injected noise implies (our clean estimate + s_x² × noisy share),
    one panel per Σx shape, two a row at the page's width; filled = a partition set that is all noisy, open = all
    clean, grey = mixed or did not train; a cell with several seeds is their mean, its bar their min–max."""
    t = table.dropna(subset=["ours", "reference_ours"])
    models = list(dict.fromkeys(t["model"]))
    cols = min(2, max(1, len(models)))
    rows = max(1, -(-len(models) // cols))
    lo = float(np.nanmin(t[["ours", "reference_ours"]].to_numpy())) if len(t) else 1e-3
    hi = float(np.nanmax(t[["ours", "reference_ours"]].to_numpy())) if len(t) else 1.0
    with reading_style():
        fig, axes = plt.subplots(rows, cols, figsize=(PAGE_IN, 3.5 * rows + 0.5), squeeze=False)
        for ax, m in zip(axes.flat, models):
            s = t[t["model"] == m]
            for _, r in s.iterrows():
                parts = set(str(r["metric"]).split("_", 1)[1].split("+"))
                noisy = set(noisy_pattern_partitions(r["noise_pattern"]))
                kind = "noisy" if parts <= noisy else ("clean" if not parts & noisy else "mixed")
                dnt = r["verdict"] == "did not train"
                c = "0.6" if dnt or kind == "mixed" else "#d55e00"
                ax.scatter(r["reference_ours"], r["ours"], s=30, c=c if kind != "clean" or dnt else "none",
                           edgecolors=c, linewidths=1.2, zorder=3)
            _error_bars(ax, s["reference_ours"], s[s["verdict"] != "did not train"], ecolor="0.4", zorder=2)
            xs = np.array([lo * 0.8, hi * 1.25])
            ax.plot(xs, xs, "k-", lw=0.9)
            ax.fill_between(xs, xs / REFERENCE_BAND, xs * REFERENCE_BAND, color="0.9", lw=0)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(SHAPE_WORDS.get(m, m))
            ax.set_xlabel("variance the injected noise implies")
            ax.set_ylabel("our estimated σ²")
        for ax in list(axes.flat)[len(models):]:
            ax.axis("off")
        keys = [Line2D([], [], ls="", marker="o", color="#d55e00", label="all-noisy partitions"),
                Line2D([], [], ls="", marker="o", mfc="none", color="#d55e00", label="all-clean partitions"),
                Line2D([], [], ls="", marker="o", color="0.6", label="mixed, or did not train"),
                Patch(color="0.9", label=f"within ×/÷ {REFERENCE_BAND:g} of the reference")]
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / (3.5 * rows + 0.5)))
        fig.legend(handles=keys, loc="upper center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 1.0))
    return fig
