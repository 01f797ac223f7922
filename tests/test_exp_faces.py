"""The faces page's rules (:mod:`vaebook.experiments._faces_claims`): each claim on a table where it holds and one where
it fails, the fates' guard, the scale line's arithmetic, the parameters' errors and the figures' input checks."""
from types import SimpleNamespace

import numpy as np
import pytest

from vaebook.experiments import _faces_claims as fc
from vaebook.experiments._faces_figures import recon_grid, sigma2_map
from vaebook.experiments.faces import EXPERIMENT
from vaebook.lab.params import ParameterError

N = 200


def record(row, mse, sharp, fid, seed=0, reason="", fail=False, rng=None):
    rng = rng or np.random.default_rng(hash((row, seed)) % 2**32)
    base = np.random.default_rng(seed).normal(0, 5, N)  # per-face difficulty shared by every model: a paired design
    r = {"row": row, "seed": seed, "reason": reason, "fate": "failed" if fail else "input-dependent",
         "per_image_mse": list(mse + base + rng.normal(0, 1, N)), "mse": float(mse + base.mean()),
         "per_image_sharpness": list(sharp + rng.normal(0, 0.02, N)),
         "fid": fid, "fid_sd": 1.0, "fid_boot": list(fid + np.random.default_rng(seed + 7).normal(0, 3, 50)
                                                      + rng.normal(0, 0.5, 50)),
         "kid": 0.05, "sigma2": {"mean": 1.0, "min": 1.0, "max": 1.0, "map": None}, "plateau": {"verdict": "flat"},
         "train_s": 60.0}
    return r


def result(recs, tr_c=500.0, generated=False):
    st = {"train": {"max_steps": 300, "batch_size": 64}, "n_train": 9028, "n_test": N, "seeds": [0],
          "fid_samples": 300, "fid_dims": 2048, "fid_bootstrap": 50, "tr_c_test": tr_c, "generated": generated,
          "floor": {"fid": 20.0}}
    return SimpleNamespace(metrics={"records": {f"{r['row']}_s{r['seed']}": r for r in recs}, "settings": st,
                                    "rows": {"vae": {"label": "σx² = 1"}, "iso-i": {"label": "Iso-I"},
                                             "diag-i": {"label": "Diag-I"}}},
                           is_smoke=False, label="test run")


def statuses(res):
    return [c["status"] for c in fc.claims(res)]


def test_every_claim_holds_on_a_table_shaped_like_the_paper():
    # the paper's CelebA-64 column: MSE 121.91 vs 62.02 / 63.51, FID 55.46 vs 82.20 / 87.44
    res = result([record("vae", 121.9, 0.3, 55.5), record("iso-i", 62.0, 0.6, 82.2), record("diag-i", 63.5, 0.6, 87.4)])
    assert statuses(res) == ["holds", "holds", "holds"]


def test_every_claim_fails_when_sigma_one_is_the_better_model():
    res = result([record("vae", 60.0, 0.7, 90.0), record("iso-i", 100.0, 0.4, 50.0), record("diag-i", 110.0, 0.4, 52.0)])
    assert statuses(res) == ["not shown at this scale"] * 3


def test_a_gain_under_the_ten_percent_margin_is_a_tie_not_a_yes():
    # the MLE rows are 5 % better: below 1 − MSE_MARGIN = 10 %, so the MSE claim is not shown either way
    res = result([record("vae", 100.0, 0.5, 60), record("iso-i", 95.0, 0.5, 60), record("diag-i", 95.0, 0.5, 60)])
    reads = [fc.reading(fc.frame(res), r, "mse")[0] for r in fc.MLE_ROWS]
    assert reads == ["tie", "tie"] and statuses(res)[0] == "inconclusive"


def test_sharpness_gain_under_the_margin_is_a_tie():
    # 5 % more detail: a real difference, but under the 10 % bound (SHARP_MARGIN), so not a yes
    res = result([record("vae", 120.0, 0.40, 55), record("iso-i", 60.0, 0.42, 80), record("diag-i", 60.0, 0.42, 80)])
    df = fc.frame(res)
    assert fc.test(df, "iso-i", "sharpness")["lo"] > 0
    assert [fc.reading(df, r, "sharpness")[0] for r in fc.MLE_ROWS] == ["tie", "tie"]
    assert statuses(res)[2] == "inconclusive"


def test_records_are_ordered_reference_first():
    res = result([record("diag-i", 63.5, 0.6, 87.4), record("iso-i", 62.0, 0.6, 82.2), record("vae", 121.9, 0.3, 55.5)])
    assert list(fc.frame(res)["row"]) == ["vae", "iso-i", "diag-i"]


