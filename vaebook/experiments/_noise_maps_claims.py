"""What the σx² maps say (:mod:`vaebook.experiments.noise_maps`), read from its per-unit records at load.

**Regions.** Spatial noise (SU+BU) is in the upper half (rows 0–13) of every image; conditional noise (SU+SL) is in
every pixel of the digits 0–4 (:mod:`vaebook.data.noisy`). A model seed's *noisy* and *clean* σx² are the means of
its map over the noisy and the clean region:

* ``halves``: the map averaged over all images (Diag-I's σx²; Diag-D's averaged over images), upper half against
  lower half;
* ``classes``: Diag-D's σx² averaged over the images of the digits 0–4 against the images of 5–9, each over every
  pixel.

**Rule** (one per claim, :data:`RULES`). Only seeds whose model trained are evidence (``fate`` ``trained``: its
reconstructions depend on the input). Per seed the ratio noisy / clean; over the seeds the mean with a 95 % t
interval (:func:`vaebook.metrics.seeds.combine_seeds`; the maps average over thousands of images, so the evaluation
error is taken as 0 and the interval is the seeds' spread): ``holds`` when the interval lies above 1, ``not
reproduced`` when it lies below 1 (the noise adds s_x² to the squared residual wherever it was injected, unless the
decoder reproduces the noise, so a noisy region read *below* the clean one contradicts the claim), else
``inconclusive``; one seed gives no interval (``inconclusive``); no seed trained: ``not shown at this scale``.

**Magnitude** (the paper: "the differences of estimated variances between the noisy partitions and clean partitions
are close to s_x²"): the excess noisy − clean per seed, its mean and t interval over seeds, and that interval as a
multiple of s_x², are stated in the evidence; they do not change the status.
"""
from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from vaebook.lab.display import fmt, pct
from vaebook.lab.status import claim, not_run
from vaebook.metrics.seeds import combine_seeds

SECTION = "5.3 (σx² maps)"
PAGE = "noise_variance"
#: the paper's MNIST training length (App. I.1: 100 epochs of batch 64 on 60,000 images)
PAPER_STEPS = 100 * math.ceil(60_000 / 64)
CLAIMS = (
    "Noisy MNIST, spatial noise: Diag-I's σx² map is larger in the noisy upper halves than in the clean lower halves",
    "Noisy MNIST, conditional noise: Diag-D's σx² is larger on the noisy images (digits 0–4) than on the clean ones "
    "(5–9)",
    "Noisy MNIST, spatial noise: Diag-D's σx² map is larger in the noisy upper halves than in the clean lower halves",
)
#: per claim: (pattern, shape, contrast)
RULES = (("spatial", "diag-i", "halves"), ("conditional", "diag-d", "classes"), ("spatial", "diag-d", "halves"))
#: what the noisy / clean regions of a contrast are, in words
REGIONS = {"halves": ("upper halves", "lower halves"), "classes": ("digits 0–4", "digits 5–9")}


def _mean(grid) -> float:
    vals = [v for row in grid for v in row if v is not None]
    return sum(vals) / len(vals) if vals else math.nan


def regions(rec: dict, contrast: str) -> tuple:
    """(noisy, clean) mean σx² of one record: ``halves`` on its map (rows 0–H/2−1 against the rest), ``classes`` on
    its per-class maps (``S`` against ``B``); NaN when the record lacks the map."""
    if contrast == "halves":
        m = rec.get("map")
        if not m:
            return math.nan, math.nan
        h = len(m) // 2
        return _mean(m[:h]), _mean(m[h:])
    if contrast == "classes":
        c = rec.get("map_by_class") or {}
        return (_mean(c["S"]) if c.get("S") else math.nan), (_mean(c["B"]) if c.get("B") else math.nan)
    raise ValueError(f"contrast {contrast!r}; expected one of {tuple(REGIONS)}")


def records(res) -> list:
    return list((((res.metrics or {}).get("records") or {}) if res is not None else {}).values())


def judge(recs: list, pattern: str, shape: str, contrast: str) -> dict:
    """The rule's numbers for (pattern, shape): per evidence seed ``noisy``, ``clean``, ``ratio``, ``excess``; the
    seed-combined ``ratio_t`` and ``excess_t`` (None with no seed); the status and the seeds left out (and why)."""
    mine = sorted((r for r in recs if r.get("pattern") == pattern and r.get("shape") == shape),
                  key=lambda r: r.get("seed", 0))
    seeds, out_seeds = [], []
    for r in mine:
        a, b = regions(r, contrast)
        if r.get("fate") != "trained" or not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
            out_seeds.append((r.get("seed"), r.get("fate") if r.get("fate") != "trained" else "no map"))
            continue
        seeds.append({"seed": r.get("seed"), "noisy": a, "clean": b, "ratio": a / b, "excess": a - b})
    out = {"pattern": pattern, "shape": shape, "contrast": contrast, "seeds": seeds, "left_out": out_seeds,
           "n_units": len(mine), "ratio_t": None, "excess_t": None,
           "s_x2": next((float(r["s_x2"]) for r in mine if r.get("s_x2")), math.nan)}
    if seeds:
        out["ratio_t"] = combine_seeds([s["ratio"] for s in seeds], [0.0] * len(seeds))
        out["excess_t"] = combine_seeds([s["excess"] for s in seeds], [0.0] * len(seeds))
    out["status"] = status(out)
    return out


