"""The σx²-maps section of the Table-3 page (:mod:`vaebook.experiments.noise_maps`): its glued strings
(:func:`summary`), its opening (:func:`open_section`: where the numbers come from, or how to run it) and its figures
redrawn from the arrays the run stored (:func:`show_maps`). Not an experiment (no ``EXPERIMENT``)."""
from __future__ import annotations

import math

from vaebook.experiments import _noise_maps_claims as nc
from vaebook.experiments import _noise_maps_figures as nf
from vaebook.lab.display import fmt, md_escape
from vaebook.lab.results import fmt_duration
from vaebook.train.curve import plateau_line

NAME = "noise_maps"
RUN = f"python -m vaebook.lab run {NAME} --preset cpu --device cpu"
NO_RESULTS = (f"No `{NAME}` results in this page's results folder yet: `{RUN}` trains its 12 models (about 15–35 min "
              "on 2 CPU cores) and draws these maps.")
KEYS = ("nm_label", "nm_s2", "nm_n_estimate", "nm_seeds", "nm_findings", "nm_training", "nm_claims")


def _preset_default(key: str):
    from vaebook.experiments.noise_maps import PRESETS

    return PRESETS["cpu"][key]


def summary(res) -> dict:
    """The section's glued strings; without results, the settings of the ``cpu`` preset and "no results yet"."""
    out = {"nm_label": "no results yet", "nm_s2": fmt(_preset_default("noise_s2"), "g"),
           "nm_n_estimate": fmt(_preset_default("n_estimate"), ",d"), "nm_seeds": str(_preset_default("seeds")),
           "nm_findings": f"No results of {NAME} yet (the line under this section's heading says how to compute them)",
           "nm_training": "no results yet", "nm_claims": "not run"}
    if res is None:
        return out
    st = (res.metrics or {}).get("settings") or {}
    recs = nc.records(res)
    out["nm_label"] = res.label
    if st.get("noise_s2"):
        out["nm_s2"] = fmt(st["noise_s2"], "g")
    n_est = sorted({r["n_estimate"] for r in recs if r.get("n_estimate")})
    out["nm_n_estimate"] = " or ".join(fmt(v, ",d") for v in n_est) or "n/a"
    out["nm_seeds"] = str(len(st["seeds"])) if st.get("seeds") else "n/a"
    if not recs:
        return {**out, "nm_findings": "The run holds no records", "nm_training": "no records"}
    out["nm_findings"] = findings(recs)
    out["nm_training"] = training(recs, (st.get("train") or {}).get("max_steps"))
    out["nm_claims"] = claims_line(res)
    return out


def claims_line(res) -> str:
    """The claims' statuses as the claims table shows them (a smoke run's: not run)."""
    from vaebook.experiments.noise_maps import EXPERIMENT
    from vaebook.lab.status import experiment_claims

    rows = experiment_claims(NAME, EXPERIMENT, res)
    return " · ".join(f"{nf.SHAPE_LABELS[shape]} on {pattern} noise: {r['status']}"
                      for r, (pattern, shape, _) in zip(rows, nc.RULES))


def findings(recs: list) -> str:
    """One sentence per claim's rule, then Diag-I under conditional noise (which it cannot place)."""
    parts = []
    for (pattern, shape, contrast) in nc.RULES:
        t = nc.judge(recs, pattern, shape, contrast)
        if not t["n_units"]:
            continue
        noisy, clean = nc.REGIONS[contrast]
        who = f"{nf.SHAPE_LABELS[shape]}, {pattern} noise"
        if not t["seeds"]:
            parts.append(f"{who}: no seed trained, so its map says nothing")
            continue
        mean = lambda k: sum(s[k] for s in t["seeds"]) / len(t["seeds"])  # noqa: E731
        s2 = t["s_x2"]
        mult = (f" = {nc.interval(t['excess_t'], '.2f', s2)} × s_x²" if math.isfinite(s2) and s2 > 0 else "")
        parts.append(f"{who}: σx² averages {fmt(mean('noisy'))} on the {noisy} and {fmt(mean('clean'))} on the {clean} "
                     f"(mean of {len(t['seeds'])} seed{'s' if len(t['seeds']) != 1 else ''}); ratio "
                     f"{nc.interval(t['ratio_t'])}, difference {nc.interval(t['excess_t'])}{mult} "
                     f"(95 % interval over seeds; {t['status']})")
    t = nc.judge(recs, "conditional", "diag-i", "halves")
    if t["seeds"]:
        level = sum(s["noisy"] + s["clean"] for s in t["seeds"]) / (2 * len(t["seeds"]))
        parts.append(f"Diag-I, conditional noise (one variance per pixel for all images, so it cannot single out the "
                     f"noisy digits): its map is about level, {fmt(level)} on average, upper / lower halves "
                     f"{nc.interval(t['ratio_t'])}")
    return ". ".join(parts) if parts else "No pattern of the claims was run"


