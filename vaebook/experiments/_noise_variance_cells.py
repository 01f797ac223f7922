"""Table 3's cells (Section 5.3) and the rules that read them: which model did not train, the references a cell is
judged against, the verdict of each cell (at every model seed), and the per-model records of ``metrics.json`` from
which a committed run's table is recounted under the current rules (:func:`recount`).

Not an experiment (no ``EXPERIMENT``): :mod:`vaebook.experiments.noise_variance` trains and measures, this module
compares. Cell rules: ``match`` within ``rel_tol`` of the paper; else ``trend holds`` when our value is within a
factor :data:`REFERENCE_BAND` of the reference of the injected pattern, nearer to it than to the reference with every
partition's noise status flipped (:func:`trend`), *and* within a factor :data:`TREND_MAX_RATIO` of the paper's value
(the magnitude bound); else ``differs``. Columns whose two references are within :data:`DIRECTION_MIN_GAP` of each
other have no direction to find: ``match`` or ``differs``. A cell with several model seeds is judged on their mean,
and each seed's value is judged by the same rule (``seed_verdicts``), so that a claim can ask all seeds to agree.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from vaebook.lab.compare import compare, verdict
from vaebook.metrics.recon import RECON_VAR_MIN, constant_output_reason  # noqa: F401
from vaebook.paper import CLEAN_MNIST_VARIANCE

DATASET = "noisy-mnist"
CLEAN_DATASET = "mnist"
PATTERNS = ("uniform", "spatial", "conditional", "spatial-conditional")
MODELS = ("iso-i", "diag-i", "iso-d", "diag-d")  # Σx shapes; the registered models are mle-<shape>
PARTITIONS = ("SU", "SL", "BU", "BL")
#: Table 3's columns: shape → [(column name, partitions averaged)].
COLUMNS = {
    "iso-i": [("isoI_SU+SL+BU+BL", ("SU", "SL", "BU", "BL"))],
    "diag-i": [("diagI_SU+BU", ("SU", "BU")), ("diagI_SL+BL", ("SL", "BL"))],
    "iso-d": [("isoD_SU+SL", ("SU", "SL")), ("isoD_BU+BL", ("BU", "BL"))],
    "diag-d": [("diagD_SU", ("SU",)), ("diagD_SL", ("SL",)), ("diagD_BU", ("BU",)), ("diagD_BL", ("BL",))],
}
COLUMN_ORDER = [c for cols in COLUMNS.values() for c, _ in cols]
COLUMN_SHAPE = {c: shape for shape, cols in COLUMNS.items() for c, _ in cols}
CLEAN_UNIT = "clean_iso-i"
#: "trend holds" needs our value within this factor (either way) of the injected pattern's reference
REFERENCE_BAND = 2.0
#: a column has a direction to find only when its two references (noise as injected / flipped) differ by more
#: than this fraction of the larger
DIRECTION_MIN_GAP = 0.1
#: the magnitude bound of "trend holds" (:func:`vaebook.lab.compare.verdict`'s ``max_ratio``): a cell whose value
#: is more than this factor above the paper's (or below 1/this of it) reads "differs" even when it lies on the
#: injected side within the ×REFERENCE_BAND band. 3 = the ×2 band plus about half as much again for our model's
#: own clean residual at the cpu scale (1.6× the paper's 0.007); beyond it the cell is not the paper's number.
TREND_MAX_RATIO = 3.0
#: a model whose residual less the injected noise is at least this fraction of the best input-independent
#: output's in every partition explains at most 10 % of the clean data's variance: it did not train
CONSTANT_FRACTION = 0.9
#: which patterns each Σx shape can represent (Sec. 5.1): Diag-I sees where, Iso-D which digits, Diag-D both
REPRESENTABLE = {"iso-i": ("uniform",), "diag-i": ("uniform", "spatial"), "iso-d": ("uniform", "conditional"),
                 "diag-d": PATTERNS}
#: a cell's statistics over model seeds; table3 carries them when some cell has more than one seed
SEED_COLUMNS = ("n_seeds", "n_trained", "ours_sd", "ours_min", "ours_max", "ours_seeds", "seed_verdicts")
#: the alternatives a too-simple shape's cell is read against (claim 4): every pixel of the column noisy, or none
ALTERNATIVE_COLUMNS = ("reference_noisy_only", "reference_clean_only")


def model_name(shape: str) -> str:
    return f"mle-{shape}"


def row_key(pattern: str, s2: float) -> str:
    """Our key of a Table-3 row (noise pattern × s_x²)."""
    return f"{pattern}, s_x2={float(s2):g}"




def did_not_train(res: dict) -> Optional[str]:
    """Why a unit's model did not train (None when it did): its loss went non-finite (``failed``), its
    reconstructions do not vary across test images (``recon_var`` < :data:`RECON_VAR_MIN`), or in every
    partition its residual less the injected noise is ≥ :data:`CONSTANT_FRACTION` of the best constant
    output's (``constant_floor`` less the same noise)."""
    from vaebook.data import noisy_pattern_partitions

    if res.get("failed"):
        return res["failed"]
    rv = res.get("recon_var")
    why = constant_output_reason(rv)
    if why:
        return why
    floor, est = res.get("constant_floor"), res.get("estimates")
    if floor and est:
        noisy = noisy_pattern_partitions(res["pattern"]) if res.get("pattern") else ()
        ratio = {}
        for k in PARTITIONS:
            n = float(res["s_x2"]) if k in noisy else 0.0
            ratio[k] = (est[k] - n) / (floor[k] - n) if floor[k] - n > 0 else float("nan")
        if all(r >= CONSTANT_FRACTION for r in ratio.values()):
            return ("did not train: no better than an output that ignores the input (residual less the injected "
                    "noise / the best constant output's, per partition: "
                    + ", ".join(f"{k} {ratio[k]:.2f}" for k in PARTITIONS) + f"; all ≥ {CONSTANT_FRACTION:g})")
    return None


