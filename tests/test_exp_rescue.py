"""The rescue page's rules (vaebook/experiments/_rescue_claims.py) and the seed-combined paired interval
(vaebook/metrics/seeds.py): each rule on a table where it holds and one where it fails."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from vaebook.experiments import _rescue_claims as rc
from vaebook.experiments import _rescue_page as rp
from vaebook.experiments.rescue import EXPERIMENT, ROWS, model_kwargs
from vaebook.lab.params import ParameterError
from vaebook.metrics.seeds import combine_seeds, paired_items, paired_replicates

N_IMG, N_BOOT = 50, 40


# -- combine_seeds: closed forms -------------------------------------------------------------------------------
def test_combine_seeds_matches_closed_form():
    d, s = [1.0, 2.0, 4.0], [0.3, 0.4, 0.5]
    r = combine_seeds(d, s)
    se = math.sqrt(np.var(d, ddof=1) / 3 + np.mean(np.square(s)))
    q = stats.t.ppf(0.975, 2)
    assert r["diff"] == pytest.approx(7 / 3)
    assert r["se"] == pytest.approx(se)
    assert (r["lo"], r["hi"]) == pytest.approx((7 / 3 - q * se, 7 / 3 + q * se))
    assert r["excludes_zero"] is False  # t(2) = 4.30 makes three seeds wide


def test_combine_seeds_one_seed_uses_the_normal_quantile_and_evaluation_error_only():
    r = combine_seeds([2.0], [0.5])
    assert (r["lo"], r["hi"]) == pytest.approx((2 - 1.959964 * 0.5, 2 + 1.959964 * 0.5), rel=1e-6)
    assert r["excludes_zero"] and r["n_seeds"] == 1


@pytest.mark.parametrize("d,s", [([1.0, math.nan], [0.1, 0.1]), ([1.0], [-0.1]), ([], []), ([1.0, 2.0], [0.1])])
def test_combine_seeds_refuses_bad_input(d, s):
    with pytest.raises(ValueError):
        combine_seeds(d, s)


def test_paired_items_and_replicates():
    m, se = paired_items([3.0, 5.0, 7.0], [1.0, 1.0, 1.0])
    assert m == pytest.approx(4.0) and se == pytest.approx(2.0 / math.sqrt(3))
    d, sd = paired_replicates(10.0, 7.0, [10.0, 11.0, 12.0], [7.0, 7.5, 8.0])
    assert d == pytest.approx(3.0) and sd == pytest.approx(np.std([3.0, 3.5, 4.0], ddof=1))


# -- synthetic runs ----------------------------------------------------------------------------------------
def rec(row, seed, kind="mnist", mse=10.0, nll=-1000.0, fid=30.0, kid=0.02, fate="input-dependent", out=0.13,
        su=0.11, clean=0.01):
    g = np.random.default_rng(seed * 101 + len(row))
    r = {"kind": kind, "row": row, "seed": seed, "fate": fate, "mean_output": out, "mse": mse, "train_s": 70.0}
    if fate != "input-dependent":
        return r
    if kind == "noisy":
        r["estimates"] = {"SU": su, "SL": clean, "BU": clean, "BL": clean,
                          "counts": {"SU": 100, "SL": 100, "BU": 100, "BL": 100}}
        return r
    r["per_image_mse"] = list(mse + g.normal(0, 0.5, N_IMG))
    r["nll_valid"], r["per_image_nll"] = nll, list(nll + g.normal(0, 5.0, N_IMG))
    r["fid"], r["fid_boot"] = fid, list(fid + g.normal(0, 0.5, N_BOOT))
    r["kid"], r["kid_boot"] = kid, list(kid + g.normal(0, 1e-3, N_BOOT))
    return r


def run(extra: dict, seeds=(0, 1, 2), tr_c=None, refs=True):
    recs = {}
    for s in seeds:
        if refs:
            recs[f"iso-i{s}"] = rec("iso-i", s, mse=10.0, nll=-1000.0, fid=30.0)
            recs[f"diag-i{s}"] = rec("diag-i", s, mse=12.0, nll=-1100.0, fid=32.0)
        for row, kw in extra.items():
            kind = kw.pop("kind", "mnist") if isinstance(kw, dict) else "mnist"
            recs[f"{row}{kind}{s}"] = rec(row, s, kind=kind, **kw)
            kw["kind"] = kind
    st = {"noise_s2": 0.1, "n_test": None, "seeds": list(seeds), "train": {"max_steps": 600}}
    if tr_c is not None:
        st["tr_c_test"] = tr_c
    return SimpleNamespace(metrics={"records": recs, "settings": st, "rows": ROWS}, provenance={}, label="synthetic",
                           is_smoke=False)


def status(res, i):
    return rc.claims(res)[i]["status"]


def good(**kw):
    return {"mse": 12.0, "nll": -1400.0, "fid": 25.0, **kw}


def test_plain_diag_d_black_at_every_seed_is_not_reproduced_and_not_evidence():
    res = run({"diag-d": dict(fate="constant", out=0.0, mse=81.0)})
    assert status(res, 0) == "not reproduced"
    j = rc.judge(res)
    assert j.loc[j["row"] == "diag-d", "evidence"].item() == 0
    assert status(run({"diag-d": good()}), 0) == "holds"


def test_fates():
    assert rc.fate({"fate": "constant", "mean_output": 0.001}, 10.0) == "black"
    assert rc.fate({"fate": "constant", "mean_output": 0.4}, 10.0) == "constant"
    assert rc.fate({"fate": "input-dependent", "kind": "mnist", "row": "diag-d+x", "mse": 25.0}, 10.0) == "degraded"
    assert rc.fate({"fate": "input-dependent", "kind": "mnist", "row": "diag-d+x", "mse": 15.0}, 10.0) == "trained"
    assert rc.fate({"fate": "input-dependent", "kind": "mnist", "row": "diag-d+x", "mse": 60.0}, 10.0,
                   tr_c=52.7) == "worse than constant"
    # tr C is the clean MNIST test images': a noisy-MNIST model's MSE on noisy images is not held to it
    assert rc.fate({"fate": "input-dependent", "kind": "noisy", "row": "diag-d+x", "mse": 56.0}, None,
                   tr_c=52.7) == "trained"


def test_sharp_mean_rule_holds_and_fails():
    assert status(run({"diag-d+faithful": good()}), 1) == "holds"          # 12 < 1.55 × 10
    assert status(run({"diag-d+faithful": good(mse=15.4)}), 1) == "inconclusive"  # at the bound: a tie
    assert status(run({"diag-d+faithful": dict(mse=19.0, nll=-1400.0, fid=25.0)}), 1) == "not shown at this scale"


def test_likelihood_needs_both_minus_i_shapes():
    assert status(run({"diag-d+faithful": good()}), 2) == "holds"          # −1400 < −1100 and −1000
    assert status(run({"diag-d+faithful": dict(mse=12.0, nll=-1050.0, fid=25.0)}), 2) == "not shown at this scale"
    assert status(run({"diag-d+faithful": good()}, refs=False), 2) == "not run"  # no reference: no comparison


def test_noise_located_band():
    res = run({"diag-d+faithful": good()})
    assert status(res, 3) == "not run"  # no noisy records
    noisy = run({"diag-d+faithful": good()})
    recs = noisy.metrics["records"]
    for s in (0, 1, 2):
        recs[f"n{s}"] = rec("diag-d+faithful", s, kind="noisy", su=0.11 + 0.002 * s, clean=0.01)
    assert status(noisy, 3) == "holds"  # (0.11 − 0.01)/0.1 = 1 ∈ [0.5, 2]
    for s in (0, 1, 2):
        recs[f"n{s}"] = rec("diag-d+faithful", s, kind="noisy", su=0.03, clean=0.01)
    assert status(noisy, 3) == "not shown at this scale"  # 0.2 < 0.5: the noise is not found


def test_prior_fid_rule_and_all_four():
    res = run({"diag-d+faithful": good()})
    recs = res.metrics["records"]
    for s in (0, 1, 2):
        recs[f"n{s}"] = rec("diag-d+faithful", s, kind="noisy")
    assert status(res, 4) == "holds"
    assert status(res, 5) == "holds"
    worse = run({"diag-d+faithful": good(fid=40.0)})
    assert status(worse, 4) == "not shown at this scale"
    assert status(worse, 5) != "holds"


def test_one_black_seed_blocks_keeping_every_promise():
    res = run({"diag-d+faithful": good()})
    recs = res.metrics["records"]
    for s in (0, 1, 2):
        recs[f"n{s}"] = rec("diag-d+faithful", s, kind="noisy")
    recs["diag-d+faithfulmnist2"] = rec("diag-d+faithful", 2, fate="constant", out=0.0, mse=81.0)
    assert status(res, 5) != "holds"


def test_page_table_and_summary_read_the_same_tests():
    res = run({"diag-d+faithful": good()})
    t = rp.table(res)
    assert list(t["model"]) == ["Iso-I", "Diag-I", ROWS["diag-d+faithful"]["label"]]
    s = rp.summary(res)
    assert "(yes)" in s["rs_mse"] and "n/a" not in s["rs_fates"]
    assert rp.summary(None)["rs_mse"] == "no results yet"


# -- the experiment's inputs ---------------------------------------------------------------------------------
def test_rows_pin_their_rescue_and_no_legacy_warmup():
    assert model_kwargs("diag-d+beta0.5") == {"rescue": "beta-nll:beta=0.5", "warmup_steps": 0}
    assert model_kwargs("iso-i") == {"rescue": "none"}


@pytest.mark.parametrize("bad,word", [({"epochs": 3}, "max_steps"), ({"rows": ["diag-d+nope"]}, "rows"),
                                      ({"seed": 2**31 - 2, "seeds": 3}, "seed")])
def test_bad_parameters_are_named(bad, word):
    with pytest.raises(ParameterError, match=word):
        EXPERIMENT.resolve({"preset": "smoke", **bad})


def test_fmt_thousands_separator_on_negative_numbers():
    from vaebook.lab.display import fmt

    assert fmt(-1234.4, ",.0f") == "-1,234"
    assert fmt(-0.0004, ",.2f") == "0.00"
