"""Section 5.3's claim rules and the cell rule's magnitude bound (vaebook.experiments._noise_variance_claims,
_noise_variance_cells; issue #26): every rule fails on a table made to fail it and holds on one made to meet it,
a claim decided by Diag-D needs all its seeds to agree, the caption's 5 % claim is read on the paper's own Table 3
as on ours, and the committed cpu run is recounted from its records. Nothing is trained here."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from vaebook.experiments import _noise_variance_claims as C
from vaebook.experiments import _noise_variance_page as P
from vaebook.experiments import noise_variance as nv

EXP = nv.EXPERIMENT
REPO = Path(__file__).resolve().parents[1]
COUNTS = {"SU": 1000, "SL": 1000, "BU": 1000, "BL": 1000}
PAPER_CLEAN = 0.007
CLAIM = {c: i for i, (c, _) in enumerate(C.CLAIMS)}


class _Res:
    def __init__(self, t, metrics=None):
        self.tables, self.metrics, self.is_smoke = {"table3": t}, metrics or {}, False
        self.provenance = {"parameters": {"seed": 0}}
        self.label = "constructed"


def _values(pattern, s2, clean=PAPER_CLEAN, found=1.0, parts_override=None):
    """Per-partition estimates of a model that finds ``found`` × the injected noise on top of ``clean``."""
    from vaebook.data import noisy_pattern_partitions

    noisy = noisy_pattern_partitions(pattern)
    v = {k: clean + found * s2 * (k in noisy) for k in nv.PARTITIONS}
    return {**v, **(parts_override or {})}


def _unit(pattern, s2, shape, parts, seed=None):
    return {"kind": "noisy", "pattern": pattern, "s_x2": s2, "shape": shape, "failed": "", "final_loss": None,
            "estimates": {**parts, "counts": COUNTS}, **({"seed": seed} if seed is not None else {})}


def _table(values=_values, diag_d_seeds=None):
    """Every pattern × s_x² × shape; ``values(pattern, s2, shape, seed)`` gives the partition estimates;
    ``diag_d_seeds``: Diag-D's model seeds (None: one model)."""
    results = {}
    for pattern in nv.PATTERNS:
        for s2 in (0.01, 0.1):
            for shape in nv.MODELS:
                for k in (diag_d_seeds or [None]) if shape == "diag-d" else [None]:
                    uid = nv.unit_id("noisy", pattern, s2, shape, k or None)
                    results[uid] = _unit(pattern, s2, shape, values(pattern, s2, shape, k), k)
    clean = {**{k: PAPER_CLEAN for k in nv.PARTITIONS}, "counts": COUNTS}
    return nv.table3(results, clean)


def _claims(t):
    return {c["claim"]: c for c in EXP.claims(_Res(t, {"n_train": 60_000, "train_config": {}}))}


def _status(t, i):
    return _claims(t)[C.CLAIMS[i][0]]["status"]


def ideal(pattern, s2, shape, seed):
    return _values(pattern, s2)


# --- the cell rule's magnitude bound ------------------------------------------------------------------------
def test_trend_holds_has_a_magnitude_bound():
    """spatial, s_x² = 0.1, Diag-D SL (paper 0.0065), our clean baseline 0.012: 0.018 is 1.5× the reference and
    2.8× the paper's (trend holds); 0.022 is 1.8× the reference, within the band, but 3.4× the paper's (differs)."""
    clean = {**{k: 0.012 for k in nv.PARTITIONS}, "counts": COUNTS}
    key = nv.row_key("spatial", 0.1)

    def sl(v):
        t = nv.table3({"dd": _unit("spatial", 0.1, "diag-d", {"SU": 0.11, "SL": v, "BU": 0.11, "BL": 0.012})}, clean)
        return t.set_index(["row", "metric"]).loc[(key, "diagD_SL")]

    assert sl(0.018)["verdict"] == "trend holds"
    far = sl(0.022)
    assert far["verdict"] == "differs" and "outside the trend's magnitude bound [0.333, 3]" in far["reason"]
    assert "trend holds: closer to 0.012" in far["reason"] or "ordering as the paper's" in far["reason"]
    assert nv.TREND_MAX_RATIO == pytest.approx(3.0) and "within ×3 of the paper's value" in C.RULES[0]


def test_each_seed_is_judged_by_the_cell_rule():
    """Diag-D SL (clean, paper 0.0065) at three seeds 0.005, 0.006, 0.016: the mean 0.009 reads trend holds, the
    second seed matches (within 10 %), the third (2.3× the reference) differs."""
    def values(pattern, s2, shape, seed):
        v = _values(pattern, s2)
        if shape == "diag-d" and (pattern, s2) == ("spatial", 0.1):
            v["SL"] = {0: 0.005, 1: 0.006, 2: 0.016}[seed]
        return v

    t = _table(values, diag_d_seeds=[0, 1, 2]).set_index(["row", "metric"])
    cell = t.loc[(nv.row_key("spatial", 0.1), "diagD_SL")]
    assert cell["verdict"] == "trend holds" and cell["seed_verdicts"] == "trend holds;match;differs"
    assert [float(x) for x in cell["ours_seeds"].split(";")] == pytest.approx([0.005, 0.006, 0.016])


