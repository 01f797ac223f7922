"""Training loss curves with the plateau rule drawn on them: one small panel per model, the loss against the
training step, the three windows that :func:`vaebook.train.plateau` compares shaded (the first, the second-to-last
and the last ``window`` share of the logged points) with the mean loss over each, and the rule's verdict
(:func:`vaebook.train.curve.plateau_cell`, e.g. "flat (1.2 %)") written on the panel.

    fig = curve_figure({"σx² = 1": [[50, 310.2], [100, 260.4], …]}, {"σx² = 1": record["plateau"]})
    show_curves(res, groups)   # on a page: one figure per group, or one sentence when the run has no curves

The curves come from the results (:func:`vaebook.lab.curves.curve_points`, stored in each model's record); a page
module turns its records into ``groups`` (a heading, then ``(panel title, record)`` pairs).
"""
from __future__ import annotations

import math
import textwrap
from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from vaebook.lab.display import PAGE_IN, reading_style
from vaebook.train.curve import loss_curve, plateau, plateau_cell

#: the windows the rule compares, in order, with their colours (Okabe–Ito: told apart by colour-blind readers)
WINDOWS = (("first", "#999999"), ("previous", "#E69F00"), ("last", "#0072B2"))
#: the loss's unit on the y axis (every model the pages record a curve for logs a negative ELBO per image)
LOSS_LABEL = "loss (nats per image)"
STEP_LABEL = "training step"
#: the sentence a page shows when its results hold no curve
NO_CURVES = ("The run shown predates loss-curve logging in the results, so there are no training curves to draw; "
             "the next run of this page records them and draws them here.")
#: ... and when its models logged too few points to draw (a smoke run: a few steps, fewer than one per log window)
TOO_SHORT = ("This run's models logged fewer than two loss points each (too few steps for the trainer's logging "
             "interval), so there is no training curve to draw.")


def _points(name: str, curve) -> list:
    """``[(step, loss)]`` of one curve: ``[[step, loss], …]`` pairs (as results store them), a
    :class:`~vaebook.train.History`, its epoch records or ``{"step", "loss"}`` points (:func:`loss_curve`)."""
    where = f"curves[{name!r}]"
    if curve is None:
        raise ValueError(f"{where}: no curve (None)")
    items = list(getattr(curve, "epochs", curve))
    if items and isinstance(items[0], (list, tuple)):
        if any(len(pt) != 2 for pt in items):
            raise ValueError(f"{where}: every point must be a [step, loss] pair")
        pts = [(int(s), math.nan if v is None else float(v)) for s, v in items]
    else:
        try:
            pts = loss_curve(items) or []
        except (KeyError, TypeError) as e:
            raise ValueError(f"{where}: not a loss curve ({type(e).__name__}: {e})") from None
    if len(pts) < 2:
        raise ValueError(f"{where}: {len(pts)} point(s); a loss curve needs at least 2 to draw")
    steps = [s for s, _ in pts]
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"{where}: steps must increase from point to point")
    return pts


def windows(points: Sequence, p: Optional[dict]) -> dict:
    """``{"first" | "previous" | "last": (first step, last step)}`` of the windows the plateau rule compared on
    ``points`` (``window_points`` points each, from its dict ``p``); ``{}`` when it judged nothing (too short, no
    curve). A ValueError when ``p`` judged a different number of points."""
    if not p or p.get("verdict") not in ("flat", "not flat"):
        return {}
    if p.get("window_points") is None:
        raise ValueError(f"plateau: a {p['verdict']!r} verdict without its window_points")
    n, m = len(points), int(p["window_points"])
    if int(p.get("points", n)) != n:
        raise ValueError(f"plateau: judged {p['points']} points, the curve has {n}")
    if not 1 <= m <= n // 2:
        raise ValueError(f"plateau: window_points {m} does not fit a curve of {n} points")
    spans = {"first": (0, m), "previous": (n - 2 * m, n - m), "last": (n - m, n)}
    return {k: (points[a][0], points[b - 1][0]) for k, (a, b) in spans.items()}


def _panel(ax, title: str, pts: list, p: dict, wrap: int = 28) -> None:
    steps, loss = [s for s, _ in pts], [v for _, v in pts]
    spans = windows(pts, p)
    means = {"first": p.get("L_first"), "previous": p.get("L_prev"), "last": p.get("L_last")}
    colours = dict(WINDOWS)
    for k, (a, b) in spans.items():
        ax.axvspan(a, b, color=colours[k], alpha=0.25, lw=0, gid=f"window-{k}")
        if means[k] is not None:
            ax.hlines(means[k], a, b, colors=colours[k], lw=2.5, gid=f"mean-{k}")
    ax.plot(steps, loss, color="black", lw=1.3)
    rest = loss[1:]
    if len(rest) >= 2 and loss[0] > max(rest) + 3 * (max(rest) - min(rest)):  # a first loss that would flatten the rest
        r = max(rest) - min(rest) or abs(max(rest)) or 1.0
        ax.set_ylim(min(rest) - 0.05 * r, max(rest) + 0.15 * r)
        ax.annotate(f"first point {loss[0]:.3g} (off scale)", (0.5, 0.03), xycoords="axes fraction", ha="center",
                    va="bottom", fontsize="small", gid="off-scale")
    ax.set_title("\n".join(textwrap.wrap(title, wrap, break_on_hyphens=False)) or " ")
    ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.text(0.97, 0.95, plateau_cell(p), transform=ax.transAxes, ha="right", va="top",
            gid="verdict", bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "0.6"})


