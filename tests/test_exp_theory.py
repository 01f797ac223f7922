"""The theory page (vaebook.experiments.theory): the verdict rules of the claims table, the parameters, the
unit layout (no training) and a run end to end through the one run loop."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from vaebook import lab
from vaebook.experiments import theory as th
from vaebook.lab.compare import VERDICTS

EXP = th.EXPERIMENT
REPO = Path(__file__).resolve().parents[1]
CLAIM_COLUMNS = ["row", "dataset", "metric", "ref", "claim", "lhs", "relation", "rhs", "holds", "status", "tolerance",
                 "notes", "paper", "ours", "verdict", "reason"]


def _claim(name, status, holds, notes=""):
    return {"name": name, "ref": "Eq. (1)", "claim": "c", "lhs": "1", "relation": "==", "rhs": "2", "holds": holds,
            "status": status, "tolerance": "rtol=0, atol=0", "notes": notes}


def test_verdict_rules():
    t = th.verdict_table(pd.DataFrame([_claim("a", "confirmed", True), _claim("b", "corrected", True, "factor 2"),
                                       _claim("c", "extension", True), _claim("d", "counterexample", True),
                                       _claim("e", "confirmed", False)]))
    assert list(t.columns) == CLAIM_COLUMNS
    assert list(t["verdict"]) == ["match", "match", "match", "differs", "differs"]
    assert list(t["row"]) == list("abcde") and set(t["dataset"]) == {th.DATASET} and set(t["metric"]) == {th.METRIC}
    assert t.loc[1, "reason"] == "holds once the printed form is corrected; factor 2"
    assert "counterexample" in t.loc[3, "reason"]
    assert t.loc[4, "reason"].startswith("the check fails: 1 == 2 is false")
    assert (t["paper"] == t["rhs"]).all() and (t["ours"] == t["lhs"]).all()


def test_params_and_plan():
    from vaebook.theory import ALL_CLAIMS

    assert EXP.preset_independent
    with pytest.raises(lab.ParameterError, match=r"'claims\[0\]'.*theorem2_small_sigma_x"):
        EXP.resolve({"claims": ["theorem9"]})
    with pytest.raises(lab.ParameterError, match=r"'preset'.*'smoke', 'medium', 'full'"):
        EXP.resolve({"preset": "large"})
    units = EXP.plan(lab.Context(EXP, EXP.resolve({"preset": "medium"})))
    assert all(not u.jobs for u in units)  # trains nothing
    assert units[-1].id == th.SWEEP
    assert [n for u in units[:-1] for n in u.meta["claims"]] == list(ALL_CLAIMS)  # one unit per claim group
    units = EXP.plan(lab.Context(EXP, EXP.resolve({"claims": ["appendix_h_eq11", "g2_derivative"]})))
    assert [u.id for u in units] == ["mle", "decomposition", th.SWEEP]


def test_wrong_parameter_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(lab.ParameterError, match="'claims'"):
        lab.run(EXP, {"claims": [], "results_dir": str(out), "device": "cpu"})
    assert not out.exists()


def test_committed_results_follow_the_comparison_columns():
    res = EXP.find(REPO / "results")
    if res is None:
        pytest.skip("no committed theory results")
    assert list(res.tables["table_claims"].columns) == CLAIM_COLUMNS
    assert res.preset_independent and not res.is_smoke
    assert EXP.summary(res)["th_n"] == str(len(res.tables["table_claims"]))


def test_run_end_to_end(tmp_path):
    """Two claim groups and the sweep (the whole set takes ~15 s: the page runs it at every preset)."""
    params = {"preset": "smoke", "results_dir": str(tmp_path), "device": "cpu", "mode": "compute",
              "claims": ["appendix_g_closed_forms", "g2_derivative", "f8_aggregate_covariance"]}
    r = lab.run(EXP, params, log=lambda *_: None)
    d = r.final_dir
    assert sorted(p.name for p in d.iterdir()) == ["metrics.json", "provenance.json", "table_claims.csv",
                                                    "theorem2.png", "theorem2_sweep.csv"]
    t = pd.read_csv(d / "table_claims.csv")
    assert list(t.columns) == CLAIM_COLUMNS and list(t["row"]) == params["claims"]
    assert set(t["verdict"]) <= set(VERDICTS) and t["holds"].all()
    sweep = pd.read_csv(d / "theorem2_sweep.csv")
    assert {"sigma_x2", "sigma_z2", "active_dims"} <= set(sweep.columns) and len(sweep) > 3
    m = json.loads((d / "metrics.json").read_text())
    assert set(m["claims"]) == set(params["claims"]) and all(v["holds"] for v in m["claims"].values())
    assert json.loads((d / "provenance.json").read_text())["preset_independent"] is True
    res = lab.load_results(d)
    assert not res.is_smoke  # the same computation at every preset: a result, even at smoke
    s = EXP.summary(res)
    assert s["th_n"] == "3" and s["th_holds"] == "3" and s["th_sx_small"] != "n/a"
    # a re-run reads every unit from the cache
    lines = []
    lab.run(EXP, params, log=lines.append)
    assert not any("1/3" in s for s in lines), lines