def column_value(est: dict, parts) -> float:
    """Pixel-weighted mean of the per-partition estimates over ``parts`` (= the MLE averaged over them)."""
    n = sum(est["counts"][k] for k in parts)
    return sum(est[k] * est["counts"][k] for k in parts) / n if n else float("nan")


def expected_value(parts, noisy_parts, s_x2: float, clean: dict, counts: dict) -> float:
    """Pixel-weighted mean over ``parts`` of clean[k] + s_x²·[k is noisy]."""
    n = sum(counts[k] for k in parts)
    return sum(counts[k] * (clean[k] + (s_x2 if k in noisy_parts else 0.0)) for k in parts) / n


def _trend(ours: float, parts, noisy_parts, s_x2: float, counts: dict,
           clean: Optional[dict] = None) -> Optional[tuple[bool, str]]:
    """Was the noise found where it was injected, at about its size? ``ours`` must be within a factor
    :data:`REFERENCE_BAND` of the reference of the actual pattern and closer to it than to the reference
    where every partition's noise status is flipped. The clean baseline is our own clean-MNIST estimate
    when available (it carries the same model error), else 0.007. None: the two references are within
    :data:`DIRECTION_MIN_GAP` of each other (e.g. Iso-I under the conditional pattern: 52 % vs 48 % noisy
    pixels), so there is no direction to find."""
    base = clean or {k: CLEAN_MNIST_VARIANCE for k in PARTITIONS}
    flipped = tuple(k for k in PARTITIONS if k not in noisy_parts)
    e_true = expected_value(parts, noisy_parts, s_x2, base, counts)
    e_flip = expected_value(parts, flipped, s_x2, base, counts)
    if math.isclose(e_true, e_flip, rel_tol=DIRECTION_MIN_GAP):
        return None  # a column mixing noisy and clean pixels (about) equally: no direction to check
    src = "our clean estimate" if clean else "0.007"
    nearer = abs(ours - e_true) < abs(ours - e_flip)
    ratio = ours / e_true if e_true > 0 else float("inf")
    in_band = 1.0 / REFERENCE_BAND <= ratio <= REFERENCE_BAND
    side = (f"closer to {e_true:.3g} (noise as injected, baseline {src}) than to {e_flip:.3g} (noise status "
            "flipped)" if nearer else f"closer to {e_flip:.3g} (noise status flipped, baseline {src}) than to "
            f"{e_true:.3g}")
    band = f"{ratio:.2f}× the injected reference ({'within' if in_band else 'outside'} ×{REFERENCE_BAND:g})"
    return nearer and in_band, f"{side}; {band}"


