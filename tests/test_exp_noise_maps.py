"""The σx² maps of Section 5.3 (vaebook/experiments/noise_maps.py): the maps in closed form on a model whose residuals
are known, the rules on tables where they hold and where they fail, the figures' legibility, Table 3's jobs reused,
the section's place in the book, and a smoke run end to end through the one run loop."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vaebook import lab
from vaebook.experiments import _noise_maps_claims as nc
from vaebook.experiments import _noise_maps_figures as nf
from vaebook.experiments import noise_variance as nv
from vaebook.experiments.noise_maps import EXPERIMENT as EXP
from vaebook.experiments.noise_maps import example_images, residual_maps
from conftest import ConstantModel

H = 28


_ConstantModel = ConstantModel  # tests/conftest.py


def _data(n=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, H, H, generator=g)
    labels = torch.tensor([7, 3, 5, 0, 9, 1, 6, 2, 8, 4, 5, 3, 9, 0][:n])
    return x, labels, torch.rand(1, H, H, generator=g)


# -- the maps in closed form -----------------------------------------------------------------------------------
def test_maps_are_the_hand_computed_means_of_squared_residuals():
    x, labels, image = _data()
    m = residual_maps(_ConstantModel(image), x, labels, batch_size=4)  # batches split the groups
    r2 = ((x - image) ** 2).double()[:, 0]  # N×H×W
    small = labels <= 4
    assert torch.allclose(m["all"], r2.mean(0), rtol=1e-6)
    assert torch.allclose(m["by_group"]["S"], r2[small].mean(0), rtol=1e-6)
    assert torch.allclose(m["by_group"]["B"], r2[~small].mean(0), rtol=1e-6)
    assert m["counts"] == {"S": int(small.sum()), "B": int((~small).sum())}
    assert m["example_index"] == {"B": 0, "S": 1}  # the first image of each group: a 7, then a 3
    assert torch.allclose(m["examples"]["S"], r2[1]) and torch.allclose(m["examples"]["B"], r2[0])


def test_maps_are_the_variance_modules_mles_and_table_3s_partition_averages():
    """Diag-I's MLE is the all-image map; Diag-D's (per image) averaged over a digit group is that group's map; and
    the maps' region means are Table 3's column values (the same residuals)."""
    from vaebook.variance import build_variance

    x, labels, image = _data()
    m = residual_maps(_ConstantModel(image), x, labels)
    r = (x - image).double().unsqueeze(0)  # S=1 × N × C × H × W
    diag_i = build_variance("diag-i", (1, H, H)).estimate(r)  # C×H×W
    diag_d = build_variance("diag-d", (1, H, H)).estimate(r)  # N×C×H×W (before ε)
    assert torch.allclose(m["all"], diag_i[0], rtol=1e-6)
    small = labels <= 4
    assert torch.allclose(m["by_group"]["S"], diag_d[small][:, 0].mean(0), rtol=1e-6)
    assert torch.allclose(m["examples"]["B"], diag_d[0, 0], rtol=1e-6)
    est = nv.partition_estimates(_ConstantModel(image), x, labels)
    assert float(m["all"][:H // 2].mean()) == pytest.approx(nv.column_value(est, ("SU", "BU")), rel=1e-6)
    assert float(m["by_group"]["S"].mean()) == pytest.approx(nv.column_value(est, ("SU", "SL")), rel=1e-6)


def test_example_images_take_the_first_of_each_group():
    x, labels, _ = _data()
    ex = example_images(x, labels, 4)
    assert ex["index"] == [1, 3, 0, 2] and ex["labels"] == [3, 0, 7, 5]
    assert np.allclose(ex["images"][0], x[1, 0].numpy(), atol=1e-3) and np.asarray(ex["images"]).shape == (4, H, H)


# -- the rules --------------------------------------------------------------------------------------------------
def _grid(upper, lower):
    return [[upper] * H] * (H // 2) + [[lower] * H] * (H // 2)


def rec(pattern, shape, seed, upper=0.12, lower=0.02, s=0.15, b=0.05, fate="trained"):
    r = {"pattern": pattern, "shape": shape, "seed": seed, "s_x2": 0.1, "fate": fate, "map": _grid(upper, lower)}
    if shape == "diag-d":
        r["map_by_class"] = {"S": _grid(s, s), "B": _grid(b, b)}
    return r


def res_of(recs, seeds=(0, 1, 2)):
    from types import SimpleNamespace

    return SimpleNamespace(metrics={"records": {f"u{i}": r for i, r in enumerate(recs)},
                                    "settings": {"train": {"max_steps": 600}, "n_train": None, "seeds": list(seeds)}},
                           provenance={}, label="synthetic", is_smoke=False)


def run_of(diag_i_spatial=(), diag_d_conditional=(), diag_d_spatial=()):
    recs = [rec("spatial", "diag-i", k, *v) for k, v in enumerate(diag_i_spatial)]
    recs += [rec("conditional", "diag-d", k, s=v[0], b=v[1]) for k, v in enumerate(diag_d_conditional)]
    recs += [rec("spatial", "diag-d", k, *v) for k, v in enumerate(diag_d_spatial)]
    return res_of(recs)


def statuses(res):
    return [c["status"] for c in nc.claims(res)]


def test_rules_hold_on_noise_where_it_was_injected():
    res = run_of([(0.125, 0.013), (0.124, 0.012), (0.126, 0.014)], [(0.155, 0.052), (0.15, 0.05), (0.152, 0.049)],
                 [(0.16, 0.045), (0.165, 0.047), (0.158, 0.046)])
    cs = nc.claims(res)
    assert [c["status"] for c in cs] == ["holds"] * 3
    assert all(c["page"] == "noise_variance" and c["section"] == nc.SECTION for c in cs)
    assert "steps (0.64 %)" in cs[0]["scale"] and "3 seeds" in cs[0]["scale"]
    t = nc.judge(nc.records(res), "spatial", "diag-i", "halves")
    assert t["excess_t"]["diff"] == pytest.approx(0.112) and t["ratio_t"]["lo"] > 1
    assert "excess upper halves − lower halves 0.112" in cs[0]["evidence"] and "× s_x²" in cs[0]["evidence"]


def test_rules_fail_when_the_clean_region_reads_higher():
    res = run_of([(0.02, 0.12), (0.021, 0.118), (0.019, 0.121)], [(0.05, 0.15), (0.049, 0.152), (0.051, 0.149)],
                 [(0.01, 0.1), (0.012, 0.11), (0.011, 0.105)])
    assert statuses(res) == ["not reproduced"] * 3


def test_rules_are_inconclusive_on_a_ratio_near_one_or_a_single_seed():
    res = run_of([(0.05, 0.04), (0.04, 0.05), (0.05, 0.05)], [(0.15, 0.05)], [])
    assert statuses(res) == ["inconclusive", "inconclusive", "not run"]
    assert "one seed: no interval" in nc.claims(res)[1]["evidence"]


def test_a_seed_that_did_not_train_is_left_out():
    recs = [rec("spatial", "diag-i", k) for k in range(3)] + [rec("spatial", "diag-i", 3, 0.01, 0.5, fate="constant")]
    c = nc.claims(res_of(recs))[0]
    assert c["status"] == "holds" and "left out: seed 3: constant" in c["evidence"]
    only_bad = res_of([rec("spatial", "diag-i", 0, fate="constant")])
    assert nc.claims(only_bad)[0]["status"] == "not shown at this scale"
    assert {c["status"] for c in nc.claims(None)} == {"not run"}


def test_excess_interval_is_stated_against_s_x2():
    res = run_of([(0.062, 0.012), (0.061, 0.011), (0.063, 0.013)])  # excess 0.05 = half of s_x²: located, too small
    c = nc.claims(res)[0]
    assert c["status"] == "holds" and "lies below s_x²" in c["evidence"] and "0.5 [" in c["evidence"]


def test_region_means():
    r = rec("conditional", "diag-d", 0, 0.3, 0.1, s=0.2, b=0.05)
    assert nc.regions(r, "halves") == pytest.approx((0.3, 0.1)) and nc.regions(r, "classes") == pytest.approx((0.2, 0.05))
    t = nc.region_table([r])
    assert list(t["region_1"]) == ["upper halves", "digits 0–4"] and t["ratio"].tolist() == pytest.approx([3.0, 4.0])


# -- figures: what they draw, and legible --------------------------------------------------------------------------
def _fake_records(seeds=3):
    recs = {}
    for k in range(seeds):
        for pattern in ("spatial", "conditional"):
            for shape in ("diag-i", "diag-d"):
                r = rec(pattern, shape, k)
                if shape == "diag-d":
                    r["example_maps"] = {"S": _grid(0.2, 0.1), "B": _grid(0.01, 0.01)}
                    r["example_index"] = {"S": 1, "B": 0}
                recs[f"{pattern}_{shape}_s{k}"] = r
    x, labels, _ = _data()
    im = example_images(x, labels, 8)
    return recs, {"spatial": im, "conditional": im}


def test_figure_data_and_figures_are_legible():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs, images = _fake_records()
    data = nf.figure_data(recs, images)
    assert list(data) == ["spatial", "conditional"] and list(data["spatial"]["maps"]) == ["diag-i", "diag-d"]
    d = data["conditional"]
    assert np.asarray(d["maps"]["diag-d"]["mean"]).shape == (H, H) and len(d["maps"]["diag-i"]["seeds"]) == 3
    assert d["classes"]["S"]["label"] == 3 and d["noise"] == {"S": "all noisy", "B": "clean"}
    data = json.loads(json.dumps(data, sort_keys=True))  # as metrics.json stores it (keys sorted)
    for pattern in ("spatial", "conditional"):
        figs = nf.figures(pattern, data[pattern])
        texts = [t.get_text() for t in figs[f"fig_maps_{pattern}"].texts]
        assert texts[0].startswith("Diag-I") and texts[1].startswith("Diag-D")  # the book's order, not the file's
        assert set(figs) == {f"fig_{k}_{pattern}" for k in ("examples", "maps", "diag_d")}
        for stem, fig in figs.items():
            fig.canvas.draw()
            assert fig.get_size_inches()[0] <= 8.0 + 1e-9  # drawn at the page width: its text keeps its size
            sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
            assert min(sizes) >= 11, (stem, sizes)  # 11 pt at 8 in ≥ 10 pt on the 690-px page column
            if "examples" not in stem:  # a colour bar with its unit
                assert any(a.get_ylabel().startswith("σx²") for a in fig.axes), stem
            plt.close(fig)


# -- parameters, jobs, the book ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, word", [({"n_images": 5}, "'n_images'"), ({"epochs": 2}, "'epochs'"),
                                       ({"patterns": ["diagonal"]}, "'patterns"), ({"seeds": 0}, "'seeds'"),
                                       ({"shapes": ["iso-i"]}, "'shapes")])
def test_bad_parameters_are_named(bad, word):
    with pytest.raises(lab.ParameterError, match=word):
        EXP.resolve({"preset": "smoke", **bad})


def test_cpu_plan_is_twelve_of_table_3s_jobs():
    """The cpu preset: 2 patterns × 2 shapes × 3 seeds; each job is Table 3's cpu job of that cell and seed (model,
    builder arguments, training, noise variant: the same zoo key), so Table 3's trained models are reused."""
    p = EXP.resolve({"preset": "cpu"})
    units = EXP.plan(lab.Context(EXP, p))
    assert len(units) == 12 and len({j for u in units for j in u.jobs}) == 12
    q = nv.EXPERIMENT.resolve({"preset": "cpu"})
    table3 = {(j.model, j.variant, j.seed): j for u in nv.EXPERIMENT.plan(lab.Context(nv.EXPERIMENT, q))
              for j in u.jobs}
    ours = [j for u in units for j in u.jobs]
    shared = [j for j in ours if (j.model, j.variant, j.seed) in table3]
    assert len(shared) == 8  # Diag-I at Table 3's one seed, Diag-D at its three
    for j in shared:
        t = table3[(j.model, j.variant, j.seed)]
        assert (j.dataset, j.train, j.model_kwargs) == (t.dataset, t.train, t.model_kwargs)
    dd = next(j for j in ours if j.model == "mle-diag-d")
    assert dd.builder_kwargs() == {"warmup_steps": 200}  # Table 3's Diag-D warm-up (rescue warmup:steps=200)


