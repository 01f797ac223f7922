"""The collapse question (vaebook.experiments.collapse, issue #15): the collapsed initialisation of Section4VAE, the
outcome rule, the plan (Table 1's zoo jobs), the summary strings and the experiment end to end at smoke (real MNIST;
skipped when the data folder is absent)."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch

from vaebook import lab
from vaebook.experiments import _collapse_claims as cc
from vaebook.experiments import _collapse_page as cp
from vaebook.experiments import collapse as cl
from vaebook.experiments import smoothness as sm
from vaebook.lab.params import ParameterError
from vaebook.metrics.recon import constant_output_reason, kl_per_image, reconstruction_variance
from vaebook.models.vae import Section4VAE
from vaebook.nets import build_nets
from vaebook.theory.collapse import collapse_margin, data_covariance
from vaebook.train import plateau

REPO = Path(__file__).resolve().parents[1]
EXP = cl.EXPERIMENT


def _images(n=12, seed=1):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


# --- the collapsed initialisation ----------------------------------------------------------------------
def test_collapsed_init_has_zero_kl_and_an_output_independent_of_the_input():
    torch.manual_seed(0)
    m = Section4VAE("d1", sigma_x2=1.0, init="collapsed").eval()
    x = _images()
    q = m.encode(x)
    assert torch.equal(q.mean, torch.zeros_like(q.mean)) and torch.equal(q.var, torch.ones_like(q.var))
    assert torch.equal(kl_per_image(m, x), torch.zeros(len(x), dtype=torch.float64))
    with torch.no_grad():
        rec = m.decode(q.mean)
        assert torch.equal(rec, rec[:1].expand_as(rec))  # the same image for every input
        z = torch.randn(7, m.d_z, generator=torch.Generator().manual_seed(2))
        out = m.decode(z)
        assert torch.equal(out, m.decode(torch.zeros_like(z)))  # … and for every code (same batch shape: same kernels)
    rv = reconstruction_variance(m, x)
    assert rv < 1e-12 and constant_output_reason(rv)
    # the random model at the same seed does depend on its input
    torch.manual_seed(0)
    r = Section4VAE("d1", sigma_x2=1.0).eval()
    assert reconstruction_variance(r, x) > 0 and float(kl_per_image(r, x).mean()) > 0


def _neg_elbo(m, x, eps):
    q = m.encode(x)
    z = q.mean + eps * q.var.sqrt()
    return ((m.decode(z) - x) ** 2).flatten(1).sum(1).mean() / 2.0 + q.kl_to_standard_normal().mean()


def test_collapsed_init_is_stationary_in_expectation():
    """Encoder mean head and σz²: zero gradient on every batch; the decoder's first layer: a gradient odd in z
    (ε and −ε give opposite gradients), so zero in expectation over z ~ N(0, I)."""
    torch.manual_seed(0)
    m = Section4VAE("d1", sigma_x2=1.0, init="collapsed")
    x = _images(8)
    eps = torch.randn(8, m.d_z, generator=torch.Generator().manual_seed(3))
    grads = []
    for e in (eps, -eps):
        m.zero_grad()
        _neg_elbo(m, x, e).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    head, first = "encoder.7", "decoder.0"
    for g in grads:
        assert torch.equal(g[f"{head}.weight"], torch.zeros_like(g[f"{head}.weight"]))
        assert torch.equal(g[f"{head}.bias"], torch.zeros_like(g[f"{head}.bias"]))
        assert float(g["log_sigma_z2"]) == 0.0
    w1 = [g[f"{first}.weight"] for g in grads]
    assert w1[0].abs().max() > 0
    torch.testing.assert_close(w1[0], -w1[1])
    # the rest of the decoder does train (towards the mean image)
    assert grads[0][f"{first}.bias"].abs().max() > 0 and grads[0]["decoder.7.bias"].abs().max() > 0


def test_random_init_is_unchanged():
    torch.manual_seed(0)
    a = Section4VAE("d1", sigma_x2=1.0)
    torch.manual_seed(0)
    b = Section4VAE("d1", sigma_x2=1.0, init="random")
    torch.manual_seed(0)
    c = Section4VAE("d1", sigma_x2=1.0, init="collapsed")
    torch.manual_seed(0)
    enc, dec = build_nets("d1", 8, enc_out=8, dec_channels=1)  # how the model was built before `init` existed
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() == sc.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(torch.equal(v, sa[f"encoder.{k}"]) for k, v in enc.state_dict().items())
    assert all(torch.equal(v, sa[f"decoder.{k}"]) for k, v in dec.state_dict().items())
    assert float(a.log_sigma_z2.detach()) == 0.0
    zeroed = {"encoder.7.weight", "encoder.7.bias", "decoder.0.weight"}
    assert all(torch.equal(sc[k], sa[k]) for k in sa if k not in zeroed | {"log_sigma_z2"})
    assert all(not sc[k].any() for k in zeroed) and all(sa[k].any() for k in zeroed)
    with pytest.raises(ValueError, match="init must be one of"):
        Section4VAE("d1", init="zero")
    with pytest.raises(ValueError, match="needs sigma_z2='learned'"):
        Section4VAE("d1", sigma_z2=0.5, init="collapsed")


# --- the outcome rule ------------------------------------------------------------------------------------
def test_outcome_of_hand_built_records():
    base = {"tr_c": 52.7}
    collapsed = {**base, "kl": 0.01, "mse": 52.6, "recon_var": 1e-9}
    escaped = {**base, "kl": 12.0, "mse": 24.0, "recon_var": 0.04}
    o, why = cl.outcome(collapsed)
    assert o == "collapsed" and "KL 0.01 < 0.5 nats" in why and "constant" in why
    o, why = cl.outcome(escaped)
    assert o == "escaped" and "KL 12 ≥ 0.5 nats" in why and "not constant" in why and "outside" in why
    # each half of the rule alone is not collapse
    assert cl.outcome({**escaped, "kl": 0.3})[0] == "escaped"  # small KL, but the output follows the input
    assert cl.outcome({**collapsed, "kl": 0.6})[0] == "escaped"  # mean image, but a code
    # the output varies a little, but the MSE is the mean image's (within the band): collapsed
    assert cl.outcome({**base, "kl": 0.2, "mse": 52.7 * (1 + 0.9 * cl.MSE_BAND), "recon_var": 1e-3})[0] == "collapsed"
    assert cl.outcome({**base, "kl": 0.2, "mse": 52.7 * (1 + 1.1 * cl.MSE_BAND), "recon_var": 1e-3})[0] == "escaped"
    assert cl.outcome({"failed": "did not train: the loss became non-finite"}) == (
        "did not train", "did not train: the loss became non-finite")


def test_total_variance_is_the_trace_of_the_covariance():
    x = _images(30)
    assert cl.total_variance(x) == pytest.approx(float(torch.trace(data_covariance(x))), rel=1e-12)
    u = (x * 255).round().to(torch.uint8)
    assert cl.total_variance(u) == pytest.approx(float(torch.trace(data_covariance(u))), rel=1e-12)


# --- presets and plan -------------------------------------------------------------------------------------
def test_presets_and_plan():
    cpu = EXP.resolve({"preset": "cpu"})
    assert (cpu["lrs"], cpu["seeds"], cpu["inits"]) == ([1e-4, 1e-3, 3e-3], [0, 1, 2], ["random", "collapsed"])
    assert cpu["n_train"] is None and cpu["epochs"] == 2 and cpu["max_steps"] is None and cpu["sigma_x2"] == 1.0
    steps = 60_000 // 64 * cpu["epochs"]
    assert steps <= 4000 and 18 * steps * 0.12 <= 2.5 * 3600  # the sizing comment's arithmetic
    units = EXP.plan(lab.Context(EXP, cpu))
    assert len(units) == 18 and len({j for u in units for j in u.jobs}) == 18
    by = {u.id: u for u in units}
    assert set(by) == {cl.unit_id(i, lr, s) for i in cl.INITS for lr in cl.LRS for s in cl.SEEDS}
    r, c = by["random_lr0.0001_s2"].jobs[0], by["collapsed_lr0.003_s1"].jobs[0]
    assert (r.model, r.dataset, r.seed) == ("section4-vae", "mnist-d1", 2)
    assert r.train_dict == {"epochs": 2, "lr": 1e-4, "batch_size": 64} and r.variant == ()
    assert dict(r.model_kwargs) == {"d_z": 8, "sigma_x2": 1.0, "sigma_z2": "learned"}  # no `init`: Table 1's key
    assert dict(c.model_kwargs)["init"] == "collapsed" and c.seed == 1 and c.train_dict["lr"] == 3e-3
    # the random-init model is Table 1's stochastic σx² = 1 model when the settings agree (full: both the paper's)
    full = EXP.resolve({"preset": "full"})
    t1 = next(u for u in sm.EXPERIMENT.plan(lab.Context(sm.EXPERIMENT, sm.EXPERIMENT.resolve({"preset": "full"})))
              if u.id == "table1_sx0.0_stochastic").jobs[0]
    assert dataclasses.replace(EXP.job(full, "random", 1e-3, 0), tag="") == dataclasses.replace(t1, tag="")
    smoke = EXP.resolve({"preset": "smoke"})
    assert [u.id for u in EXP.plan(lab.Context(EXP, smoke))] == ["random_lr0.001_s0", "collapsed_lr0.001_s0"]


@pytest.mark.parametrize("bad, match", [
    ({"inits": ["zero"]}, r"'inits\[0\]'"),
    ({"lrs": [1e-3, 0.001]}, r"'lrs'.*more than once"),
    ({"seeds": [0, 0]}, r"'seeds'.*more than once"),
    ({"sigma_x2": 0.0}, r"'sigma_x2'"),
    ({"lrs": []}, r"'lrs' is an empty list"),
])
def test_bad_parameters_refused_before_anything_is_written(tmp_path, bad, match):
    with pytest.raises(ParameterError, match=match):
        lab.run(EXP, {"preset": "smoke", "results_dir": str(tmp_path / "r"), "device": "cpu", **bad})
    assert not (tmp_path / "r").exists()


# --- the page's strings -------------------------------------------------------------------------------------
class _Res:
    label = "preset cpu · test"

    def __init__(self, tables, metrics):
        self.tables, self.metrics = tables, metrics


def _fake(outcomes=("collapsed", "escaped", "escaped"), margin_hi=4.6, kl=(0.01, 11.0, 0.002)):
    runs = pd.DataFrame({"init": ["random", "random", "collapsed"], "lr": [1e-4, 1e-3, 1e-3], "seed": [0, 0, 0],
                         "outcome": list(outcomes), "kl": list(kl), "mse": [52.7, 20.0, 51.0],
                         "tr_c": [52.7, 52.7, 52.7], "margin_achieved": [0.0, 12.5, 1.5]})
    theory = pd.DataFrame({"log10_sigma_x2": [0.0, -1.0], "J_collapse": [26.35, 263.5],
                           "J_opt": [26.35 - margin_hi, 150.0], "margin": [margin_hi, 113.5],
                           "sigma_z2_opt": [0.3, 0.03], "active": [8, 8]})
    metrics = {"records": [{"steps": 1874, "plateau": plateau([1.0] * 20)}, {"steps": 1874}], "n_train": 60000, "n_eval": 10000, "train_config":
               {"epochs": 2, "batch_size": 64}, "lrs": [1e-4, 1e-3], "seeds": [0], "sigma_x2": 1.0, "d_z": 8,
               "theory": {"lambda_max": 5.1}}
    return _Res({cl.RUNS: runs, cl.THEORY: theory}, metrics)


def test_summary_strings_come_from_the_numbers():
    none = EXP.summary(None)
    assert all(none[k] == "no results yet" for k in cp.SUMMARY_KEYS)
    assert EXP.params["max_steps"] is sm.Smoothness.params["max_steps"] and "tr(C)" in EXP.params["n_eval"].doc
    assert none["cl_p_mse"] == "52.74" and "0.5 nats" in none["cl_rule"]
    s = EXP.summary(_fake())
    assert s["cl_random"] == "1 of 2 runs collapsed (lr 0.0001: 1 of 1; lr 0.001: 0 of 1)"
    assert s["cl_collapsed"] == "0 of 1 runs collapsed (lr 0.001: 0 of 1)"
    assert s["cl_margin_hi"].startswith("4.6 nats") and s["cl_margin_lo"].startswith("113.5 nats")
    assert s["cl_lam_max"] == "5.1" and s["cl_trc"] == "52.7"
    assert s["cl_kl"] == "random start 0.01 to 11; collapsed start 0.002"
    assert "60,000 training images" in s["cl_run"] and "1,874 steps per model" in s["cl_run"]
    assert s["cl_run"].startswith("preset cpu · test. ") and s["cl_run"].endswith(
        "; loss curves: 1 of 2 models flat (the last 20 % of logged steps gave < 5 % of the run's loss improvement, "
        "or a change within 2 standard errors of the noise); 1 without a loss curve; cumulative training time of its "
        "2 models: not recorded in this run")
    # Table 1's claim read with these runs alone (no Table-1 run beside them): 1 escaped below collapse by 12.5
    # nats against 1 collapsed run and 1 collapsed start that escaped by 1.5: 2 of 3 below
    assert s["cl_claim"].startswith("not reproduced (the collapse page: 2 of 3 runs end below the collapsed loss")
    assert none["cl_claim_rule"] == cc.RULE_COLLAPSE and "MNIST" in none["cl_claim_text"]
    assert not any("n/a" in v for v in s.values()), s
    # change a number, the string follows
    t = EXP.summary(_fake(outcomes=("collapsed", "collapsed", "collapsed"), margin_hi=0.25))
    assert t["cl_random"].startswith("2 of 2") and t["cl_collapsed"].startswith("1 of 1")
    assert t["cl_claim"].startswith("not shown at this scale")  # every run collapsed
    assert t["cl_margin_hi"].startswith("0.25 nats") and t["cl_margin_hi"] != s["cl_margin_hi"]
    assert EXP.summary(_fake(kl=(0.01, 7.0, 0.002)))["cl_kl"] != s["cl_kl"]


def _runs(outcomes, margins):
    inits = ["random"] * 3 + ["collapsed"] * 3
    return pd.DataFrame({"init": inits[:len(outcomes)], "outcome": list(outcomes), "margin_achieved": list(margins)})


def test_answer_reads_the_outcomes_and_the_margins():
    esc, col = "escaped", "collapsed"
    # the start decides: random runs escape below collapse, collapsed starts stay
    a = cp.answer(_runs([esc] * 3 + [col] * 3, [3.0, 5.0, 4.0, 0.0, 0.01, 0.02]), 1.0)
    assert a.startswith("0 of 3 trained runs from the random start ended collapsed; 3 of 3 trained runs from the "
                        "collapsed start ended collapsed. The start decides the outcome")
    assert a.endswith("3 of 3 escaped runs ended below the collapsed solution's objective (by 3 to 5 nats per "
                      "image), so collapse is not the optimum of this network's objective at σx² = 1.")
    # an escaped run above collapse: no claim about the optimum
    b = cp.answer(_runs([esc] * 3 + [col] * 3, [3.0, -1.0, 4.0, 0.0, 0.0, 0.0]), 1.0)
    assert "2 of 3 escaped runs" in b and "not the optimum" not in b
    assert "No run ended collapsed" in cp.answer(_runs([esc] * 6, [1.0] * 6), 1.0)
    assert "Every run ended collapsed" in cp.answer(_runs([col] * 6, [0.0] * 6), 1.0)
    mixed = cp.answer(_runs([col, esc, esc, col, esc, col], [0.0, 2.0, 2.0, 0.0, 2.0, 0.0]), 1.0)
    assert "varies with the learning rate and the seed" in mixed and "1 of 3 trained runs from the random" in mixed
    dnt = _runs(["did not train"] * 6, [None] * 6)
    assert cp.answer(dnt, 1.0) == "no run trained, so there is no answer"


def test_table1_row_is_the_random_start_at_the_papers_lr_over_seeds():
    runs = pd.DataFrame({"init": ["random"] * 4 + ["collapsed"], "lr": [1e-3, 1e-3, 1e-3, 1e-4, 1e-3],
                         "outcome": ["escaped", "escaped", "did not train", "collapsed", "collapsed"],
                         "mse": [20.0, 24.0, None, 52.0, 52.7], "kl": [10.0, 12.0, None, 0.0, 0.0]})
    line = cp.table1_row_line(runs, "52.74", "0.0")
    # mean ± s.d. (ddof 1) of 20, 24 and of 10, 12: only the two trained runs at lr 1e-3 from the random start
    assert line == ("MSE 22 ± 2.8, KL 11 ± 1.4 nats (mean ± s.d. over 2 seeds, 1 did not train; the paper: MSE 52.74, "
                    "KL 0.0); 0 of 2 collapsed")
    assert cp.table1_row_line(runs[runs["lr"] != 1e-3], "52.74", "0.0").startswith("not run")
    assert cp.table1_row_line(runs, "52.74", "0.0", sigma_x2=0.5).startswith("not in this run")


def test_notebook_glue_keys_are_all_glued():
    nb = nbformat.read(REPO / "notebooks" / "collapse.ipynb", as_version=4)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    keys = set(re.findall(r"\{glue:text\}`([^`]+)`", prose))
    assert keys and keys <= set(EXP.summary(None))
    assert "Run: {glue:text}`cl_run`." in prose  # one glue: without results the page says "no results yet" once
    assert "{glue:text}`cl_claim`" in prose and "{glue:text}`cl_claim_rule`" in prose  # the claim, with its rule


# --- end to end at smoke ------------------------------------------------------------------------------------
def test_smoke_end_to_end(tmp_path, data_root):
    from vaebook.data import dataset_spec

    params = {"preset": "smoke", "results_dir": str(tmp_path), "device": "cpu", "data_root": str(data_root)}
    d = lab.run(EXP, params, log=lambda *_: None).final_dir
    long = pd.read_csv(d / f"{cl.TABLE}.csv")
    assert set(long["verdict"]) == {"ours only"} and set(long["init"]) == set(cl.INITS)
    assert set(long["metric"]) == set(cl.METRICS) and len(long) == 2 * len(cl.METRICS)
    runs = pd.read_csv(d / f"{cl.RUNS}.csv")
    assert list(runs["init"]) == ["random", "collapsed"] and set(runs["outcome"]) <= set(cl.OUTCOMES)
    assert (runs["steps"] == 2).all() and (runs["plateau"] == "too short").all()  # 2 steps: no curve point
    assert {p.name for p in d.glob("*.png")} == {"fig_collapse_outcome.png", "fig_collapse_theory.png"}
    # the numbers, recomputed independently from the same 128 training images
    x, _ = dataset_spec("mnist-d1").load("train", str(data_root))
    x = x[:128]
    C = data_covariance(x)
    trc = float(torch.trace(C))
    for r in runs.itertuples():
        assert r.tr_c == pytest.approx(trc, rel=1e-9) and r.j_collapse == pytest.approx(trc / 2, rel=1e-9)
        assert r.margin_achieved == pytest.approx(r.j_collapse - r.neg_elbo, rel=1e-9, abs=1e-9)
    theory = pd.read_csv(d / f"{cl.THEORY}.csv")
    assert list(theory["log10_sigma_x2"]) == list(cl.THEORY_LOG10)
    for r in theory.itertuples():
        ref = collapse_margin(C, 8, 10.0 ** r.log10_sigma_x2)
        assert r.margin == pytest.approx(ref["margin"], rel=1e-9)
        assert r.J_collapse == pytest.approx(ref["J_collapse"], rel=1e-12)
        assert r.J_opt == pytest.approx(ref["J_opt"], rel=1e-9) and r.active == ref["active"]
    m = json.loads((d / "metrics.json").read_text())
    # each run records its loss curve for the page's panels: 2 steps make no point (the plateau judged none)
    assert [r["curve"] for r in m["records"]] == [[], []] and all(r["plateau"]["points"] == 0 for r in m["records"])
    assert m["n_train"] == 128 and m["theory"]["lambda_max"] == pytest.approx(
        float(torch.linalg.eigvalsh(C)[-1]), rel=1e-9)
    s = EXP.summary(lab.load_results(d))
    assert not any("n/a" in v for v in s.values()), s  # the site check refuses "n/a" in prose
    assert s["cl_random"].startswith(("0 of 1", "1 of 1")) and s["cl_margin_hi"].startswith(
        format(collapse_margin(C, 8, 1.0)["margin"], ".4g"))
    # a re-run trains nothing and evaluates nothing
    lines = []
    lab.run(EXP, params, log=lines.append)
    assert not any("training" in x or re.search(r"\] \d+/\d+ ", x) for x in lines), lines
    assert math.isfinite(float(runs["neg_elbo"].iloc[0]))


def test_run_line_sums_the_training_time_of_every_model():
    """The run line states the models' cumulative training time from their ``train_s`` (a model reused from the zoo
    counts with its own training), or says it was not recorded."""
    m = _fake().metrics
    m["records"] = [{"steps": 1874, "train_s": 1169.2}, {"steps": 1874, "train_s": 371.5}]
    assert cp.run_line(m).endswith("; cumulative training time of its 2 models 1,541 s (0.43 h), reused models included")


def test_committed_run_gathers_the_table1_row_into_the_claim():
    """On the committed cpu results the page reads Table 1's claim with the smoothness page's σx² = 1 row beside its
    own 18 runs: 19 models, the tally recomputed here from the stored numbers."""
    d = REPO / "results" / "cpu"
    if not (d / "collapse" / "provenance.json").is_file() or not (d / "smoothness" / "provenance.json").is_file():
        pytest.skip("no committed cpu results")
    res = lab.load_results(d / "collapse")
    runs = res.tables[cl.RUNS]
    below = int((pd.to_numeric(runs["margin_achieved"]) > cc.OBJECTIVE_MARGIN).sum())
    s = EXP.summary(res)
    assert s["cl_claim"].startswith("not reproduced (at σx² = 1: KL")
    assert f"{below + 1} of {len(runs) + 1} models that trained end more than 1 nat below collapse" in s["cl_claim"]
    secs = sum(r["train_s"] for r in res.metrics["records"])
    assert f"cumulative training time of its {len(runs)} models {secs:,.0f} s" in s["cl_run"]