# --- claim 1: each shape finds the noise it can represent ---------------------------------------------------
def test_claim1_holds_when_every_representable_cell_finds_its_noise_and_fails_when_none_does():
    assert _status(_table(ideal), 0) == "holds"
    blind = _table(lambda p, s2, sh, k: _values(p, s2, found=0.0))  # every model reports the clean value
    assert _status(blind, 0) in ("partly", "not shown at this scale")
    r = C.rule_finds_noise(C.cells(blind))
    assert r["pass"] < r["n"]


def test_claim1_needs_every_diag_d_seed_to_agree():
    def split(pattern, s2, shape, seed):
        v = _values(pattern, s2)
        if shape == "diag-d" and (pattern, s2) == ("spatial", 0.1):
            v["SL"] = {0: 0.005, 1: 0.006, 2: 0.016}[seed]
        return v

    agree = _claims(_table(ideal, diag_d_seeds=[0, 1, 2]))[C.CLAIMS[0][0]]
    assert agree["status"] == "holds" and "Diag-D: 32 cells at 3 seeds" in agree["evidence"]
    assert "of the cells with several seeds, 32 of 32 pass at the mean and every seed" in agree["evidence"]
    c = _claims(_table(split, diag_d_seeds=[0, 1, 2]))[C.CLAIMS[0][0]]
    assert c["status"] == "inconclusive" and "1 split (mean and seeds disagree)" in c["evidence"]


# --- claim 2: noisy − clean ≈ s_x² ----------------------------------------------------------------------------
def test_claim2_fails_when_the_noise_is_not_found_and_reports_the_papers_tally():
    good = C.rule_difference(C.cells(_table(ideal)))
    assert good["pass"] == good["n"] == 10 and _status(_table(ideal), 1) == "holds"
    assert good["paper"] == good["paper_n"] == 10  # the paper's own differences are within ×2 of s_x²
    blind = _table(lambda p, s2, sh, k: _values(p, s2, found=0.0))
    assert C.rule_difference(C.cells(blind))["pass"] == 0 and _status(blind, 1) == "not shown at this scale"
    half = _table(lambda p, s2, sh, k: _values(p, s2, found=0.4))  # 0.4 s_x²: outside ×2
    assert _status(half, 1) == "not shown at this scale"


def test_claim2_per_seed_differences_must_agree():
    def values(pattern, s2, shape, seed):
        return _values(pattern, s2, found=0.3 if shape == "diag-d" and seed == 2 else 1.0)

    r = C.rule_difference(C.cells(_table(values, diag_d_seeds=[0, 1, 2])))
    assert r["split"] == 6 and r["pass"] == 4  # the 6 Diag-D groups: mean 0.77 s_x² passes, seed 2 does not
    assert "Diag-D: 6 groups at 3 seeds, per-seed difference / s_x² 0.30–1.00" in r["seed_range"]
    assert _status(_table(values, diag_d_seeds=[0, 1, 2]), 1) == "inconclusive"


# --- claim 3: the caption's 5 % --------------------------------------------------------------------------------
def _paper_caption_tally() -> tuple:
    """Read off the paper's Table 3 by hand: wholly noisy cells of a shape that can represent the pattern."""
    from vaebook.data import noisy_pattern_partitions
    from vaebook.paper import paper_table

    t = paper_table("table3")
    n = hit = 0
    for _, row in t.iterrows():
        noisy = set(noisy_pattern_partitions(row["noise_pattern"]))
        for shape, cols in nv.COLUMNS.items():
            if row["noise_pattern"] not in nv.REPRESENTABLE[shape]:
                continue
            for col, parts in cols:
                if set(parts) <= noisy:
                    target = float(row["s_x2"]) + PAPER_CLEAN
                    n += 1
                    hit += abs(float(row[col]) - target) <= 0.05 * target
    return hit, n


def test_claim3_is_read_on_the_papers_table_as_on_ours():
    hit, n = _paper_caption_tally()
    assert hit < n  # the caption's "all" does not hold on the paper's own numbers
    exact = C.rule_caption(C.cells(_table(ideal)))
    assert (exact["paper"], exact["paper_n"]) == (hit, n) and exact["pass"] == exact["n"] == n
    assert _status(_table(ideal), 2) == "holds"
    off = _table(lambda p, s2, sh, k: _values(p, s2, clean=0.02))  # every noisy cell 0.013 too high
    c = _claims(off)[C.CLAIMS[2][0]]
    assert c["status"] == "not shown at this scale" and f"meets it in {hit} of {n}" in c["evidence"]
    assert f"ours 0 of {n}" in c["evidence"]


