"""The low-rank Σx page (vaebook.experiments.lowrank, issue #16): its zoo entries are Table 4's, its reading of the
hypothesis follows the numbers, the dequantised bound and the whitened-residual calibration, and its glue keys.
(The page runs end to end at smoke in `make test`; nothing is trained here.)"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch

from vaebook.experiments import _lowrank_claims as LC
from vaebook.experiments import _section6 as scale
from vaebook.experiments.lowrank import (BASELINES, DEFAULT_MODELS, EXPERIMENT, calibration, comparisons, dequantise,
                                         grad_energy, reading)
from vaebook.lab.page import get_experiment
from vaebook.models.vae import GaussianVAE

REPO = Path(__file__).resolve().parents[1]


def test_models_are_table4s_zoo_entries_at_the_cpu_scale():
    p = EXPERIMENT.resolve({"preset": "cpu"})
    assert p["models"] == list(DEFAULT_MODELS) and p["datasets"] == ["mnist"] and p["iwae_k"] == 500
    gen = get_experiment("generation").resolve({"preset": "cpu"})
    for m in BASELINES:  # the very models the generation page trains: same Job, same cache entry
        assert scale.job(m, "mnist", p) == scale.job(m, "mnist", gen)
    j = scale.job("lowrank-r64", "mnist", p)
    assert j.train_dict["max_steps"] == 600 and j.train_dict["batch_size"] == 64 and j.variant == ()
    assert EXPERIMENT.resolve({"preset": "smoke"})["models"] == ["mle-iso-i", "mle-diag-i", "lowrank-r4"]


def _per_image(n=200, seed=0, d_nll=-5.0, d_mse=3.0, d_grad=-0.5):
    g = torch.Generator().manual_seed(seed)
    base = {k: 100 + torch.rand(n, generator=g, dtype=torch.float64) for k in ("nll_deq", "mse", "grad")}
    noise = lambda: 0.1 * torch.randn(n, generator=g, dtype=torch.float64)  # noqa: E731
    other = {k: v + 1.0 for k, v in base.items()}
    low = {"nll_deq": base["nll_deq"] + d_nll + noise(), "mse": base["mse"] + d_mse + noise(),
           "grad": base["grad"] + d_grad + noise()}
    return {"mle-iso-i": base, "mle-diag-i": other, "lowrank-r4": low}


def test_reading_follows_the_numbers():
    holds = reading(comparisons(_per_image(), {}))
    assert holds["per_rank"][4] == {"nll_lower": True, "smoother": True, "evidence": True,
                                    "baselines": list(BASELINES)}
    assert "both halves happened at r ∈ {4}" in holds["lr_outcome"]
    worse = reading(comparisons(_per_image(d_nll=+5.0), {}))
    assert worse["per_rank"][4]["nll_lower"] is False and worse["per_rank"][4]["smoother"] is True
    assert "only one half happened" in worse["lr_outcome"] and "at no rank of {4}" in worse["lr_likelihood"] and "{none}" not in worse["lr_outcome"]
    tie = reading(comparisons(_per_image(d_nll=0.0, d_mse=0.0, d_grad=0.0), {}))
    assert "neither half happened" in tie["lr_outcome"]
    assert holds["lr_outcome"] != worse["lr_outcome"] != tie["lr_outcome"]
    assert reading(comparisons({"mle-iso-i": _per_image()["mle-iso-i"]}, {})) == {}


def test_dequantised_images():
    x = torch.randint(0, 256, (4, 1, 28, 28)).float() / 255
    y = dequantise(x, 0)
    assert ((y - x) >= 0).all() and ((y - x) < 1 / 256).all()
    assert torch.equal(y, dequantise(x, 0)) and not torch.equal(y, dequantise(x, 1))
    assert torch.equal(dequantise((x * 255).round().to(torch.uint8), 0), y)
    assert torch.allclose(grad_energy(torch.ones(2, 1, 5, 5)), torch.zeros(2))


def test_calibration_of_rank_zero_equals_iso_i():
    torch.manual_seed(0)
    iso = GaussianVAE("d1", variance="iso-i", mode="mle").eval()
    low = GaussianVAE("d1", variance="lowrank-r0", mode="mle").eval()
    state = {k: v for k, v in iso.state_dict().items() if not k.startswith("variance.")}
    low.load_state_dict({**low.state_dict(), **copy.deepcopy(state)})
    iso.variance.running_sigma2.fill_(0.04)
    low.variance.running_sigma2[:, 0] = 0.04
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    a, b = calibration(iso, x, 4, seed=3), calibration(low, x, 4, seed=3)
    for k in a:
        assert abs(a[k] - b[k]) < 1e-5 * max(1.0, abs(a[k])), (k, a, b)
    assert abs(a["white_lag1"] - a["raw_lag1"]) < 1e-6  # an isotropic Σx does not change the correlation


def test_notebook_glue_keys_are_all_glued():
    nb = nbformat.read(REPO / "notebooks" / "lowrank.ipynb", as_version=4)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    keys = set(re.findall(r"\{glue:text\}`([^`]+)`", prose))
    assert keys and keys <= set(EXPERIMENT.summary(None))


# --- the worse-than-a-constant guard and the claims (issue #26) -------------------------------------------------
class _Res:
    def __init__(self, comps, values, tr_c=None, n_test=200, smoke=False):
        self.tables = {"table_lowrank_hypothesis": comps}
        settings = {"n_test": n_test, "n_train": 60_000, "iwae_k": 500, "train": {"max_steps": 600, "batch_size": 64}}
        if tr_c is not None:
            settings["tr_c_test"] = tr_c
        self.metrics, self.is_smoke = {"values": values, "settings": {"mnist": settings}}, smoke
        self.provenance, self.label = {"parameters": {"seed": 0}}, "constructed"


def _values(low_mse=10.0):
    return {"mle-iso-i": {"mse": 9.0}, "mle-diag-i": {"mse": 11.0}, "lowrank-r4": {"mse": low_mse}}


def _status(res):
    return [c["status"] for c in EXPERIMENT.claims(res)]


def test_total_variance_is_the_mse_of_the_best_constant_output():
    x = torch.rand(50, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    mean_mse = float((x - x.mean(0)).pow(2).flatten(1).sum(1).mean())
    assert LC.total_variance(x) == pytest.approx(mean_mse, rel=1e-6)
    other = float((x - 0.5).pow(2).flatten(1).sum(1).mean())  # any other constant does worse
    assert other > LC.total_variance(x)
    assert LC.total_variance((x * 255).round().to(torch.uint8)) == pytest.approx(LC.total_variance(x), rel=1e-3)


def test_the_guard_fails_a_model_not_below_tr_c_and_passes_one_below():
    assert LC.worse_than_constant(56.0, 52.75).startswith("did not train: worse than a constant output")
    assert LC.worse_than_constant(52.75, 52.75)  # not below: equal is no better than the mean image
    assert LC.worse_than_constant(8.6, 52.75) == ""
    assert LC.worse_than_constant(56.0, None) == ""  # unknown tr C: nothing to guard with
    assert LC.guard(_values(low_mse=60.0), 50.0) == {"lowrank-r4": LC.worse_than_constant(60.0, 50.0)}
    assert LC.guard(_values(), 50.0) == {}
    table = pd.DataFrame({"row": ["mle-iso-i", "lowrank-r4"], "metric": ["mse", "mse"], "ours": [9.0, 60.0],
                          "verdict": ["ours only", "ours only"], "reason": ["", ""]})
    comps = comparisons(_per_image(), {})
    t = LC.apply_guard({"table_lowrank": table, "table_lowrank_hypothesis": comps}, LC.guard(_values(60.0), 50.0))
    assert t["table_lowrank"]["verdict"].tolist() == ["ours only", "did not train"]
    assert t["table_lowrank_hypothesis"]["evidence"].str.startswith("did not train: worse than a constant").all()


def test_claims_hold_fail_and_tie_by_the_paired_differences():
    holds = _Res(comparisons(_per_image(), {}), _values(), tr_c=50.0)
    assert _status(holds) == ["holds", "holds", "holds"]
    c = EXPERIMENT.claims(holds)
    assert all(x["section"] == LC.SECTION == "beyond the paper (low-rank Σx)" for x in c)
    assert "r = 4: yes" in c[0]["evidence"] and "± " in c[0]["evidence"] and "not training seeds" in c[0]["evidence"]
    worse = _Res(comparisons(_per_image(d_nll=+5.0), {}), _values(), tr_c=50.0)
    assert _status(worse) == ["not shown at this scale", "holds", "not shown at this scale"]
    rough = _Res(comparisons(_per_image(d_mse=-3.0), {}), _values(), tr_c=50.0)
    assert _status(rough)[1] == "not shown at this scale"
    # no clear NLL difference from Iso-I (and lower than Diag-I's, which is 1 higher): a tie, so inconclusive; the
    # MSE is clearly lower than Diag-I's: not smoother
    tie = _Res(comparisons(_per_image(d_nll=0.0, d_mse=0.0, d_grad=0.0), {}), _values(), tr_c=50.0)
    assert _status(tie) == ["inconclusive", "not shown at this scale", "not shown at this scale"]
    assert _status(None) == ["not run"] * 3
    assert set(_status(_Res(holds.tables["table_lowrank_hypothesis"], _values(), 50.0, smoke=True))) == {"not run"}


def test_a_model_worse_than_a_constant_is_never_evidence():
    comps = comparisons(_per_image(), {})
    bad = _Res(comps, _values(low_mse=60.0), tr_c=50.0)
    c = EXPERIMENT.claims(bad)
    assert [x["status"] for x in c] == ["not shown at this scale"] * 3  # the only rank is not evidence
    assert "r = 4: not evidence" in c[1]["evidence"] and "worse than a constant output" in c[1]["evidence"]
    h = LC.reading(comps, LC.guard(_values(low_mse=60.0), 50.0))
    assert h["per_rank"][4]["evidence"] is False and "no rank is evidence" in h["lr_outcome"]
    # a baseline worse than a constant leaves the comparison with the other
    base = _Res(comps, {**_values(), "mle-diag-i": {"mse": 70.0}}, tr_c=50.0)
    assert _status(base) == ["holds", "holds", "holds"]
    assert "(baseline not evidence)" in EXPERIMENT.claims(base)[0]["evidence"]


def test_without_tr_c_no_claim_holds():
    res = _Res(comparisons(_per_image(), {}), _values(), tr_c=None, n_test=None)
    assert LC.trace_c(res)[0] is None
    c = EXPERIMENT.claims(res)
    assert [x["status"] for x in c] == ["inconclusive"] * 3 and "guard not read" in c[0]["evidence"]


def test_committed_cpu_run_guards_every_model_not_below_tr_c(data_root):
    res = EXPERIMENT.find(REPO / "results")
    if res is None or res.preset != "cpu":
        pytest.skip("no committed cpu lowrank results")
    from vaebook.data.mnist import load_mnist

    st = res.metrics["settings"]["mnist"]
    x, _ = load_mnist("test", data_root, download=False)
    tr_c = LC.total_variance(x[:st["n_test"]])
    assert LC.trace_c(res)[0] == pytest.approx(tr_c)
    bad = {m for m, v in res.metrics["values"].items() if v["mse"] >= tr_c}
    t = res.tables["table_lowrank"]
    assert set(t.loc[t["verdict"] == "did not train", "row"]) == bad
    comps = res.tables["table_lowrank_hypothesis"]
    assert (comps.loc[comps["model"].isin(bad), "evidence"] != "yes").all()
    assert (comps.loc[~comps["model"].isin(bad) & ~comps["baseline"].isin(bad), "evidence"] == "yes").all()
    cl = EXPERIMENT.claims(res)
    assert len(cl) == 3 and all(c["section"] == LC.SECTION for c in cl)
    for m in bad:
        assert f"r = {m.rsplit('-r', 1)[1]}: not evidence" in cl[1]["evidence"]
    from vaebook.lab.status import experiment_claims

    assert len(experiment_claims("lowrank", EXPERIMENT, res)) == 3  # on the status page


class _Run:
    def __init__(self):
        self.tables, self.metrics, self.figures = {}, None, []

    def write_table(self, name, t):
        self.tables[name] = t.copy()

    def write_metrics(self, m):
        self.metrics = m

    def save_figure(self, fig, name):
        import matplotlib.pyplot as plt

        self.figures.append(name)
        plt.close(fig)


def test_report_records_tr_c_and_writes_the_guarded_tables(data_root):
    """report() on made-up unit results (nothing trained): tr C of the run's test images is recorded, and the model
    whose MSE is not below it reads did not train in every table."""
    from vaebook import lab

    p = EXPERIMENT.resolve({"preset": "smoke", "data_root": str(data_root), "device": "cpu"})
    ctx = lab.Context(EXPERIMENT, p, log=lambda *_: None)
    data = scale.load(ctx, "mnist")
    tr_c = LC.total_variance(data.test)
    per = _per_image(n=len(data.test))
    mse = {"mle-iso-i": 0.1 * tr_c, "mle-diag-i": 0.2 * tr_c, "lowrank-r4": 1.1 * tr_c}
    results = {}
    for m in p["models"]:
        vals = {k: 1.0 for k in ("grad_ratio", "nll_deq", "bpd", "white_var", "white_lag1", "raw_lag1",
                                 "s_per_epoch", "fid_prior", "kid_prior", "fid_gmm10", "kid_gmm10")}
        vals["mse"] = mse[m]
        results[m] = {"model": m, "from_cache": True, "values": vals, "per_image": per[m], "kid_std": {},
                      "images": {"recon": data.test[:2]}, "variance": {"name": "x", "sigma2": 0.01},
                      "rows": [{"row": m, "dataset": "mnist", "metric": k, "ours": v} for k, v in vals.items()]}
    run = _Run()
    EXPERIMENT.report(ctx, results, run)
    st = run.metrics["settings"]["mnist"]
    assert st["tr_c_test"] == pytest.approx(tr_c) and set(st["worse_than_constant"]) == {"lowrank-r4"}
    t = run.tables["table_lowrank"]
    assert set(t.loc[t["verdict"] == "did not train", "row"]) == {"lowrank-r4"}
    assert (run.tables["table_lowrank_hypothesis"]["evidence"] != "yes").all()
    assert "no rank is evidence" in run.metrics["hypothesis"]["lr_outcome"]
