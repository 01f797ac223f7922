"""Showing results in a notebook: tables, figures, glued numbers, the provenance banner."""
from __future__ import annotations

import html
import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd


def fmt(v, spec: str = ".3g", missing: str = "n/a") -> str:
    """A number for prose; ``missing`` for None/NaN."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return missing if v is None else str(v)
    if math.isnan(f):
        return missing
    if spec and spec[-1] in "bcdoxXn":
        return format(int(round(f)), spec)
    out = format(f, spec)
    return out[1:] if out.startswith("-") and float(out) == 0 else out  # never "-0"


def glue_all(values: dict) -> None:
    """``myst_nb.glue`` every ``key -> str`` without displaying it (``{glue:text}`key``` in prose)."""
    from myst_nb import glue

    for k, v in values.items():
        glue(k, str(v), display=False)


def show_table(df, caption: str = "", precision: int = 3, max_rows: Optional[int] = None):
    """``df`` as an HTML table under ``caption`` (put the provenance label in it)."""
    from IPython.display import HTML, display

    if df is None or len(df) == 0:
        return
    d = df if max_rows is None else df.head(max_rows)
    html_t = d.to_html(index=False, na_rep="–", float_format=lambda v: fmt(v, f".{precision}g", "–"),
                       escape=True, border=0, classes="vaebook-table")
    cap = f"<p><em>{html.escape(str(caption))}</em></p>" if caption else ""
    display(HTML(cap + html_t))


def show_figure(res, stem: str, caption: str = "") -> bool:
    """A results figure with its caption; False when the run has no such figure."""
    from IPython.display import Image, Markdown, display

    if res is None or stem not in res.figures:
        return False
    display(Image(filename=str(res.figures[stem])))
    if caption:
        display(Markdown(f"*{caption}* ({res.label})"))
    return True


SMOKE_WARNING = ("**SMOKE TEST — not a result.** These numbers come from the `smoke` preset (a few optimisation "
                 "steps on a few hundred images) that only checks the code runs end to end. They say nothing about "
                 "the paper's claims.")


def banner(res, name: str = "", rerun: str = "") -> str:
    """Markdown: where the shown numbers come from (loud for smoke; one notice when there are none)."""
    if res is None:
        return (f"**No results yet** for `{name}`: nothing under `results/` at any preset. "
                + (rerun or "Run this page in compute mode (see *How to re-run*)."))
    head = f"Results: `{res.label}`"
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
            d[c] = d[c].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}")
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
        o = "–" if pd.isna(r["ours"]) else f"{r['ours']:.4g}"
        p = "–" if pd.isna(r["paper"]) else f"{r['paper']:.4g}"
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


def grid_figure(blocks: list, columns: Sequence[str] = (), title: str = "", cell: float = 0.32):
    """One strip of images per ``(row label, images K×C×H×W or None)``."""
    import matplotlib.pyplot as plt

    n = max(1, len(blocks))
    k = max((b.shape[0] for _, b in blocks if b is not None), default=8)
    fig, axes = plt.subplots(n, 1, figsize=(max(4.0, cell * k + 2.2), 0.42 + cell * 1.25 * n), squeeze=False)
    for ax, (label, imgs) in zip(axes[:, 0], blocks):
        ax.set_xticks([])
        ax.set_yticks([])
        for sp in ax.spines.values():
            sp.set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        if imgs is None:
            ax.text(0.5, 0.5, "not available", ha="center", va="center", fontsize=7, transform=ax.transAxes)
            continue
        g = image_grid(imgs, nrow=imgs.shape[0])
        ax.imshow(g.squeeze(-1) if g.shape[-1] == 1 else g, cmap="gray" if g.shape[-1] == 1 else None)
    if columns:
        axes[0, 0].set_title("   |   ".join(columns), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ["fmt", "glue_all", "show_table", "show_figure", "banner", "SMOKE_WARNING", "display_cells",
           "side_by_side", "image_grid", "grid_figure"]
