"""vaebook.lab: parameters, the run folder, finding results, provenance, verdicts, comparison rows."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vaebook.lab import compare as K
from vaebook.lab import display as D
from vaebook.lab.params import ParameterError, ParamSpec, common_params, validate_params
from vaebook.lab.results import Results, Run, find_results, provenance_label

PRESETS = ("smoke", "medium", "full")
COMMON = common_params(PRESETS)


# --- parameters -------------------------------------------------------------------------------------
def test_defaults_filled_and_values_kept():
    p = validate_params({"preset": "medium", "seed": 3}, COMMON)
    assert p == {"preset": "medium", "mode": "report", "device": "auto", "seed": 3, "data_root": None,
                 "results_dir": "results", "epochs": None}


@pytest.mark.parametrize("params, name, allowed", [
    ({"preset": "huge"}, "'preset'", ["'smoke'", "'medium'", "'full'"]),
    ({"mode": "train"}, "'mode'", ["'report'", "'compute'"]),
    ({"epochs": 0}, "'epochs'", [">= 1"]),
    ({"seed": -2}, "'seed'", [">= 0"]),
    ({"seed": True}, "'seed'", ["integer"]),
    ({"device": "gpu"}, "'device'", ["cuda"]),
])
def test_bad_values_name_parameter_and_allowed(params, name, allowed):
    with pytest.raises(ParameterError) as e:
        validate_params(params, COMMON)
    for a in [name] + allowed:
        assert a in str(e.value)


def test_list_parameters_checked_item_by_item():
    spec = {"models": ParamSpec("list", choices=("iso-i", "diag-d")),
            "grid": ParamSpec("list", item_kind="float", min=-1.0, max=0.0)}
    assert validate_params({"models": ["diag-d"], "grid": [0, -0.5]}, spec) == {"models": ["diag-d"], "grid": [0.0, -0.5]}
    with pytest.raises(ParameterError, match=r"models\[1\].*'iso-i', 'diag-d'"):
        validate_params({"models": ["iso-i", "iso-x"], "grid": [0]}, spec)
    with pytest.raises(ParameterError, match=r"grid\[0\].*<= 0"):
        validate_params({"models": ["iso-i"], "grid": [0.5]}, spec)
    with pytest.raises(ParameterError, match="not a list"):
        validate_params({"models": "iso-i", "grid": [0]}, spec)


# --- the run folder -----------------------------------------------------------------------------------
def _params(tmp_path, preset="smoke"):
    return validate_params({"preset": preset, "device": "cpu", "results_dir": str(tmp_path)}, COMMON)


def _table(verdict="match"):
    return pd.DataFrame({"paper": [1.0], "ours": [1.0], "verdict": [verdict], "reason": ["same"]})


def test_run_writes_partial_then_swaps_in(tmp_path):
    run = Run("exp_a", _params(tmp_path))
    final = tmp_path / "smoke" / "exp_a"
    run.write_table("table1", _table())
    run.write_metrics({"a": np.float32(1.5), "b": [np.int64(2)], "nan": float("nan")})
    run.write_metrics({"c": 3})
    assert run.out_dir != final and not final.exists()
    assert find_results(tmp_path, "exp_a", PRESETS[::-1]) is None
    run.finish()
    assert run.out_dir == final and not list((tmp_path / "smoke").glob("exp_a.partial*"))
    assert sorted(p.name for p in final.iterdir()) == ["metrics.json", "provenance.json", "table1.csv"]
    assert json.loads((final / "metrics.json").read_text()) == {"a": 1.5, "b": [2], "nan": None, "c": 3}
    prov = json.loads((final / "provenance.json").read_text())
    assert prov["preset"] == "smoke" and prov["notebook"] == "exp_a" and prov["wall_s"] >= 0
    assert prov["device"]["device"] == "cpu" and {"torch", "vaebook"} <= set(prov["versions"])
    with pytest.raises(RuntimeError, match="finished"):
        run.write_metrics({"x": 1})


def test_failed_rerun_keeps_previous_results(tmp_path):
    with Run("exp_b", _params(tmp_path)) as run:
        run.write_table("table_claims", _table())
    with pytest.raises(ZeroDivisionError):
        with Run("exp_b", _params(tmp_path)) as run2:
            run2.write_table("table_claims", _table().assign(ours=2.0))
            1 / 0
    res = find_results(tmp_path, "exp_b", PRESETS[::-1])
    assert float(res.tables["table_claims"]["ours"].iloc[0]) == 1.0
    assert not (tmp_path / "smoke" / "exp_b.lock").exists()


def test_write_table_rejects_unknown_verdict(tmp_path):
    run = Run("exp_c", _params(tmp_path))
    with pytest.raises(ValueError, match="verdicts"):
        run.write_table("table1", _table("close enough"))
    run.write_table("table1", _table("ours only"))
    run.abort()


def test_results_precedence(tmp_path):
    def complete(preset):
        d = tmp_path / preset / "nll"
        d.mkdir(parents=True, exist_ok=True)
        (d / "provenance.json").write_text(json.dumps({"preset": preset}))

    order = PRESETS[::-1]
    assert find_results(tmp_path, "nll", order) is None
    complete("smoke")
    assert find_results(tmp_path, "nll", order).is_smoke
    complete("medium")
    assert find_results(tmp_path, "nll", order).preset == "medium"
    (tmp_path / "full" / "nll").mkdir(parents=True)  # incomplete: ignored
    assert find_results(tmp_path, "nll", order).preset == "medium"
    complete("full")
    assert find_results(tmp_path, "nll", order).preset == "full"


def test_provenance_label_and_banner():
    prov = {"preset": "medium", "device": {"device": "cpu", "threads": 2}, "end_time": "2026-11-24T10:00:00+00:00",
            "git": {"commit": "abc1234def", "dirty": False}, "wall_s": 600}
    assert provenance_label(prov) == "preset medium · cpu (2 threads) · 2026-11-24 · rev abc1234 · this sitting 10.0 min"
    # the cumulative training time of the run's models, reused ones included, beside the sitting's wall time
    tr = dict(prov, training={"models": 14, "reused": 9, "train_wall_s": 7200.0, "not_recorded": ["a"]})
    assert provenance_label(tr).endswith("this sitting 10.0 min · training 2.0 h over 14 models (9 reused, 1 not "
                                         "recorded)")
    gpu = dict(prov, device={"device": "cuda:0", "name": "NVIDIA H100"}, git={"commit": None})
    assert "cuda:0 (NVIDIA H100)" in provenance_label(gpu) and "rev unknown" in provenance_label(gpu)
    smoke = Results("smoke", None, dict(prov, preset="smoke"), {}, {}, {}, smoke=True)
    assert "SMOKE TEST" in D.banner(smoke) and "not a result" in D.banner(smoke)
    assert "SMOKE" not in D.banner(Results("medium", None, prov, {}, {}, {}))
    assert "No results yet" in D.banner(None, "nll", "run `make x` (2 h on a GPU)")


# --- verdicts and comparison rows ------------------------------------------------------------------------
def test_verdict_rules():
    assert K.verdict(10.0, 10.9, rel_tol=0.1)[0] == "match"
    assert K.verdict(10.0, 11.1, rel_tol=0.1)[0] == "differs"
    assert K.verdict(10.0, 11.1, rel_tol=0.1, trend=True)[0] == "trend holds"
    v, why = K.verdict(10.0, 30.0, trend=(False, "rho = -0.2"))
    assert v == "differs" and "rho = -0.2" in why
    assert K.verdict(0.0, 0.3, abs_tol=0.5)[0] == "match" and K.verdict(0.0, 0.3)[0] == "differs"


def test_pairwise_trend_sides_and_ties():
    assert K.pairwise_trend(10, 20, 1, 2, "ref")[0] is True
    assert K.pairwise_trend(10, 20, 3, 2, "ref")[0] is False
    assert K.pairwise_trend(10, 10.2, 5, 5.3, "ref")[0] is True  # paper tie: ours within 10 %
    assert K.pairwise_trend(10, 10.2, 5, 7, "ref")[0] is False
    assert K.pairwise_trend(float("nan"), 1, 1, 1, "ref") is None


def test_compare_outer_join_ours_only_not_run_and_did_not_train():
    paper = pd.DataFrame({"row": ["a", "b", "c"], "dataset": "d", "metric": "mse", "paper": [1.0, 2.0, 3.0]})
    ours = pd.DataFrame({"row": ["a", "c", "new"], "dataset": "d", "metric": "mse", "ours": [1.05, np.nan, 9.0],
                         "failed": [None, "did not train: loss NaN", None]})
    t = K.compare(ours, paper, lambda c, _: K.verdict(c["paper"], c["ours"]), order=["new", "a", "b", "c"])
    got = dict(zip(t["row"], t["verdict"]))
    assert list(t["row"]) == ["new", "a", "b", "c"]
    assert got["a"] == "match" and got["new"] == "ours only" and got["c"] == "did not train"
    assert pd.isna(got["b"]) and t.set_index("row").at["b", "reason"] == "not run"
    c = K.verdict_counts(t)
    assert (c["match"], c["ours only"], c["did not train"], c["not run"]) == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="verdict"):
        K.compare(ours, paper, lambda c, _: ("close", ""))


def test_monotone_spearman_fmt():
    assert K.monotone([3, 2, 1], "decreasing") and not K.monotone([3, 2, 2.5], "decreasing")
    assert K.monotone([3, 2, 2.05], "decreasing", tol=0.1)
    assert K.spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        K.monotone([1, 2], "up")
    assert D.fmt(0.0123456) == "0.0123" and D.fmt(None) == "n/a" and D.fmt(-0.0001, ".2f") == "0.00"


def test_numbers_for_people_never_in_e_notation():
    assert D.fmt(11380.4, ".4g") == "11,380" and D.fmt(1354.2) == "1,350" and D.fmt(2.5, ".2e") == "2.50"
    assert D.fmt(3.97e-5) == "3.97×10⁻⁵" and D.fmt(-6.4789e-9, ".4g") == "-6.479×10⁻⁹"
    assert D.cell_text(1354.2) == "1,350" and D.human_number("abc") == "abc"


def test_paper_long_rows_keep_printed_cells():
    from vaebook.lab.paper import long_rows
    from vaebook.paper import paper_table

    t4 = paper_table("table4")
    rows = long_rows("table4", lambda r: r["model"], {"mnist_mse": ("mnist", "mse"), "mnist_fid_prior": ("mnist", "fid_prior")})
    assert len(rows) == t4["mnist_mse"].notna().sum() + t4["mnist_fid_prior"].notna().sum()
    assert set(rows.columns) >= {"row", "dataset", "metric", "paper", "printed"}
    with pytest.raises(KeyError, match="no column"):
        long_rows("table4", lambda r: r["model"], {"nope": ("mnist", "x")})


# --- what an evaluation's cache key hashes ---------------------------------------------------------------
def test_evaluation_code_follows_the_modules_an_experiment_imports():
    """A table's evaluation cache depends on its own file and the files that define what it imports (at any depth),
    not on the other tables' files nor on whole packages."""
    from vaebook.lab.codekey import ROOT, module_files

    def names(mod):
        return {p.relative_to(ROOT).as_posix() for p in module_files([mod])}

    ex = "vaebook/experiments/"
    col = names("vaebook.experiments.collapse")
    assert {ex + f for f in ("collapse.py", "smoothness.py", "_collapse_claims.py", "_smoothness_claims.py")} <= col
    assert not col & {ex + f for f in ("generation.py", "nll.py", "noise_variance.py", "rescue.py")}
    nv = names("vaebook.experiments.noise_variance")
    assert ex + "noise_variance.py" in nv and not nv & {ex + "smoothness.py", ex + "generation.py", ex + "collapse.py"}
    assert {ex + "_section6/" + f for f in ("__init__.py", "presets.py", "jobs.py", "verdict.py", "base.py")} \
        <= names("vaebook.experiments.celebahq")
    gen = names("vaebook.experiments.generation")
    assert "vaebook/lab/experiment.py" in gen and "vaebook/lab/site_check.py" not in gen
    assert "vaebook/data/paper_datasets.py" not in gen  # a dataset's loader counts for the units that read it only


def test_percentages_in_prose():
    from vaebook.lab.display import pct

    assert [pct(60_000, 60_000), pct(4096, 60_000), pct(1874, 187_500), pct(600, 93_750), pct(12, 100)] == \
        ["100 %", "6.8 %", "1 %", "0.64 %", "12 %"]
