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
                 "notes", "kind", "paper", "ours", "verdict", "reason"]


def _claim(name, status, holds, notes=""):
    return {"name": name, "ref": "Eq. (1)", "claim": "c", "lhs": "1", "relation": "==", "rhs": "2", "holds": holds,
            "status": status, "tolerance": "rtol=0, atol=0", "notes": notes}


def test_verdict_rules_and_kinds():
    t = th.verdict_table(pd.DataFrame([_claim("a", "confirmed", True), _claim("b", "corrected", True, "factor 2"),
                                       _claim("c", "extension", True), _claim("d", "counterexample", True),
                                       _claim("e", "confirmed", False)]))
    assert list(t.columns) == CLAIM_COLUMNS
    assert list(t["kind"]) == ["confirmed", "corrected", "extension", "counterexample", "check fails"]
    # only a claim that holds as printed is a match; the paper states no extension; a corrected formula differs
    assert list(t["verdict"]) == ["match", "differs", "ours only", "differs", "differs"]
    assert list(t["row"]) == list("abcde") and set(t["dataset"]) == {th.DATASET} and set(t["metric"]) == {th.METRIC}
    assert t.loc[1, "reason"] == "the printed form fails; it holds once corrected; factor 2"
    assert "counterexample" in t.loc[3, "reason"]
    assert t.loc[4, "reason"].startswith("the check fails: 1 == 2 is false")
    assert (t["paper"] == t["rhs"]).all() and (t["ours"] == t["lhs"]).all()
    assert set(t["verdict"]) <= set(VERDICTS)
    assert th.kind_counts(t) == {"confirmed": 1, "corrected": 1, "extension": 1, "counterexample": 1,
                                 "check fails": 1}
    assert th.kind_line(t) == "1 confirmed · 1 corrected · 1 extension · 1 counterexample · 1 check fails"
    # a recount of a finished table recomputes the derived columns and nothing else
    again = th.verdict_table(t)
    pd.testing.assert_frame_equal(again, t)


def test_claims():
    from vaebook.theory import ALL_CLAIMS

    none = EXP.claims(None)
    assert len(none) == len(ALL_CLAIMS) and {c["status"] for c in none} == {"not run"}
    t = th.verdict_table(pd.DataFrame([_claim("a", "confirmed", True), _claim("b", "corrected", True, "factor 2"),
                                       _claim("c", "extension", True), _claim("d", "counterexample", True),
                                       _claim("e", "confirmed", False)]))

    class _Res:
        tables = {"table_claims": t}

    cl = EXP.claims(_Res())
    assert [c["status"] for c in cl] == ["holds", "partly", "holds", "partly", "not shown at this scale"]
    assert [c["kind"] for c in cl] == list(t["kind"])
    assert all(set(c) >= {"claim", "section", "status", "evidence", "scale"} for c in cl)
    assert cl[1]["evidence"] == "1 == 2 (rtol=0, atol=0); factor 2" and cl[0]["section"] == "Eq. (1)"


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


def test_committed_claims_are_recounted_by_kind():
    """Before issue 17 the table said 33 match / 2 differs (19 confirmed, 6 corrected and 8 extensions were
    all 'match'); now each kind is counted, and the verdicts follow the kinds."""
    d = REPO / "results" / "medium" / "theory"
    if not (d / "provenance.json").is_file():
        pytest.skip("no committed medium results")
    old = pd.read_csv(d / "table_claims.csv")
    new = th.verdict_table(old)
    pd.testing.assert_frame_equal(old, new)
    assert th.kind_counts(old) == {"confirmed": 19, "corrected": 6, "extension": 8, "counterexample": 2,
                                   "check fails": 0}
    assert old["verdict"].value_counts().to_dict() == {"match": 19, "ours only": 8, "differs": 8}
    s = EXP.summary(lab.load_results(d))
    assert s["th_kinds"] == "19 confirmed · 6 corrected · 8 extensions · 2 counterexamples"
    assert s["th_confirmed"] == "19" and s["th_failed"] == "0"


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
    assert set(t["verdict"]) <= set(VERDICTS) and t["holds"].all() and set(t["kind"]) <= set(th.KINDS)
    sweep = pd.read_csv(d / "theorem2_sweep.csv")
    assert {"sigma_x2", "sigma_z2", "active_dims"} <= set(sweep.columns) and len(sweep) > 3
    m = json.loads((d / "metrics.json").read_text())
    assert set(m["claims"]) == set(params["claims"]) and all(v["holds"] for v in m["claims"].values())
    assert json.loads((d / "provenance.json").read_text())["preset_independent"] is True
    res = lab.load_results(d)
    assert not res.is_smoke  # the same computation at every preset: a result, even at smoke
    s = EXP.summary(res)
    assert s["th_n"] == "3" and s["th_holds"] == "3" and s["th_sx_small"] != "n/a" and s["th_kinds"] != "n/a"
    assert len(EXP.claims(res)) == 3 and m["kinds"] == th.kind_counts(t)
    # a re-run reads every unit from the cache
    lines = []
    lab.run(EXP, params, log=lines.append)
    assert not any("1/3" in s for s in lines), lines


def test_notebook_glue_keys_are_all_glued():
    import re

    nb = json.loads((REPO / "notebooks" / "theory.ipynb").read_text())
    prose = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    keys = set(re.findall(r"\{glue:text\}`([^`]+)`", prose))
    assert {"th_kinds", "th_verdicts", "th_run"} <= keys <= set(EXP.summary(None))