def test_one_row_yes_the_other_tie_is_partly():
    res = result([record("vae", 120.0, 0.3, 55), record("iso-i", 60.0, 0.6, 80), record("diag-i", 118.0, 0.3, 55.2)])
    assert statuses(res)[0] == "partly"


def test_paired_difference_equals_the_hand_computation():
    res = result([record("vae", 120.0, 0.3, 55), record("iso-i", 60.0, 0.6, 80), record("diag-i", 63.0, 0.6, 85)])
    df = fc.frame(res)
    a = np.array(df.set_index("row").loc["iso-i", "per_image_mse"])
    b = np.array(df.set_index("row").loc["vae", "per_image_mse"])
    t = fc.test(df, "iso-i", "mse")
    d = a - b
    assert t["diff"] == pytest.approx(d.mean())
    assert t["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(N))
    t90 = fc.test(df, "iso-i", "mse", fc.MSE_MARGIN)
    assert t90["diff"] == pytest.approx((a - fc.MSE_MARGIN * b).mean())


def test_a_model_worse_than_the_constant_output_is_not_evidence():
    # σx² = 1 collapsed to the mean face: its MSE reaches tr C, so no comparison is made with it
    res = result([record("vae", 600.0, 0.0, 55), record("iso-i", 62.0, 0.6, 82), record("diag-i", 63.0, 0.6, 87)],
                 tr_c=500.0)
    df = fc.frame(res)
    assert df.set_index("row").loc["vae", "fate"] == "worse than constant"
    cs = fc.claims(res)
    assert [c["status"] for c in cs] == ["not shown at this scale"] * 3
    assert "worse than constant" in cs[0]["evidence"]


def test_constant_and_failed_fates():
    assert fc.fate({"reason": "reconstructions do not depend on the input"}, 500.0) == "constant"
    assert fc.fate({"fate": "failed"}, 500.0) == "failed"
    assert fc.fate({"mse": 499.0}, 500.0) == "trained"


def test_stand_in_images_and_smoke_are_not_run():
    recs = [record("vae", 121.9, 0.3, 55.5), record("iso-i", 62.0, 0.6, 82.2), record("diag-i", 63.5, 0.6, 87.4)]
    assert set(statuses(result(recs, generated=True))) == {"not run"}
    res = result(recs)
    res.is_smoke = True
    assert set(statuses(res)) == {"not run"}


def test_scale_line_states_the_fraction_of_the_papers_steps():
    res = result([record("vae", 1, 1, 1)])
    assert fc.PAPER_STEPS == 70 * 2544
    s = fc.scale(res)
    assert "300 of the paper's 178,080 steps (0.17 %) of batch 64 on 9,028 training images" in s
    assert "1 seed (the intervals cover the test faces" in s


def test_paper_values_are_read_from_table4_csv():
    assert fc.PAPER == {"vae": {"mse": 121.91, "fid": 55.46}, "iso-i": {"mse": 62.02, "fid": 82.20},
                        "diag-i": {"mse": 63.51, "fid": 87.44}}


def test_status_rule_table():
    assert fc.status(["yes", "yes"]) == "holds"
    assert fc.status(["yes", "tie"]) == "partly"
    assert fc.status(["tie", "tie"]) == "inconclusive"
    assert fc.status(["yes", "no"]) == "not shown at this scale"
    assert fc.status([None, None]) == "not run"


@pytest.mark.parametrize("bad,word", [({"epochs": 3}, "epochs"), ({"n_train": 8, "batch_size": 64}, "n_train"),
                                      ({"rows": ["diag-d"]}, "rows")])
def test_bad_parameters_are_named(bad, word):
    with pytest.raises(ParameterError, match=word):
        EXPERIMENT.resolve({"preset": "cpu", **bad})


def test_cpu_jobs_use_the_papers_celeba_optimiser_capped():
    p = EXPERIMENT.resolve({"preset": "cpu"})
    j = EXPERIMENT.job("diag-i", p, 0)
    t = j.train_dict
    assert (j.model, j.dataset, t["lr"], t["batch_size"], t["max_steps"]) == ("mle-diag-i", "celeba64", 2e-4, 64, 300)


def test_figures_refuse_bad_input():
    with pytest.raises(ValueError, match="sigma2_map"):
        sigma2_map([[1.0, float("nan")]])
    with pytest.raises(ValueError, match="C×H×W"):
        recon_grid(np.zeros((2, 8, 8)), {"vae": {"recon": np.zeros((2, 8, 8))}}, {})