def test_the_section_is_on_the_table_3_page():
    from vaebook.lab.status import _book_experiments, experiment_claims, host_page

    assert host_page(EXP) == "noise_variance"
    names = [n for n, _ in _book_experiments()]
    assert names.index("noise_maps") == names.index("noise_variance") + 1
    assert "noise_maps" not in [n for n, _ in _book_experiments(sections=False)]
    rows = experiment_claims(EXP.name, EXP, None)
    assert len(rows) == len(nc.CLAIMS) and {r["page"] for r in rows} == {"noise_variance"}


def test_one_page_runs_the_section_and_checks_its_host_page(tmp_path):
    from vaebook.lab import one_page

    one_page.check_name("noise_maps")  # a section of a listed page is accepted
    run, notebook, _, check = one_page.steps("noise_maps", "smoke", tmp_path, device="cpu")
    assert run[run.index("run") + 1] == "noise_maps"
    assert notebook[notebook.index("--only") + 1] == "noise_variance" and check[-1] == "notebooks/noise_variance"


# -- a smoke run end to end --------------------------------------------------------------------------------------
def test_smoke_end_to_end(data_root, tmp_path):
    params = {"preset": "smoke", "results_dir": str(tmp_path), "device": "cpu", "data_root": str(data_root),
              "mode": "compute"}
    r = lab.run(EXP, params, log=lambda *_: None)
    d = r.final_dir
    names = sorted(p.name for p in d.iterdir())
    assert {"metrics.json", "provenance.json", "region_means.csv"} <= set(names)
    assert {f"fig_{k}_{p}.png" for k in ("examples", "maps", "diag_d") for p in ("spatial", "conditional")} <= set(names)
    m = json.loads((d / "metrics.json").read_text())
    recs = m["records"]
    assert sorted(recs) == sorted(f"{p}_{s}_s0" for p in ("spatial", "conditional") for s in ("diag-i", "diag-d"))
    for uid, rr in recs.items():
        assert np.asarray(rr["map"]).shape == (H, H) and rr["n_estimate"] == 128 and "images" not in rr
        assert rr["fate"] in ("trained", "constant") and rr["plateau"]["verdict"] in ("too short", "n/a", "flat",
                                                                                        "not flat")
        if rr["shape"] == "diag-d":
            assert {np.asarray(v).shape for v in rr["map_by_class"].values()} == {(H, H)}
            assert set(rr["example_maps"]) == {"S", "B"} and np.asarray(rr["example_maps"]["S"]).shape == (H, H)
        else:
            assert np.asarray(rr["running_map"]).shape == (H, H)
    ex = m["plotted"]["conditional"]["examples"]
    assert np.asarray(ex["images"]).shape == (8, H, H) and len(ex["labels"]) == 8
    assert all(y <= 4 for y in ex["labels"][:4]) and all(y > 4 for y in ex["labels"][4:])
    res = lab.load_results(d)
    from vaebook.lab.status import CLAIM_STATUSES, experiment_claims

    assert {c["status"] for c in EXP.claims(res)} <= set(CLAIM_STATUSES)
    assert {c["status"] for c in experiment_claims(EXP.name, EXP, res)} == {"not run"}  # smoke: never a result
    s = EXP.summary(res)
    assert s["nm_s2"] == "0.1" and s["nm_n_estimate"] == "128" and s["nm_seeds"] == "1"
    assert "4 models" in s["nm_training"] and s["nm_findings"] and set(s) == set(EXP.summary(None))
