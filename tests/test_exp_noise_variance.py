"""Section 5.3 / Table 3 (vaebook.experiments.noise_variance): the partition averages of the MLE variances,
the verdict rules, the parameters, and a smoke run end to end through the one run loop."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from vaebook import lab
from vaebook.experiments import noise_variance as nv
from vaebook.lab.compare import VERDICTS

EXP = nv.EXPERIMENT
REPO = Path(__file__).resolve().parents[1]
TABLE3_COLUMNS = ["row", "dataset", "metric", "noise_pattern", "s_x2", "model", "paper", "ours", "reference_0.007",
                  "reference_ours", "verdict", "reason", "printed"]


# --- partition averages of the MLE variances --------------------------------------------------------------
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


def _mle(shape: str, r: torch.Tensor) -> torch.Tensor:
    """The variance module's MLE Σ̂x from residuals r (S×B×C×H×W) through its public protocol."""
    from vaebook.variance import build_variance

    v = build_variance(shape, tuple(r.shape[-3:]))
    return v.estimate(r) if hasattr(v, "estimate") else v.mle(r)


def test_partition_estimates_equal_each_shapes_mle_averaged():
    from vaebook.data import partition_masks

    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 28, 28, generator=g)
    labels = torch.arange(12) % 10
    image = torch.rand(1, 28, 28, generator=g)
    est = nv.partition_estimates(_ConstantModel(image), x, labels, batch_size=5)
    r = (x - image).double().unsqueeze(0)  # S=1 × B × C × H × W (the estimates square in float32: rel 1e-6)
    masks = partition_masks(labels)
    iso_i = _mle("iso-i", r)
    assert nv.column_value(est, ("SU", "SL", "BU", "BL")) == pytest.approx(float(iso_i), rel=1e-6)
    diag_i = _mle("diag-i", r)  # C×H×W
    assert nv.column_value(est, ("SU", "BU")) == pytest.approx(float(diag_i[:, :14].mean()), rel=1e-6)
    iso_d = _mle("iso-d", r)  # B
    small = labels <= 4
    assert nv.column_value(est, ("SU", "SL")) == pytest.approx(float(iso_d[small].mean()), rel=1e-6)
    diag_d = _mle("diag-d", r)  # B×C×H×W
    assert est["BL"] == pytest.approx(float(diag_d[masks["BL"]].mean()), rel=1e-6)


def test_partition_estimates_accept_uint8_images():
    x = (torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 255).round().to(torch.uint8)
    est = nv.partition_estimates(_ConstantModel(torch.zeros(1, 28, 28)), x, torch.arange(6))
    r2 = (x.float() / 255) ** 2
    assert nv.column_value(est, nv.PARTITIONS) == pytest.approx(float(r2.double().mean()), rel=1e-6)


def test_expected_values_and_trend_direction():
    counts = {"SU": 100, "SL": 100, "BU": 300, "BL": 300}
    clean = {k: 0.007 for k in counts}
    # spatial pattern: upper halves noisy; the Iso-I column mixes 400 noisy of 800 pixels
    assert nv.expected_value(("SU", "SL", "BU", "BL"), ("SU", "BU"), 0.1, clean, counts) == pytest.approx(0.057)
    assert nv.expected_value(("SU",), ("SU",), 0.1, clean, counts) == pytest.approx(0.107)
    assert nv.expected_value(("SL", "BL"), ("SU", "BU"), 0.1, clean, counts) == pytest.approx(0.007)
    assert nv._trend(0.09, ("SU", "BU"), ("SU", "BU"), 0.1, counts)[0] is True
    assert nv._trend(0.09, ("SL", "BL"), ("SU", "BU"), 0.1, counts)[0] is False
    assert nv._trend(0.05, ("SU", "SL", "BU", "BL"), ("SU", "BU"), 0.1, counts) is None  # half-half: no direction


# --- the comparison with Table 3 ----------------------------------------------------------------------------
COUNTS = {"SU": 1000, "SL": 1000, "BU": 1000, "BL": 1000}


def _unit(pattern, s2, shape, parts=None, failed=""):
    r = {"kind": "noisy", "pattern": pattern, "s_x2": s2, "shape": shape, "failed": failed, "final_loss": None}
    if not failed:
        r["estimates"] = {**parts, "counts": COUNTS}
    return r