def test_claim3_holds_when_ours_reaches_the_papers_tally():
    """Ours within 5 % in as many cells as the paper's own (uniform: 18 of 32 cells), not in all: holds; in fewer
    than half of the paper's: not shown."""
    hit, n = _paper_caption_tally()

    def some(p, s2, sh, k):  # within 5 % on the uniform rows only (18 cells), 30 % high elsewhere
        return _values(p, s2) if p == "uniform" else {q: 1.3 * v for q, v in _values(p, s2).items()}

    r = C.rule_caption(C.cells(_table(some)))
    assert r["pass"] == 18 and 18 >= hit
    assert C.status(r, r["paper"]) == "holds" and C.status(r) != "holds"  # "all" is not what is asked
    assert C.status({**r, "pass": hit // 2 - 1}, hit) == "not shown at this scale"


# --- claim 4: too-simple shapes report the pixel-weighted average ----------------------------------------------
def test_claim4_separates_the_weighted_average_from_all_noisy_and_all_clean():
    weighted = C.rule_weighted_average(C.cells(_table(ideal)))
    assert weighted["pass"] == weighted["n"] == 18 and weighted["excluded"] == 4
    assert _status(_table(ideal), 3) == "holds"

    def all_noisy(p, s2, sh, k):  # a too-simple shape that reports s_x² everywhere
        return {q: PAPER_CLEAN + s2 for q in nv.PARTITIONS} if sh != "diag-d" else _values(p, s2)

    def all_clean(p, s2, sh, k):
        return {q: PAPER_CLEAN for q in nv.PARTITIONS} if sh != "diag-d" else _values(p, s2)

    for wrong in (all_noisy, all_clean):
        t = _table(wrong)
        r = C.rule_weighted_average(C.cells(t))
        assert r["pass"] == 0 and _status(t, 3) == "not shown at this scale", wrong.__name__
    # the old rule (within ×2 of the weighted reference) let the all-noisy estimate pass most cells
    c = C.cells(_table(all_noisy))
    c = c[~c["rep"] & ~c["full_noisy"] & ~c["full_clean"]]
    ratio = c["ours"] / c["reference_ours"]
    assert ((ratio >= 0.5) & (ratio <= 2)).sum() > len(c) / 2
    assert C.nearer_weighted(0.06, 0.06, 0.11, 0.01) and not C.nearer_weighted(0.1, 0.06, 0.11, 0.01)


# --- the committed cpu run ------------------------------------------------------------------------------------------
def test_committed_cpu_run_is_recounted_and_every_claim_shows_its_evidence():
    res = EXP.find(REPO / "results")
    if res is None or res.preset != "cpu":
        pytest.skip("no committed cpu noise_variance results")
    stored = pd.read_csv(res.path / "table3.csv")
    t = res.tables["table3"]
    assert "seed_verdicts" in t and "reference_noisy_only" in t  # recounted under the current rules
    same = ~t["reason"].str.contains("magnitude bound", na=False)
    assert (t.loc[same, "verdict"].fillna("") == stored.loc[same, "verdict"].fillna("")).all()
    cl = {c["claim"]: c for c in EXP.claims(res)}
    for c, _ in C.CLAIMS[:3]:  # the claims Diag-D decides show its seeds' spread
        assert "Diag-D" in cl[c]["evidence"] and "3 seeds" in cl[c]["evidence"], c
    hit, n = _paper_caption_tally()
    assert f"the paper's own Table 3 meets it in {hit} of {n}" in cl[C.CLAIMS[2][0]]["evidence"]
    assert "the paper's own Table 3" in cl[C.CLAIMS[1][0]]["evidence"]
    assert "the paper's own Table 3" in cl[C.CLAIMS[3][0]]["evidence"]
    s = EXP.summary(res)
    assert "do not record the models' training time" in s["nv_train_time"] and "9.6 min" in s["nv_train_time"]
    assert s["nv_recount"].startswith("The verdicts below are recounted")


def test_training_time_is_the_sum_of_the_recorded_model_times():
    recs = [{"train_s": 100.0, "from_cache": True}, {"train_s": 260.0, "from_cache": False}]
    r = _Res(pd.DataFrame(), {"records": recs})
    r.provenance["wall_s"] = 30.0
    line = P.training_time(r)
    assert "the 2 models trained for 0.10 h in all" in line and "100–260 s per model; 1 of them reused" in line
    assert "0.5 min in the run label is the wall time of the sitting" in line
    assert "do not record" in P.training_time(_Res(pd.DataFrame(), {"records": [{"train_s": 1.0}, {}]}))


def test_model_train_s_prefers_the_zoos_wall_time():
    class _TM:
        meta, history = {"train_wall_s": 12.5}, [{"time_s": 3.0}]

    class _Old:
        meta, history = {}, [{"time_s": 3.0}, {"time_s": 4.0}]

    assert nv.model_train_s(_TM()) == 12.5 and nv.model_train_s(_Old()) == 7.0