# -- the comparison -----------------------------------------------------------------------------------------
def paper_cells() -> pd.DataFrame:
    """Table 3 as long rows (``row`` = pattern × s_x², ``metric`` = the paper's column)."""
    from vaebook.lab.paper import long_rows

    return long_rows("table3", lambda r: row_key(r["noise_pattern"], r["s_x2"]),
                     {c: (DATASET, c) for c in COLUMN_ORDER},
                     extra=lambda r: {"noise_pattern": r["noise_pattern"], "s_x2": float(r["s_x2"])})


def seed_stats(values) -> dict:
    """One cell over model seeds: ``ours`` = the mean, ``ours_sd`` (sample s.d., ddof 1; NaN for one seed),
    ``ours_min``, ``ours_max``."""
    v = np.asarray(values, dtype=float)
    return {"ours": float(v.mean()), "ours_sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
            "ours_min": float(v.min()), "ours_max": float(v.max())}


def _seed_list(runs) -> str:
    return ", ".join(str(r.get("seed", "?")) for r in runs)


def our_cells(results: dict, clean: Optional[dict]) -> tuple[pd.DataFrame, dict]:
    """Our long rows (with the reference values; ``failed`` = :func:`did_not_train`, whose cells keep their value
    for display) and each cell's trend ``{(row, metric): [(holds, why) or None, ...]}``: the mean's first, then
    each seed's (cells with several seeds).

    Results of one (pattern, s_x², shape) at several model seeds make one cell: the :func:`seed_stats` of the
    seeds that trained (``n_trained`` of ``n_seeds``), judged on their mean, each seed's value kept in
    ``ours_seeds``; when none trained, the mean of all, read ``did not train``. The references: ``reference_0.007``
    and ``reference_ours`` (noise as injected, on the paper's or our clean baseline), and, on the baseline the
    trend uses, ``reference_noisy_only`` / ``reference_clean_only`` (every pixel of the column noisy / none)."""
    from vaebook.data import noisy_pattern_partitions
    from vaebook.models import MODEL_REGISTRY

    groups: dict = {}
    for res in results.values():
        if res["kind"] == "noisy":
            groups.setdefault((res["pattern"], float(res["s_x2"]), res["shape"]), []).append(res)
    rows, trends = [], {}
    for (pattern, s2, shape), runs in groups.items():
        noisy = noisy_pattern_partitions(pattern)
        key = row_key(pattern, s2)
        whys = [did_not_train(r) for r in runs]
        ok = [r for r, w in zip(runs, whys) if not w and "estimates" in r]
        shown = ok or [r for r in runs if "estimates" in r]
        failed = None if ok else "; ".join(dict.fromkeys(w for w in whys if w)) or "no estimate"
        if len(runs) > 1 and not ok:  # each seed's full reason is in the metrics' did_not_train
            failed = ("; ".join(dict.fromkeys(w.split(" (")[0] for w in whys if w)) or "no estimate") + (
                f" (0 of {len(runs)} seeds trained: {_seed_list(runs)})")
        for col, parts in COLUMNS[shape]:
            base = {"row": key, "dataset": DATASET, "metric": col, "noise_pattern": pattern, "s_x2": s2,
                    "model": MODEL_REGISTRY[model_name(shape)].label, "n_seeds": len(runs), "n_trained": len(ok)}
            if not shown:
                rows.append({**base, "ours": float("nan"), "failed": failed})
                continue
            counts = shown[0]["estimates"]["counts"]  # the seeds share the noisy images
            values = [column_value(r["estimates"], parts) for r in shown]
            stats = seed_stats(values)
            val = stats["ours"]
            paper_base = {k: CLEAN_MNIST_VARIANCE for k in PARTITIONS}
            ref_paper = expected_value(parts, noisy, s2, paper_base, counts)
            ref_ours = expected_value(parts, noisy, s2, clean, counts) if clean else float("nan")
            alt = {"reference_noisy_only": expected_value(parts, PARTITIONS, s2, clean or paper_base, counts),
                   "reference_clean_only": expected_value(parts, (), s2, clean or paper_base, counts)}
            note = f"reference s_x²·(noisy share) + 0.007 = {ref_paper:.3g}"
            if clean:
                note += f"; with our clean-MNIST estimate: {ref_ours:.3g}"
            if len(runs) > 1 and ok:
                note += (f"; mean of the {len(ok)} of {len(runs)} seeds that trained ({_seed_list(ok)}): "
                         f"{val:.3g} ± {stats['ours_sd']:.2g} s.d., range {stats['ours_min']:.3g}–"
                         f"{stats['ours_max']:.3g}")
                for r, w in zip(runs, whys):
                    if w:
                        note += f"; seed {r.get('seed', '?')} left out: {w.split(' (')[0]}"
            seeds = {"ours_seeds": ";".join(repr(float(v)) for v in values)} if len(runs) > 1 else {}
            rows.append({**base, **stats, **seeds, "reference_0.007": ref_paper, "reference_ours": ref_ours, **alt,
                         "reason": note, "failed": failed})
            if not failed:
                trends[(key, col)] = [_trend(v, parts, noisy, s2, counts, clean)
                                      for v in [val] + (values if len(runs) > 1 else [])]
    return pd.DataFrame(rows), trends