def curve_figure(curves: Mapping[str, object], plateaus: Optional[Mapping[str, Optional[dict]]] = None,
                 ncols: int = 3, title: str = "", panel_height: float = 2.4):
    """One panel per model: ``curves`` maps a panel title (words) to its curve (see :func:`_points`), ``plateaus``
    the same titles to the :func:`~vaebook.train.plateau` dict recorded with it (a title left out, or None, is judged
    here on the curve drawn). Each panel shades the windows the rule compared, draws their mean losses and writes the
    verdict; ``ncols`` panels a row at the page's width (:data:`~vaebook.lab.display.PAGE_IN`), text at reading
    sizes. Returns the matplotlib Figure. A ValueError names the argument at fault."""
    if not isinstance(curves, Mapping):
        raise ValueError(f"curves must map panel titles to loss curves, got {type(curves).__name__}")
    if not curves:
        raise ValueError("curves is empty: no loss curve to draw")
    plateaus = {} if plateaus is None else plateaus
    if not isinstance(plateaus, Mapping):
        raise ValueError(f"plateaus must map panel titles to plateau dicts, got {type(plateaus).__name__}")
    extra = [k for k in plateaus if k not in curves]
    if extra:
        raise ValueError(f"plateaus: {extra!r} not in curves (each plateau belongs to a drawn curve)")
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    pts = {name: _points(name, c) for name, c in curves.items()}
    judged = {}
    for name, ps in pts.items():
        p = plateaus.get(name) or plateau([{"step": s, "loss": v} for s, v in ps])
        try:
            windows(ps, p)
        except ValueError as e:
            raise ValueError(f"plateaus[{name!r}] and curves[{name!r}] do not match: {e}") from None
        judged[name] = p
    cols = min(ncols, len(pts))
    rows = -(-len(pts) // cols)
    width = PAGE_IN * cols / ncols  # fewer panels than a row holds keep a panel's width
    head = 0.45 * (4 // min(cols, 3)) + 0.35 * bool(title)
    with reading_style():
        fig, axes = plt.subplots(rows, cols, figsize=(width, panel_height * rows + head), squeeze=False,
                                 layout="constrained")
        for i, (ax, name) in enumerate(zip(axes.flat, pts)):
            _panel(ax, name, pts[name], judged[name], wrap=max(16, int(PAGE_IN / ncols * 10.5)))
            if i % cols == 0:
                ax.set_ylabel(LOSS_LABEL)
            if i >= len(pts) - cols:
                ax.set_xlabel(STEP_LABEL)
        for ax in list(axes.flat)[len(pts):]:
            ax.axis("off")
        share = next((p.get("window") for p in judged.values() if p.get("window")), None)
        pct = f"{100 * share:g} %" if share else "share"
        handles = [Patch(color=c, alpha=0.35, label=lab) for lab, (_, c) in
                   zip((f"first {pct} of logged points", f"second-to-last {pct}", f"last {pct}"), WINDOWS)]
        handles.append(Line2D([], [], color="0.3", lw=2.5, label="window mean (first: median)"))
        fig.legend(handles=handles, loc="outside lower center", ncol=4 if cols >= 3 else cols, frameon=False)
        if title:
            fig.suptitle("\n".join(textwrap.wrap(title, int(width * 9.5))), fontweight="bold")
    return fig


def panels(items: Sequence) -> tuple:
    """``(curves, plateaus)`` for :func:`curve_figure` from ``(title, record)`` pairs, keeping the records that carry
    a curve of at least two points (``"curve"``, with its ``"plateau"`` when recorded)."""
    curves, plats = {}, {}
    for title, rec in items:
        if rec and len(rec.get("curve") or ()) >= 2:
            curves[title] = rec["curve"]
            if rec.get("plateau"):
                plats[title] = rec["plateau"]
    return curves, plats


def show_curves(res, groups: Sequence, caption: str = "", ncols: int = 3) -> bool:
    """On a page: per ``(heading, [(panel title, record), …])`` of ``groups`` whose records carry a curve, the
    :func:`curve_figure` under ``heading`` with its caption (the figure's alt text); when no record of the results
    ``res`` carries one, the sentence :data:`NO_CURVES` instead (no figure). Nothing without results. True when a
    figure was drawn."""
    from IPython.display import Markdown, display

    from vaebook.lab.display import md_escape

    if res is None:
        return False
    drawn, recorded = False, False
    for heading, items in groups:
        recorded = recorded or any(rec and "curve" in rec for _, rec in items)
        curves, plats = panels(items)
        if not curves:
            continue
        curve_figure(curves, plats, ncols=ncols, title=heading)
        plt.show()
        left = len(items) - len(curves)
        display(Markdown(f"*Training loss curves, {md_escape(heading)}: loss against step, one panel per model, with the "
                         "windows the plateau rule compares shaded and its verdict (the last window's share of the "
                         "run's loss improvement)."
                         + (f" {left} of its {len(items)} models have no curve to draw (not trained, or trained "
                            "before curves were recorded)." if left else "")
                         + (f" {caption}" if caption else "") + f"* ({md_escape(res.label)})"))
        drawn = True
    if not drawn:
        display(Markdown(TOO_SHORT if recorded else NO_CURVES))
    return drawn


__all__ = ["curve_figure", "windows", "panels", "show_curves", "WINDOWS", "LOSS_LABEL", "STEP_LABEL", "NO_CURVES",
           "TOO_SHORT"]