def training(recs: list, max_steps=None) -> str:
    """Models, steps, fates, loss-curve plateaus and training time."""
    steps = sorted({int(r["curve"][-1][0]) for r in recs if r.get("curve")}) or ([int(max_steps)] if max_steps else [])
    fates: dict = {}
    for r in recs:
        fates[r.get("fate", "?")] = fates.get(r.get("fate", "?"), 0) + 1
    times = [r["train_s"] for r in recs if isinstance(r.get("train_s"), (int, float))]
    reused = sum(1 for r in recs if r.get("from_cache"))
    return (f"{len(recs)} models, trained for {' or '.join(fmt(s, ',d') for s in steps) or 'n/a'} steps each; "
            + ", ".join(f"{v} {k}" for k, v in fates.items())
            + f"; loss curves: {plateau_line([r.get('plateau') for r in recs])}; training time "
            + (f"{fmt_duration(sum(times))} in all ({fmt(min(times), '.0f')}–{fmt(max(times), '.0f')} s per model"
               f"{f', {reused} reused from the model cache' if reused else ''})" if times else "not recorded"))


def open_section(results_dir="results"):
    """``(experiment, results or None)`` of the section: shows where its numbers come from and their scale (or how to
    run it) and glues :func:`summary`. It reads results only (the page's compute mode does not train these models)."""
    from IPython.display import Markdown, display

    from vaebook.lab.display import banner, glue_all
    from vaebook.lab.glance import page_scale_line
    from vaebook.lab.page import get_experiment

    exp = get_experiment(NAME)
    res = exp.find(results_dir)
    display(Markdown(NO_RESULTS if res is None else banner(res, NAME) + "\n\n" + page_scale_line(exp, res)))
    glue_all(exp.summary(res))
    return exp, res


CAPTIONS = {
    "examples": "The first training images of each digit group, with the noise the models were trained on (shown "
                "clipped to [0, 1]; the noise itself is not clipped).",
    "maps": "Each shape's σx² per pixel, the MLE after training: the mean squared residual over the training images "
            "(Diag-D: its per-image σx² averaged over them). Large: the mean over the seeds whose model trained; small: "
            "each seed. One colour scale per figure, from 0 to the 98th percentile of the values drawn (brighter pixels, if "
            "any, take its top colour: the arrow on the bar); dashed line: the boundary of spatial noise.",
    "diag_d": "Diag-D's σx² is one value per pixel of every image: for the first training image of each digit group "
              "(at the first seed that trained), and averaged over every image of the group and over the seeds.",
}


def show_maps(res) -> bool:
    """The section's figures, drawn from the arrays the run stored (``plotted`` in ``metrics.json``); False without."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    plotted = ((res.metrics or {}).get("plotted") or {}) if res is not None else {}
    st = ((res.metrics or {}).get("settings") or {}) if res is not None else {}
    order = list(st.get("patterns") or []) + sorted(plotted)
    for pattern in [p for p in dict.fromkeys(order) if p in plotted]:  # the run's order (metrics.json sorts keys)
        d = plotted[pattern]
        noise = "; ".join(f"{w}: {d['noise'][g]}" for g, w in nf.GROUP_WORDS.items() if g in (d.get("noise") or {}))
        display(Markdown(f"**{pattern.capitalize()} noise** ({noise}; s_x² = {d.get('s_x2')}):"))
        for stem, fig in nf.figures(pattern, d).items():
            display(fig)
            plt.close(fig)
            key = stem.removeprefix("fig_").removesuffix(f"_{pattern}")
            display(Markdown(f"*{CAPTIONS.get(key, '')} {pattern.capitalize()} noise.* ({md_escape(res.label)})"))
    return bool(plotted)