def status(t: dict) -> str:
    """The rule (module docstring) on :func:`judge`'s numbers."""
    if not t["n_units"]:
        return "not run"
    if not t["seeds"]:
        return "not shown at this scale"
    if len(t["seeds"]) < 2:
        return "inconclusive"
    ci = t["ratio_t"]
    return "holds" if ci["lo"] > 1 else ("not reproduced" if ci["hi"] < 1 else "inconclusive")


def interval(ci: Optional[dict], digits: str = ".3g", scale: float = 1.0) -> str:
    if ci is None:
        return "n/a"
    v = [ci[k] / scale for k in ("diff", "lo", "hi")]
    return f"{fmt(v[0], digits)} [{fmt(v[1], digits)}, {fmt(v[2], digits)}]"


def evidence(t: dict) -> str:
    noisy, clean = REGIONS[t["contrast"]]
    left = "; ".join(f"seed {s}: {why}" for s, why in t["left_out"])
    if not t["seeds"]:
        return f"no seed trained ({left})" if left else "no records"
    n, s2 = len(t["seeds"]), t["s_x2"]
    per = ", ".join(f"{fmt(s['noisy'])} / {fmt(s['clean'])}" for s in t["seeds"])
    ex = t["excess_t"]
    near = ""
    if math.isfinite(s2) and s2 > 0:
        lo, hi = ex["lo"] / s2, ex["hi"] / s2
        where = ("covers s_x²" if lo <= 1 <= hi else
                 f"lies {'above' if lo > 1 else 'below'} s_x², within {fmt(100 * max(abs(lo - 1), abs(hi - 1)), '.2g')} "
                 "% of it")
        near = (f"; excess {noisy} − {clean} {interval(ex, '.3g')} = {interval(ex, '.3g', s2)} × s_x² "
                f"(s_x² = {fmt(s2, 'g')}): the interval {where}")
    spread = "one seed: no interval over seeds" if n == 1 else f"{n} seeds, 95 % t interval"
    return (f"σx² {noisy} / {clean}, per seed: {per}; ratio {interval(t['ratio_t'])} ({spread}){near}"
            + (f"; left out: {left}" if left else ""))


def scale(res) -> str:
    st = ((res.metrics or {}).get("settings") or {}) if res is not None else {}
    steps = int((st.get("train") or {}).get("max_steps") or 0)
    n = st.get("n_train")
    if not steps:
        return "–"
    return (f"{steps:,} of {PAPER_STEPS:,} steps ({pct(steps, PAPER_STEPS)}) of batch 64 per model on "
            f"{'all 60,000' if n is None else fmt(n, ',d')} noisy MNIST training images, "
            f"{len(st.get('seeds') or [])} seed{'' if len(st.get('seeds') or []) == 1 else 's'}")


def claims(res) -> list:
    """The three claims of the maps (module docstring), for this page and the status page."""
    if res is None:
        return not_run([(c, SECTION) for c in CLAIMS])
    recs = records(res)
    if not recs:
        return not_run([(c, SECTION) for c in CLAIMS], "the run holds no records")
    sc, out = scale(res), []
    for text, (pattern, shape, contrast) in zip(CLAIMS, RULES):
        t = judge(recs, pattern, shape, contrast)
        if t["status"] == "not run":
            out.append(claim(text, SECTION, "not run", f"{pattern} noise × {shape} was not in this run", "–",
                             page=PAGE))
        else:
            out.append(claim(text, SECTION, t["status"], evidence(t), sc, page=PAGE))
    return out


def region_table(recs) -> pd.DataFrame:
    """One row per record and contrast that applies to it (``halves`` always, ``classes`` for Diag-D): the two
    regions' mean σx², their ratio and difference."""
    recs = list(recs.values()) if isinstance(recs, dict) else list(recs)
    rows = []
    for r in recs:
        for contrast in ("halves",) + (("classes",) if r.get("map_by_class") else ()):
            a, b = regions(r, contrast)
            first, second = REGIONS[contrast]
            rows.append({"pattern": r.get("pattern"), "shape": r.get("shape"), "seed": r.get("seed"),
                         "fate": r.get("fate"), "region_1": first, "sigma2_1": a, "region_2": second, "sigma2_2": b,
                         "ratio": a / b if b else math.nan, "difference": a - b})
    return pd.DataFrame(rows, columns=["pattern", "shape", "seed", "fate", "region_1", "sigma2_1", "region_2",
                                       "sigma2_2", "ratio", "difference"])
