"""Figures of the σx² maps (:mod:`vaebook.experiments.noise_maps`): the arrays they draw (:func:`figure_data`, stored
in the run's ``metrics.json`` as ``plotted`` so a page redraws them) and the figures (:func:`figures`).

Per pattern: a row of the noisy training images; each shape's σx² map (mean over the seeds that trained, large) with
every seed's map (small) beside it; Diag-D's σx² on one image of each digit group and its mean over each group. σx² in
viridis (colour-blind safe) on one scale per figure from 0 to the 98th percentile of the values drawn (a colour bar
labelled σx², with an arrow when brighter pixels are cut to its top); drawn at the page width
(:data:`vaebook.lab.display.PAGE_IN`, 8 in) with text of at least 11 pt (the book's reading sizes), so that shrunk to
the page's 690-px column (``book/_ext/vaebook_sphinx.py``) it stays at least 10 pt."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from vaebook.data.noisy import NOISE_PATTERNS
from vaebook.lab.display import PAGE_IN, reading_style

CMAP = "viridis"
SHAPE_LABELS = {"diag-i": "Diag-I", "diag-d": "Diag-D"}
GROUP_WORDS = {"S": "digits 0–4", "B": "digits 5–9"}
#: a digit group's noise in two words (under an example image)
SHORT = {"clean": "clean", "all noisy": "noisy", "upper half noisy": "noisy top", "lower half noisy": "noisy bottom"}
#: the colour scale's top: this percentile of the values drawn (brighter pixels read as its top, the bar says so)
TOP_PERCENTILE = 98.0
#: most seed maps in one column beside the mean map
SEEDS_PER_COLUMN = 4


def noise_words(pattern: str, group: str) -> str:
    """Where a digit group's images received noise under ``pattern``: "clean", "all noisy", "upper half noisy"…"""
    parts = {p[1] for p in NOISE_PATTERNS.get(pattern, ()) if p[0] == group}
    return {frozenset(): "clean", frozenset("UL"): "all noisy", frozenset("U"): "upper half noisy",
            frozenset("L"): "lower half noisy"}[frozenset(parts)]


def _mean(grids: list):
    return np.mean(np.asarray(grids, dtype=float), axis=0).round(5).tolist() if grids else None


def figure_data(records: dict, images: dict) -> dict:
    """Per pattern, what its figures draw (JSON-able): ``examples`` (images, labels, index, noise), ``maps`` per shape
    (``mean`` over the seeds that trained, or over every seed when none did, and each seed's map), ``classes`` (Diag-D:
    per digit group the first image, its σx² at the first seed used, and the group's mean σx² over those seeds)."""
    recs = list(records.values())
    out = {}
    order = {k: i for i, k in enumerate((*NOISE_PATTERNS, *SHAPE_LABELS))}
    for pattern in sorted(dict.fromkeys(r["pattern"] for r in recs), key=lambda k: order.get(k, len(order))):
        d = {"noise": {g: noise_words(pattern, g) for g in GROUP_WORDS}, "maps": {},
             "s_x2": next((r.get("s_x2") for r in recs if r["pattern"] == pattern), None)}
        im = images.get(pattern)
        if im:
            d["examples"] = {**im, "noise": [noise_words(pattern, "S" if y <= 4 else "B") for y in im["labels"]]}
        shapes = dict.fromkeys(r["shape"] for r in recs if r["pattern"] == pattern)
        for shape in sorted(shapes, key=lambda k: order.get(k, len(order))):
            mine = sorted((r for r in recs if r["pattern"] == pattern and r["shape"] == shape and r.get("map")),
                          key=lambda r: r["seed"])
            used = [r for r in mine if r.get("fate") == "trained"] or mine
            if not used:
                continue
            d["maps"][shape] = {"mean": _mean([r["map"] for r in used]), "seeds": {str(r["seed"]): r["map"] for r in mine},
                                "used": [r["seed"] for r in used], "fates": {str(r["seed"]): r.get("fate") for r in mine},
                                "none_trained": not any(r.get("fate") == "trained" for r in mine)}
            if shape == "diag-d" and used[0].get("example_maps"):
                first = used[0]
                cls = {}
                for g in GROUP_WORDS:
                    if g not in first["example_maps"]:
                        continue
                    idx = first["example_index"][g]
                    img = None
                    if im and idx in im["index"]:
                        j = im["index"].index(idx)
                        img, label = im["images"][j], im["labels"][j]
                    else:
                        label = None
                    cls[g] = {"index": idx, "image": img, "label": label, "map": first["example_maps"][g],
                              "map_seed": first["seed"], "mean": _mean([r["map_by_class"][g] for r in used
                                                                        if g in (r.get("map_by_class") or {})])}
                d["classes"] = cls
        out[pattern] = d
    return out


