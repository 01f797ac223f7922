"""vaebook.experiments.common: parameter validation, results folders, precedence, verdicts; plus the pure
comparison logic of the Section-4 / Section-5.3 drivers (no training)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from vaebook.experiments import common as C


# --- parameters -------------------------------------------------------------------------------------
def test_defaults_filled_and_values_kept():
    p = C.validate_params({"preset": "medium", "seed": 3}, C.COMMON_PARAMS)
    assert p == {"preset": "medium", "mode": "report", "device": "auto", "seed": 3, "data_root": None,
                 "results_dir": "results", "epochs": None}


@pytest.mark.parametrize("params, name, allowed", [
    ({"preset": "huge"}, "'preset'", ["'smoke'", "'medium'", "'full'"]),
    ({"mode": "train"}, "'mode'", ["'report'", "'compute'"]),
    ({"epochs": -1}, "'epochs'", [">= 1"]),
    ({"epochs": 0}, "'epochs'", [">= 1"]),
    ({"seed": -2}, "'seed'", [">= 0"]),
    ({"seed": True}, "'seed'", ["integer"]),
    ({"device": "gpu"}, "'device'", ["cuda"]),
])
def test_bad_values_name_parameter_and_allowed(params, name, allowed):
    with pytest.raises(C.ParameterError) as e:
        C.validate_params(params, C.COMMON_PARAMS)
    msg = str(e.value)
    assert name in msg
    for a in allowed:
        assert a in msg


def test_unknown_parameter_and_device_forms():
    with pytest.raises(C.ParameterError, match="unknown parameter.*'colour'"):
        C.validate_params({"colour": 1}, C.COMMON_PARAMS)
    for d in ("auto", "cpu", "cuda", "cuda:1"):
        assert C.validate_params({"device": d}, C.COMMON_PARAMS)["device"] == d


def test_list_parameters_checked_item_by_item():
    spec = {"models": C.ParamSpec("list", choices=("iso-i", "diag-d")),
            "grid": C.ParamSpec("list", item_kind="float", min=-1.0, max=0.0)}
    assert C.validate_params({"models": ["diag-d"], "grid": [0, -0.5]}, spec) == {"models": ["diag-d"],
                                                                                  "grid": [0.0, -0.5]}
    with pytest.raises(C.ParameterError, match=r"models\[1\].*'iso-i', 'diag-d'"):
        C.validate_params({"models": ["iso-i", "iso-x"], "grid": []}, spec)
    with pytest.raises(C.ParameterError, match=r"grid\[0\].*<= 0.0"):
        C.validate_params({"models": [], "grid": [0.5]}, spec)
    with pytest.raises(C.ParameterError, match="not a list"):
        C.validate_params({"models": "iso-i", "grid": []}, spec)


# --- runs and results folders ---------------------------------------------------------------------
def _params(tmp_path, preset="smoke"):
    return C.validate_params({"preset": preset, "device": "cpu", "results_dir": str(tmp_path)}, C.COMMON_PARAMS)


def _table():
    return pd.DataFrame({"paper": [1.0], "ours": [1.0], "verdict": ["match"], "reason": ["same"]})


def test_run_writes_partial_then_swaps_in(tmp_path):
    run = C.Run("smoothness", _params(tmp_path))
    final = tmp_path / "smoke" / "smoothness"
    run.write_table("table1", _table())
    run.write_metrics({"a": np.float32(1.5), "b": [np.int64(2)], "nan": float("nan")})
    run.write_metrics({"c": 3})  # merged into the same file
    assert run.out_dir != final and not final.exists()  # nothing visible before finish
    assert C.latest_results(tmp_path, "smoothness") is None
    run.finish()
    assert run.out_dir == final
    assert not (tmp_path / "smoke" / "smoothness.partial").exists()
    assert sorted(p.name for p in final.iterdir()) == ["metrics.json", "provenance.json", "table1.csv"]
    m = json.loads((final / "metrics.json").read_text())
    assert m == {"a": 1.5, "b": [2], "nan": None, "c": 3}
    prov = json.loads((final / "provenance.json").read_text())
    assert prov["preset"] == "smoke" and prov["notebook"] == "smoothness" and prov["wall_s"] >= 0
    assert {"torch", "vaebook", "numpy", "sklearn"} <= set(prov["versions"])
    assert prov["device"]["device"] == "cpu"
    with pytest.raises(RuntimeError, match="finished"):
        run.write_metrics({"x": 1})


def test_failed_rerun_keeps_previous_results(tmp_path):
    with C.Run("theory", _params(tmp_path)) as run:
        run.write_table("table_claims", _table())
    with pytest.raises(ZeroDivisionError):
        with C.Run("theory", _params(tmp_path)) as run2:
            run2.write_table("table_claims", _table().assign(ours=2.0))
            1 / 0
    preset, path = C.latest_results(tmp_path, "theory")
    assert float(pd.read_csv(path / "table_claims.csv")["ours"].iloc[0]) == 1.0  # the old, complete run
    assert (tmp_path / "smoke" / "theory.partial").exists()  # the interrupted one stays aside


def test_write_table_rejects_unknown_verdict(tmp_path):
    run = C.Run("theory", _params(tmp_path))
    with pytest.raises(ValueError, match="verdicts"):
        run.write_table("table1", _table().assign(verdict="close enough"))


def test_latest_results_precedence(tmp_path):
    def complete(preset):
        d = tmp_path / preset / "nll"
        d.mkdir(parents=True, exist_ok=True)
        (d / "provenance.json").write_text(json.dumps({"preset": preset}))

    assert C.latest_results(tmp_path, "nll") is None
    complete("smoke")
    assert C.latest_results(tmp_path, "nll")[0] == "smoke"
    complete("medium")
    assert C.latest_results(tmp_path, "nll") == ("medium", tmp_path / "medium" / "nll")
    (tmp_path / "full" / "nll").mkdir(parents=True)  # incomplete full run: ignored
    (tmp_path / "full" / "nll" / "table4.csv").write_text("a\n1\n")
    assert C.latest_results(tmp_path, "nll")[0] == "medium"
    complete("full")
    assert C.latest_results(tmp_path, "nll")[0] == "full"
    assert C.latest_results(tmp_path, "celebahq") is None


def test_provenance_label_and_banner():
    prov = {"preset": "medium", "device": {"device": "cpu", "threads": 2}, "end_time": "2026-11-24T10:00:00+00:00",
            "git": {"commit": "abc1234def", "dirty": False}, "wall_s": 600}
    assert C.provenance_label(prov) == "preset medium · cpu (2 threads) · 2026-11-24 · rev abc1234 · 10.0 min"
    gpu = dict(prov, device={"device": "cuda:0", "name": "NVIDIA H100"}, git={"commit": None})
    assert "cuda:0 (NVIDIA H100)" in C.provenance_label(gpu) and "rev unknown" in C.provenance_label(gpu)
    smoke = C.Results("smoke", None, dict(prov, preset="smoke"), {}, {}, {})
    assert "SMOKE TEST" in C.results_banner(smoke) and "not a result" in C.results_banner(smoke)
    assert "SMOKE" not in C.results_banner(C.Results("medium", None, prov, {}, {}, {}))
    assert "No results yet" in C.results_banner(None, "nll")


def test_status_table_counts_verdicts(tmp_path):
    with C.Run("noise_variance", _params(tmp_path)) as run:
        run.write_table("table3", pd.DataFrame({"paper": [1, 2, 3], "ours": [1, 5, 9],
                                                "verdict": ["match", "differs", "differs"], "reason": "r"}))
        run.write_table("ours_table3", pd.DataFrame({"x": [1]}))  # not a comparison table
    t = C.status_table(tmp_path)
    row = t[t["notebook"] == "noise_variance"].iloc[0]
    assert (row["table"], row["preset"], row["cells"], row["match"], row["differs"]) == ("table3", "smoke", 3, 1, 2)
    assert "SMOKE" in row["note"]
    assert len(t[t["notebook"] == "noise_variance"]) == 1
    assert set(t[t["notebook"] != "noise_variance"]["preset"]) == {"none"}


# --- verdicts -----------------------------------------------------------------------------------------
def test_verdict_rules():
    assert C.verdict(10.0, 10.9, rel_tol=0.1)[0] == "match"
    assert C.verdict(10.0, 11.1, rel_tol=0.1)[0] == "differs"
    assert C.verdict(10.0, 11.1, rel_tol=0.1, trend=True)[0] == "trend holds"
    v, why = C.verdict(10.0, 30.0, trend=(False, "rho = -0.2"))
    assert v == "differs" and "rho = -0.2" in why
    assert C.verdict(0.0, 0.3, abs_tol=0.5)[0] == "match"  # near-zero values need an absolute tolerance
    assert C.verdict(0.0, 0.3)[0] == "differs"
    v, why = C.verdict(float("nan"), 1.0)
    assert v == "differs" and "no value" in why
    assert "paper note" in C.verdict(1.0, 1.0, note="paper note")[1]


def test_monotone_and_spearman():
    assert C.monotone([3, 2, 1], "decreasing") and not C.monotone([3, 2, 2.5], "decreasing")
    assert C.monotone([3, 2, 2.05], "decreasing", tol=0.1)
    assert C.spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert C.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        C.monotone([1, 2], "up")


def test_fmt():
    assert C.fmt(0.0123456) == "0.0123" and C.fmt(None) == "n/a" and C.fmt(float("nan")) == "n/a"
    assert C.fmt(4096.0, "d") == "4096"


# --- Section 5.3: partition averages of the MLE variances ---------------------------------------------
class _ConstantModel(torch.nn.Module):
    """Deterministic encoder, decoder = a fixed image: the residuals are known exactly."""

    def __init__(self, image):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.image = image

    def encode(self, x):
        from vaebook.models import Posterior

        return Posterior(torch.zeros(x.shape[0], 2), None)

    def decode(self, z):
        return self.image.expand(z.shape[0], *self.image.shape)


def test_partition_estimates_equal_each_shapes_mle_averaged():
    from vaebook.data import partition_masks
    from vaebook.experiments import noise_variance as nv
    from vaebook.variance import build_variance

    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 28, 28, generator=g)
    labels = torch.arange(12) % 10
    image = torch.rand(1, 28, 28, generator=g)
    est = nv.partition_estimates(_ConstantModel(image), x, labels, batch_size=5)
    r2 = ((x - image) ** 2).double().unsqueeze(0)  # S=1 × B × C × H × W
    masks = partition_masks(labels)
    shape = (1, 28, 28)
    iso_i = build_variance("iso-i", shape).mle(r2)
    assert nv.column_value(est, ("SU", "SL", "BU", "BL")) == pytest.approx(float(iso_i), rel=1e-12)
    diag_i = build_variance("diag-i", shape).mle(r2)  # C×H×W
    assert nv.column_value(est, ("SU", "BU")) == pytest.approx(float(diag_i[:, :14].mean()), rel=1e-12)
    iso_d = build_variance("iso-d", shape).mle(r2)  # B
    small = labels <= 4
    assert nv.column_value(est, ("SU", "SL")) == pytest.approx(float(iso_d[small].mean()), rel=1e-12)
    diag_d = build_variance("diag-d", shape).mle(r2)  # B×C×H×W
    assert est["BL"] == pytest.approx(float(diag_d[masks["BL"]].mean()), rel=1e-12)


def test_expected_values_and_trend_direction():
    from vaebook.experiments import noise_variance as nv

    counts = {"SU": 100, "SL": 100, "BU": 300, "BL": 300}
    clean = {k: 0.007 for k in counts}
    # spatial pattern: upper halves noisy; the Iso-I column mixes 400 noisy of 800 pixels
    assert nv.expected_value(("SU", "SL", "BU", "BL"), ("SU", "BU"), 0.1, clean, counts) == pytest.approx(0.057)
    assert nv.expected_value(("SU",), ("SU",), 0.1, clean, counts) == pytest.approx(0.107)
    assert nv.expected_value(("SL", "BL"), ("SU", "BU"), 0.1, clean, counts) == pytest.approx(0.007)
    assert nv._trend(0.09, ("SU", "BU"), ("SU", "BU"), 0.1, counts)[0] is True
    assert nv._trend(0.09, ("SL", "BL"), ("SU", "BU"), 0.1, counts)[0] is False
    assert nv._trend(0.05, ("SU", "SL", "BU", "BL"), ("SU", "BU"), 0.1, counts) is None  # half-half: no direction


# --- Section 4: cell-by-cell comparison ------------------------------------------------------------------
def test_smoothness_compare_trend_and_collapse_rules():
    from vaebook.experiments import smoothness as sm

    key = [0.0, -0.3, -0.6, -1.0]
    paper = pd.DataFrame({"log10_sigma_x2": key, "kl": [0.0, 10.0, 15.0, 20.0], "mi": [0.03, 15.0, 30.0, 50.0],
                          "els": [1e-3, 5.0, 8.0, 10.0], "mse": [52.0, 20.0, 15.0, 12.0]})
    ours = pd.DataFrame({"log10_sigma_x2": key, "kl": [0.2, 3.0, 3.5, 4.0], "mi": [2.0, 5.0, 5.5, 6.0],
                         "els": [9.0, 5.0, 3.0, 1.0], "mse": [20.0, 19.0, 17.0, 13.0]})
    t = sm.compare(paper, ours, "log10_sigma_x2", {"kl": "kl", "mi": "mi", "els": "els", "mse": "mse"},
                   collapse_rows=(0.0,), mi_cap=math.log(2000))
    v = {(r.quantity, r.log10_sigma_x2): r.verdict for r in t.itertuples()}
    assert v[("kl", 0.0)] == "match"  # 0.2 nats within the ±0.5 collapse tolerance
    assert v[("mi", 0.0)] == "differs"  # collapse row: the trend can not excuse a missing collapse
    assert v[("mse", 0.0)] == "differs"  # ours did not reach the mean image; the column's trend does not excuse it
    assert v[("kl", -1.0)] == "trend holds" and v[("mi", -1.0)] == "trend holds"  # same ranks, other values
    assert v[("mse", -0.6)] == "trend holds" and v[("mse", -0.3)] == "match"
    assert v[("els", -0.3)] == "match" and v[("els", -1.0)] == "differs"  # reversed column
    mi_reason = t[(t.quantity == "mi") & (t.log10_sigma_x2 == -1.0)].reason.iloc[0]
    assert "exceeds ln 10,000" in mi_reason
    assert set(t["verdict"]) <= set(C.VERDICTS)
    # the deterministic encoder does not collapse: its collapse-row cell is excused by the column's trend
    t = sm.compare(paper.assign(det_mse=[5.9, 5.7, 5.4, 5.3]), ours.assign(det_mse=[14.0, 13.0, 12.5, 12.0]),
                   "log10_sigma_x2", {"det_mse": "det_mse"}, collapse_rows=(0.0,))
    assert set(t.verdict) == {"trend holds"}


def test_smoothness_compare_collapse_without_kl_collapse():
    """Table E.8: the paper's collapsed rows keep KL ≈ 27 nats; they are compared by value, not to 0,
    and the collapse row does not enter the trend of the other rows."""
    from vaebook.experiments import smoothness as sm

    key = [1.0, 0.5, 0.0, -0.5, -1.0]
    paper = pd.DataFrame({"log10_sigma_z2": key, "kl": [26.8, 132.0, 112.0, 88.0, 66.0]})
    ours = pd.DataFrame({"log10_sigma_z2": key, "kl": [97.0, 73.0, 61.0, 46.0, 33.0]})
    t = sm.compare(paper, ours, "log10_sigma_z2", {"kl": "kl"}, collapse_rows=(1.0,))
    v = {r.log10_sigma_z2: (r.verdict, r.reason) for r in t.itertuples()}
    assert v[1.0][0] == "differs" and "≈ 0" not in v[1.0][1]
    assert all(v[k][0] == "trend holds" for k in key[1:])  # ρ = 1 over the non-collapse rows
    ours_flat = ours.assign(kl=[97.0, 30.0, 30.0, 30.0, 30.0])
    t = sm.compare(paper, ours_flat, "log10_sigma_z2", {"kl": "kl"}, collapse_rows=(1.0,))
    assert set(t.verdict) == {"differs"}  # a constant column has no trend
    near = ours.assign(kl=[28.0, 73.0, 61.0, 46.0, 33.0])
    t = sm.compare(paper, near, "log10_sigma_z2", {"kl": "kl"}, collapse_rows=(1.0,))
    assert t.verdict.iloc[0] == "match"  # 28 vs 26.8 is within 10 %


def test_sigma_z2_gets_its_own_learning_rate():
    from vaebook.experiments import smoothness as sm
    from vaebook.models import build_model
    from vaebook.train import TrainConfig, Trainer

    m = sm._with_sigma_z2_lr(build_model("section4-vae", "d1", sigma_x2=0.5, sigma_z2="learned"), 30.0)
    tr = Trainer(m, torch.rand(64, 1, 28, 28), TrainConfig(epochs=1, lr=1e-3, device="cpu"))
    groups = tr.opt.param_groups
    assert len(groups) == 2
    sz = [g for g in groups if any(p is m.log_sigma_z2 for p in g["params"])]
    assert len(sz) == 1 and len(sz[0]["params"]) == 1 and sz[0]["lr"] == pytest.approx(3e-2)
    n_rest = sum(len(g["params"]) for g in groups if g is not sz[0])
    assert n_rest == len(list(m.parameters())) - 1
    det = build_model("section4-vae", "d1", sigma_x2=0.5, sigma_z2=0.0)
    assert not hasattr(sm._with_sigma_z2_lr(det, 30.0), "param_groups")  # no σz² parameter to speed up