def test_table3_verdicts_did_not_train_and_not_run():
    # spatial, s_x² = 0.1 (paper: Diag-D SU 0.11, SL 0.0065, BU 0.11, BL 0.007)
    results = {
        "dd": _unit("spatial", 0.1, "diag-d", {"SU": 0.105, "SL": 0.05, "BU": 0.3, "BL": 0.3}),
        "ii": _unit("spatial", 0.1, "iso-i", {"SU": 0.2, "SL": 0.2, "BU": 0.2, "BL": 0.2}),
        "di": _unit("spatial", 0.1, "diag-i", failed="did not train: the loss became non-finite (step 3)"),
    }
    t = nv.table3(results, None, rel_tol=0.1)
    assert list(t.columns[:len(TABLE3_COLUMNS)]) == TABLE3_COLUMNS
    assert len(t) == 72  # every cell of the paper's Table 3 is a row
    cell = t.set_index(["row", "metric"])
    key = nv.row_key("spatial", 0.1)
    assert cell.loc[(key, "diagD_SU"), "verdict"] == "match"  # 0.105 within 10 % of 0.11
    assert cell.loc[(key, "diagD_SL"), "verdict"] == "trend holds"  # 0.05: closer to 0.007 than to 0.107
    assert cell.loc[(key, "diagD_BU"), "verdict"] == "trend holds"  # 0.3: closer to 0.107 than to 0.007
    assert cell.loc[(key, "diagD_BL"), "verdict"] == "differs"  # 0.3: closer to the flipped reference
    assert cell.loc[(key, "isoI_SU+SL+BU+BL"), "verdict"] == "differs"  # half-half column: no direction
    assert "trend does not hold" in cell.loc[(key, "diagD_BL"), "reason"]
    assert "0.007" in cell.loc[(key, "diagD_SL"), "reason"]  # the reference is in the reason
    for m in ("diagI_SU+BU", "diagI_SL+BL"):
        assert cell.loc[(key, m), "verdict"] == "did not train"
        assert cell.loc[(key, m), "reason"].startswith("did not train")
        assert cell.loc[(key, m), "model"] == "Diag-I"
    other = t[t["row"] != key]
    assert other["verdict"].isna().all() and other["ours"].isna().all()  # paper cells we did not run
    assert set(t["verdict"].dropna()) <= set(VERDICTS)
    assert list(dict.fromkeys(t["noise_pattern"])) == list(nv.PATTERNS)  # the paper's row order
    wide = nv.wide_table(t)
    assert len(wide) == 1 and "diagI_SU+BU" not in wide.columns and wide["diagD_SU"].iloc[0] == pytest.approx(0.105)


def test_our_clean_estimate_is_the_trend_baseline():
    clean = {"SU": 0.1, "SL": 0.1, "BU": 0.1, "BL": 0.1, "counts": COUNTS}
    results = {"dd": _unit("spatial", 0.1, "diag-d", {"SU": 0.19, "SL": 0.12, "BU": 0.21, "BL": 0.11})}
    t = nv.table3(results, clean).set_index(["row", "metric"])
    key = nv.row_key("spatial", 0.1)
    # with a 0.1 clean baseline, 0.12 on a clean partition is closer to 0.1 than to 0.2: the trend holds
    assert t.loc[(key, "diagD_SL"), "verdict"] == "trend holds"
    assert t.loc[(key, "diagD_SL"), "reference_ours"] == pytest.approx(0.1)
    assert "our clean estimate" in t.loc[(key, "diagD_SL"), "reason"]


def test_ours_only_when_the_paper_has_no_such_row():
    t = nv.table3({"ii": _unit("uniform", 0.05, "iso-i", {k: 0.06 for k in nv.PARTITIONS})}, None)
    row = t[t["row"] == nv.row_key("uniform", 0.05)]
    assert len(row) == 1 and row["verdict"].iloc[0] == "ours only"
    assert row["reason"].iloc[0].startswith("not in the paper")


def test_evaluate_reports_a_model_that_did_not_train():
    job = lab.Job.make("mle-iso-i", "noisy-mnist", {"epochs": 1}, variant={"pattern": "spatial", "s2": 0.1})
    unit = lab.Unit.make("spatial_s2-0.1_iso-i", [job], kind="noisy", pattern="spatial", s_x2=0.1, shape="iso-i")
    ctx = lab.Context(EXP, {"preset": "smoke", "seed": 0, "device": "cpu", "data_root": None})
    ctx.models = {job: lab.TrainedModel(job, None, reason="did not train: the loss became non-finite")}
    out = EXP.evaluate(unit, ctx)
    assert out["failed"].startswith("did not train") and "estimates" not in out


# --- parameters --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, match", [
    ({"models": ["iso-x"]}, r"'models\[0\]'.*'iso-i', 'diag-i', 'iso-d', 'diag-d'"),
    ({"patterns": ["diagonal"]}, r"'patterns\[0\]'.*'spatial-conditional'"),
    ({"s_x2": [0.0]}, r"'s_x2\[0\]'.*> 0"),
    ({"s_x2": [2.0]}, r"'s_x2\[0\]'.*<= 1"),
    ({"n_train": 10}, r"'n_train'.*>= 64"),
    ({"n_train": 10**6}, r"'n_train'.*<= 60000"),
    ({"models": []}, r"'models' is an empty list"),
    ({"preset": "large"}, r"'preset'.*'smoke', 'medium', 'full'"),
    ({"epochs": -3}, r"'epochs'.*>= 1"),
])
def test_bad_parameters_name_the_parameter(bad, match):
    with pytest.raises(lab.ParameterError, match=match):
        EXP.resolve({"preset": "smoke", **bad})