def seed_values(cell) -> Optional[list]:
    """The per-seed values of a cell (its ``ours_seeds``), or None for a single-seed cell or a table without them."""
    s = cell.get("ours_seeds") if hasattr(cell, "get") else None
    if not isinstance(s, str) or not s:
        return None
    return [float(x) for x in s.split(";")]


def table3(results: dict, clean: Optional[dict], rel_tol: float = 0.1, paper: Optional[pd.DataFrame] = None,
           max_ratio: Optional[float] = TREND_MAX_RATIO) -> pd.DataFrame:
    """Long Table 3 (:func:`vaebook.lab.compare.compare`): one row per (pattern, s_x², column) with paper,
    ours, the references, verdict and reason; paper cells we did not run have no verdict. ``clean``: our
    clean-MNIST estimates (with ``counts``) or None. A cell with several seeds also carries each seed's verdict
    by the same rule (``seed_verdicts``, in the order of ``ours_seeds``). ``max_ratio``: the magnitude bound of
    ``trend holds`` (None: none)."""
    ours, trends = our_cells(results, clean)
    paper = paper_cells() if paper is None else paper

    def judge_value(p, v, tr):
        return verdict(p, v, rel_tol=rel_tol, trend=tr, max_ratio=max_ratio)

    def judge(cell, _table):
        return judge_value(cell["paper"], cell["ours"], (trends.get((cell["row"], cell["metric"])) or [None])[0])

    t = compare(ours, paper, judge)
    if "ours_seeds" in t:
        sv = []
        for _, cell in t.iterrows():
            vals, tr = seed_values(cell), trends.get((cell["row"], cell["metric"]))
            ok = vals and tr and cell["verdict"] in ("match", "trend holds", "differs")
            sv.append(";".join(judge_value(cell["paper"], v, x)[0] for v, x in zip(vals, tr[1:])) if ok else None)
        t["seed_verdicts"] = sv
    from vaebook.models import MODEL_REGISTRY

    label = t["metric"].map(lambda c: MODEL_REGISTRY[model_name(COLUMN_SHAPE[c])].label if c in COLUMN_SHAPE else None)
    t["model"] = t["model"].where(t["model"].notna(), label) if "model" in t else label
    order = {p: i for i, p in enumerate(PATTERNS)}
    t = t.assign(_p=t["noise_pattern"].map(order), _c=t["metric"].map(COLUMN_ORDER.index)).sort_values(
        ["_p", "s_x2", "_c"], kind="stable").drop(columns=["_p", "_c"])
    cols = ["row", "dataset", "metric", "noise_pattern", "s_x2", "model", "paper", "ours", "reference_0.007",
            "reference_ours", "verdict", "reason", "printed"]
    for c in cols:
        if c not in t:
            t[c] = np.nan
    if not (t.get("n_seeds", pd.Series(dtype=float)) > 1).any():  # single-seed runs keep their columns
        t = t.drop(columns=[c for c in SEED_COLUMNS if c in t])
    return t[cols + [c for c in t.columns if c not in cols]].reset_index(drop=True)