def _vmax(arrays: list) -> tuple:
    """(top of the colour scale, whether values lie above it): the :data:`TOP_PERCENTILE` th percentile of every value
    drawn, so that a few outlying pixels do not wash out the contrast of s_x²."""
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays if a is not None] or [np.ones(1)])
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return 1.0, False
    v = float(np.percentile(vals, TOP_PERCENTILE))
    v = v if v > 0 else (float(vals.max()) if vals.max() > 0 else 1.0)
    return v, bool(vals.max() > v)


def _clean_axes(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def _halfline(ax, pattern: str, h: int):
    """A dashed line between the image halves where the noise is spatial."""
    if any(p[1] == "U" for p in NOISE_PATTERNS.get(pattern, ())) != any(p[1] == "L" for p in NOISE_PATTERNS.get(
            pattern, ())):
        ax.axhline(h / 2 - 0.5, color="white", linestyle="--", linewidth=1.2)


def fig_examples(pattern: str, d: dict):
    ex = d["examples"]
    k = len(ex["images"])
    with reading_style():
        fig, axes = plt.subplots(1, k, figsize=(PAGE_IN, 2.3), squeeze=False)
        for ax, img, y, nz in zip(axes[0], ex["images"], ex["labels"], ex["noise"]):
            ax.imshow(np.clip(np.asarray(img, dtype=float), 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"digit {y}\n{SHORT.get(nz, nz)}", fontsize=11)
            _clean_axes(ax)
        fig.suptitle(f"Training images with {pattern} noise (s_x² = {d.get('s_x2'):g}), as the models saw them",
                     y=1.02)
    return fig


def _axes(fig, x: float, top: float, w: float, h: float):
    """Axes at ``x`` inches from the left and ``top`` inches from the top, ``w`` × ``h`` inches."""
    W, H = fig.get_size_inches()
    return fig.add_axes([x / W, 1 - (top + h) / H, w / W, h / H])


def fig_maps(pattern: str, d: dict):
    """Per shape: the mean σx² map (large) and each seed's (small, in columns of :data:`SEEDS_PER_COLUMN`)."""
    shapes = sorted(d["maps"], key=lambda k: list(SHAPE_LABELS).index(k) if k in SHAPE_LABELS else len(SHAPE_LABELS))
    n = max(len(d["maps"][s]["seeds"]) for s in shapes)
    rows = min(n, SEEDS_PER_COLUMN)
    cols = math.ceil(n / rows)
    bad = any(f not in (None, "trained") for s in shapes for f in (d["maps"][s].get("fates") or {}).values())
    label_h, gap, left, right = (0.42 if bad else 0.24), 0.4, 0.1, 1.15
    block = (PAGE_IN - left - right - gap * (len(shapes) - 1)) / len(shapes)
    # big + 0.12 + cols·small + (cols − 1)·0.08 = block, small = (big − rows·label_h) / rows
    big = (block - 0.12 - (cols - 1) * 0.08 + cols * label_h) / (1 + cols / rows)
    small = (big - rows * label_h) / rows
    pitch = small + 0.08  # between columns of seed maps: at least a label's width ("seed 12" at 11 pt)
    if cols > 1 and pitch < 0.62:
        pitch = 0.62
        big = (block - 0.12 - (cols - 1) * pitch + label_h) / (1 + 1 / rows)
        small = (big - rows * label_h) / rows
    top = 0.95
    vmax, over = _vmax([d["maps"][s]["mean"] for s in shapes] + [m for s in shapes for m in d["maps"][s]["seeds"].values()])
    with reading_style():
        fig = plt.figure(figsize=(PAGE_IN, top + big + 0.15))
        im = None
        for k, shape in enumerate(shapes):
            m, x0 = d["maps"][shape], left + k * (block + gap)
            k_used = len(m["used"])
            what = ("large: mean of all (none trained)" if m.get("none_trained")
                    else f"large: mean of {k_used} seed{'s' if k_used != 1 else ''} · small: each")
            fig.text((x0 + block / 2) / PAGE_IN, 1 - (top - 0.05) / fig.get_figheight(),
                     f"{SHAPE_LABELS.get(shape, shape)} σx²\n{what}", ha="center", va="bottom", fontsize=11)
            ax = _axes(fig, x0, top, big, big)
            arr = np.asarray(m["mean"], dtype=float)
            im = ax.imshow(arr, cmap=CMAP, vmin=0, vmax=vmax)
            _halfline(ax, pattern, arr.shape[0])
            _clean_axes(ax)
            for j, (seed, grid) in enumerate(sorted(m["seeds"].items(), key=lambda kv: int(kv[0]))):
                r, c = j % rows, j // rows
                a = _axes(fig, x0 + big + 0.12 + c * pitch, top + r * (small + label_h) + label_h, small,
                          small)
                a.imshow(np.asarray(grid, dtype=float), cmap=CMAP, vmin=0, vmax=vmax)
                _halfline(a, pattern, len(grid))
                fate = (m.get("fates") or {}).get(seed)
                a.set_title(f"seed {seed}" + ("" if fate in (None, "trained") else f"\n{fate}"), fontsize=11, pad=2)
                _clean_axes(a)
        cb = fig.colorbar(im, cax=_axes(fig, PAGE_IN - right + 0.2, top, 0.18, big), extend="max" if over else "neither")
        cb.set_label("σx² (per pixel)")
        noisy = "; ".join(f"{w}: {d['noise'][g]}" for g, w in GROUP_WORDS.items() if g in d["noise"])
        fig.suptitle(f"σx² per pixel, {pattern} noise ({noisy})", y=1 - 0.08 / fig.get_figheight(), va="top")
    return fig


def fig_diag_d(pattern: str, d: dict):
    """Per digit group: its first training image, Diag-D's σx² of it, and Diag-D's σx² averaged over the group."""
    cls = d["classes"]
    groups = [g for g in GROUP_WORDS if g in cls]
    vmax, over = _vmax([cls[g]["map"] for g in groups] + [cls[g]["mean"] for g in groups])
    seed = cls[groups[0]]["map_seed"]
    left, right, gap, top, vgap = 0.95, 1.15, 0.15, 0.95, 0.2
    p = (PAGE_IN - left - right - 2 * gap) / 3
    with reading_style():
        fig = plt.figure(figsize=(PAGE_IN, top + len(groups) * p + (len(groups) - 1) * vgap + 0.1))
        im = None
        for i, g in enumerate(groups):
            c, y = cls[g], top + i * (p + vgap)
            axs = [_axes(fig, left + j * (p + gap), y, p, p) for j in range(3)]
            if c.get("image") is not None:
                axs[0].imshow(np.clip(np.asarray(c["image"], dtype=float), 0, 1), cmap="gray", vmin=0, vmax=1)
            axs[0].set_ylabel(f"{GROUP_WORDS[g]}\n({d['noise'][g]})")
            axs[1].imshow(np.asarray(c["map"], dtype=float), cmap=CMAP, vmin=0, vmax=vmax)
            im = axs[2].imshow(np.asarray(c["mean"], dtype=float), cmap=CMAP, vmin=0, vmax=vmax)
            for a in axs:
                _clean_axes(a)
            for a in axs[1:]:
                _halfline(a, pattern, len(c["map"]))
            if i == 0:
                for a, t in zip(axs, ("training image", f"its σx² (seed {seed})", "σx², group mean")):
                    a.set_title(t)
        cb = fig.colorbar(im, cax=_axes(fig, PAGE_IN - right + 0.2, top, 0.18, len(groups) * p + vgap),
                          extend="max" if over else "neither")
        cb.set_label("σx² (per pixel)")
        fig.suptitle(f"Diag-D's σx² by digit group, {pattern} noise", y=1 - 0.08 / fig.get_figheight(), va="top")
    return fig


def figures(pattern: str, d: dict) -> dict:
    """``{stem: figure}`` of one pattern (the ones its data allow)."""
    out = {}
    if d.get("examples") and d["examples"].get("images"):
        out[f"fig_examples_{pattern}"] = fig_examples(pattern, d)
    if d.get("maps"):
        out[f"fig_maps_{pattern}"] = fig_maps(pattern, d)
    if d.get("classes"):
        out[f"fig_diag_d_{pattern}"] = fig_diag_d(pattern, d)
    return out