def test_wrong_parameter_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(lab.ParameterError, match="'n_train'"):
        lab.run(EXP, {"preset": "smoke", "n_train": 10, "results_dir": str(out), "device": "cpu"})
    assert not out.exists()


def test_presets_and_training_settings():
    from vaebook.data import dataset_spec

    med = EXP.resolve({"preset": "medium"})
    # the committed medium results: 4 patterns × 2 s_x², 3,200 images, 3 epochs, clean reference
    assert med["patterns"] == list(nv.PATTERNS) and med["s_x2"] == [0.01, 0.1] and med["n_train"] == 3200
    assert med["clean_reference"] is True
    assert EXP.train(med, nv.DATASET) == {"epochs": 3, "lr": 1e-3, "batch_size": 64}
    full = EXP.resolve({"preset": "full"})
    assert full["patterns"] == list(nv.PATTERNS) and full["n_train"] is None
    assert EXP.train(full, nv.DATASET)["epochs"] == dataset_spec(nv.DATASET).train["epochs"] == 100  # App. I.1
    assert EXP.train(full, nv.DATASET)["lr"] == 1e-3
    smoke = EXP.resolve({"preset": "smoke", "epochs": 2, "patterns": ["uniform"]})
    assert smoke["patterns"] == ["uniform"] and EXP.train(smoke, nv.DATASET)["epochs"] == 2
    assert EXP.train(smoke, nv.DATASET)["max_steps"] == 2


def test_plan_one_unit_per_model():
    p = EXP.resolve({"preset": "medium"})
    units = EXP.plan(lab.Context(EXP, p))
    assert len(units) == 4 * 2 * 4 + 1 and len({u.id for u in units}) == len(units)
    jobs = [u.jobs[0] for u in units]
    assert all(len(u.jobs) == 1 for u in units) and len(set(jobs)) == len(jobs)
    noisy = [j for j in jobs if j.dataset == "noisy-mnist"]
    assert {j.model for j in noisy} == {"mle-iso-i", "mle-diag-i", "mle-iso-d", "mle-diag-d"}
    assert all(dict(j.variant)["n_train"] == 3200 for j in jobs)
    clean = [j for j in jobs if j.dataset == "mnist"]
    assert [j.model for j in clean] == ["mle-iso-i"]
    assert len(EXP.plan(lab.Context(EXP, EXP.resolve({"preset": "medium", "clean_reference": False})))) == 32


# --- the committed results and a smoke run ------------------------------------------------------------------
def test_committed_results_follow_the_comparison_columns():
    res = EXP.find(REPO / "results")
    if res is None:
        pytest.skip("no committed noise_variance results")
    t = res.tables["table3"]
    assert list(t.columns[:len(TABLE3_COLUMNS)]) == TABLE3_COLUMNS
    assert set(t["verdict"].dropna()) <= set(VERDICTS)
    s = EXP.summary(res)
    assert all(isinstance(v, str) for v in s.values()) and s["nv_verdicts"] != "n/a"


def test_smoke_end_to_end(data_root, tmp_path):
    params = {"preset": "smoke", "results_dir": str(tmp_path), "device": "cpu", "data_root": str(data_root),
              "mode": "compute"}
    r = lab.run(EXP, params, log=lambda *_: None)
    d = r.final_dir
    assert sorted(p.name for p in d.iterdir()) == ["fig_estimates_vs_paper.png", "metrics.json", "ours_table3.csv",
                                                    "provenance.json", "table3.csv"]
    t = pd.read_csv(d / "table3.csv")
    assert list(t.columns) == TABLE3_COLUMNS and len(t) == 72
    ours = t[t["ours"].notna()]
    assert len(ours) == 9 and set(ours["row"]) == {nv.row_key("spatial", 0.1)}  # smoke: spatial, s_x² = 0.1
    assert set(ours["verdict"]) <= set(VERDICTS) and t.loc[t["ours"].isna(), "verdict"].isna().all()
    assert len(pd.read_csv(d / "ours_table3.csv")) == 1
    m = json.loads((d / "metrics.json").read_text())
    assert m["n_train"] == 128 and len(m["records"]) == 5 and math.isfinite(m["clean_estimate_all"])
    s = EXP.summary(lab.load_results(d))
    assert s["nv_diagd_pattern"] == "spatial" and s["nv_n_train"] == "128"
    # a re-run takes the models from the zoo and the estimates from the unit cache
    lines = []
    lab.run(EXP, params, log=lines.append)
    assert not any("training" in s or "1/5" in s for s in lines), lines