# -- per-model records (metrics.json) <-> unit results --------------------------------------------------------
def unit_id(kind: str, pattern: Optional[str], s2: float, shape: str, seed: Optional[int] = None) -> str:
    """``spatial_s2-0.1_diag-d``; an extra model seed (not the run's) appends ``_seed<k>``."""
    if kind == "clean":
        return CLEAN_UNIT
    return f"{pattern}_s2-{float(s2):g}_{shape}" + ("" if seed is None else f"_seed{int(seed)}")


def records(results: dict) -> list:
    """One record per model for metrics.json: its per-partition estimates and pixel counts, the constant
    output's floor, the reconstruction variance, its unit id and model seed, its training time (``train_s``, the
    zoo's wall time of the model's training, whichever sitting trained it) and whether this run took it from the zoo
    (``from_cache``), and why it did not train (when it did not)."""
    out = []
    for uid, r in results.items():
        rec = {"kind": r["kind"], "pattern": r["pattern"], "s_x2": r["s_x2"], "model": r["shape"],
               **{k: r["estimates"][k] for k in PARTITIONS if "estimates" in r}, "final_loss": r.get("final_loss"),
               "unit": uid, **({"seed": r["seed"]} if r.get("seed") is not None else {})}
        if "estimates" in r:
            rec["counts"] = dict(r["estimates"]["counts"])
        for k in ("constant_floor", "recon_var", "running_sigma2_mean", "plateau", "curve", "train_s", "from_cache"):
            if r.get(k) is not None:
                rec[k] = r[k]
        if r.get("failed"):
            rec["failed"] = r["failed"]
        out.append(rec)
    return out


def results_from_records(recs: list) -> dict:
    """The unit results :func:`table3` reads, rebuilt from metrics.json records (the recount of committed runs)."""
    out = {}
    for r in recs:
        res = {"kind": r["kind"], "pattern": r["pattern"], "s_x2": r["s_x2"], "shape": r["model"],
               "failed": r.get("failed", ""), "final_loss": r.get("final_loss")}
        if all(k in r for k in PARTITIONS) and "counts" in r:
            res["estimates"] = {**{k: r[k] for k in PARTITIONS}, "counts": r["counts"]}
        for k in ("constant_floor", "recon_var", "seed"):
            if k in r:
                res[k] = r[k]
        out[r.get("unit") or unit_id(r["kind"], r["pattern"], r["s_x2"], r["model"])] = res
    return out


def table3_from_records(recs: list, rel_tol: float = 0.1) -> pd.DataFrame:
    """Table 3 from per-model records: the clean unit (when it trained) gives the baseline."""
    results = results_from_records(recs)
    c = results.pop(CLEAN_UNIT, None)
    clean = c["estimates"] if c is not None and "estimates" in c and not did_not_train(c) else None
    return table3(results, clean, rel_tol=rel_tol)




def recount(res):
    """A committed run's ``table3`` (and ``ours_table3``) recounted from its per-model records under the current
    rules (no training, no evaluation: the stored estimates are re-read); ``res`` itself, changed in place. Results
    without records are left as they are."""
    recs = (res.metrics or {}).get("records") if res is not None else None
    if not recs:
        return res
    from vaebook.experiments._noise_variance_display import wide_table

    rel_tol = float((res.provenance.get("parameters") or {}).get("rel_tol", 0.1))
    res.tables["table3"] = table3_from_records(recs, rel_tol=rel_tol)
    res.tables["ours_table3"] = wide_table(res.tables["table3"])
    return res
