"""Table 7 (IWAE NLL bounds): parameters, its row spelling, the paper's claims, and a smoke run end to end."""
import math

import pandas as pd
import pytest

from vaebook import lab
from vaebook.experiments import _section6 as scale
from vaebook.experiments.nll import EXPERIMENT as NLL
from vaebook.experiments.nll import claims
from vaebook.lab import ParameterError
from vaebook.lab.compare import VERDICTS, compare
from vaebook.lab.status import CLAIM_STATUSES
from vaebook.models import MODEL_REGISTRY
from vaebook.paper import paper_table


def base(**kw):
    return {"preset": "smoke", "mode": "compute", "device": "cpu", **kw}


def test_unknown_names_and_bad_values():
    with pytest.raises(ParameterError) as e:
        NLL.resolve(base(models=["vae-gaussian", "no-such-model"]))
    assert "no-such-model" in str(e.value) and "'mle-diag-d'" in str(e.value)
    with pytest.raises(ParameterError) as e:
        NLL.resolve(base(datasets=["svhn"]))
    assert "svhn" in str(e.value) and "'celebahq128'" in str(e.value)
    with pytest.raises(ParameterError, match="unknown parameter"):
        NLL.resolve(base(fid_samples=10))  # no FID here
    with pytest.raises(ParameterError, match="iwae_k"):
        NLL.resolve(base(iwae_k=0))
    with pytest.raises(ParameterError, match="iwae_k"):
        NLL.resolve(base(iwae_k=100_000))
    with pytest.raises(ParameterError, match="k_chunk"):
        NLL.resolve(base(k_chunk=0))


def test_defaults_resolve_per_preset():
    assert NLL.resolve(base())["datasets"] == ["mnist", "celeba64"]
    assert NLL.resolve(base(preset="medium"))["datasets"] == ["mnist", "celeba64", "celebahq128"]
    assert NLL.resolve(base(preset="full"))["iwae_k"] == 500


def test_table7_rows_map_to_registry_names():
    paper = NLL.paper_frame()
    t7 = paper_table("table7")
    assert len(paper) == len(t7) == 15
    for ds in ("mnist", "celeba64", "celebahq128"):
        rows = list(paper.loc[paper["dataset"] == ds, "row"])
        assert rows == ["vae-gaussian", "mle-iso-i", "mle-diag-i", "mle-iso-d", "mle-diag-d"]
        assert all(r in MODEL_REGISTRY for r in rows)
    assert paper.set_index(["row", "dataset"]).at[("mle-iso-i", "celeba64"), "printed"] == "< -14899.38"


def test_paper_claims():
    # every MLE model below the σx² = 1 VAE, Diag-D the lowest, on all three datasets
    for ds in ("mnist", "celeba64", "celebahq128"):
        assert NLL.paper_claims(ds) == {"all_mle_below_vae": True, "lowest_mle": "mle-diag-d"}
    assert claims({"vae-gaussian": 1.0, "mle-iso-i": 2.0, "mle-diag-d": 0.5}) == {"all_mle_below_vae": False,
                                                                                  "lowest_mle": "mle-diag-d"}
    assert claims({"mle-iso-i": math.nan}) == {"all_mle_below_vae": None, "lowest_mle": None}


def test_not_run_rows_have_no_verdict():
    ours = pd.DataFrame([{"row": "mle-iso-i", "dataset": "celeba64", "metric": "nll", "ours": -1.0},
                         {"row": "mle-diag-d", "dataset": "celeba64", "metric": "nll", "ours": math.nan,
                          "failed": "did not train: the loss became non-finite"}])
    df = compare(ours, NLL.paper_frame(), scale.judge(twin=False))
    df = scale.finish_table(df, {("mle-iso-i", "celeba64"), ("mle-diag-d", "celeba64")}, ["celeba64"])
    c = df[df["dataset"] == "celeba64"].set_index("row")
    assert len(c) == 5 and c["verdict"].isna().sum() == 3
    assert c.at["mle-diag-d", "verdict"] == "did not train"
    assert c.at["vae-gaussian", "reason"].startswith("not run: model not selected")
    assert df.loc[df["dataset"] == "mnist", "reason"].str.contains("dataset 'mnist' not selected").all()


def test_a_model_without_a_likelihood_is_refused(tmp_path, data_root):
    with pytest.raises(ParameterError, match="'ae'"):
        lab.run(NLL, base(data_root=str(data_root), results_dir=str(tmp_path), datasets=["mnist"], models=["ae"]))
    assert not (tmp_path / "smoke").exists()


def test_smoke_run_end_to_end(tmp_path, data_root):
    r = lab.run(NLL, base(results_dir=str(tmp_path), data_root=str(data_root), datasets=["mnist"],
                          models=["vae-gaussian", "mle-diag-d", "vae-bernoulli"]), log=lambda *_: None)
    t = pd.read_csv(r.final_dir / "table7.csv")
    assert list(t.columns[:9]) == ["dataset", "group", "model", "row", "metric", "paper", "ours", "verdict", "reason"]
    assert {"ours_printed", "printed"} <= set(t.columns)
    assert len(t) == 15 + 1 + 3  # every paper cell + the Bernoulli VAE's (not in Table 7) + 3 valid bounds (ours)
    assert set(t["verdict"].dropna()) <= set(VERDICTS)
    mn = t[(t["dataset"] == "mnist") & (t["metric"] == "nll")].set_index("row")
    assert mn.at["vae-bernoulli", "verdict"] == "ours only"
    assert mn.loc[["vae-gaussian", "mle-diag-d"], "verdict"].notna().all()
    assert mn.at["mle-diag-d", "ours_printed"].startswith("< ") and "k = 4" in mn.at["mle-diag-d", "reason"]
    # the valid bound: ours only; the paper-protocol number itself where Σx never depended on the test image
    va = t[t["metric"] == "nll_valid"].set_index("row")
    assert sorted(va.index) == ["mle-diag-d", "vae-bernoulli", "vae-gaussian"]
    assert (va["verdict"] == "ours only").all() and va["ours"].notna().all()
    assert va.at["vae-gaussian", "ours"] == mn.at["vae-gaussian", "ours"]
    assert va.at["mle-diag-d", "ours"] != mn.at["mle-diag-d", "ours"]
    assert "first 256 training images" in va.at["mle-diag-d", "reason"]
    res = lab.load_results(r.final_dir)
    md = NLL.results_markdown(res)
    assert "n/a" not in md and "k = 4" in md and "`nll_valid`" in md and "256 MNIST training reconstructions" in md
    assert "valid bound: Diag-D (MLE, ours) < " in md
    assert res.metrics["values"]["mnist"]["mle-diag-d"]["train_fit_n"] == 256
    cl = NLL.claims(res)
    assert len(cl) == len(NLL.CLAIMS) == 2 and {c["status"] for c in cl} <= set(CLAIM_STATUSES)
    assert "lowest" in cl[1]["evidence"] and "(paired)" in cl[0]["evidence"]  # per-image bounds were recorded
    per = res.metrics["per_image"]["mnist"]
    assert len(per["mle-diag-d"]["nll_valid"]) == 64 and len(per["vae-gaussian"]["nll"]) == 64
    s = NLL.summary(res)
    assert s["nll_k"] == "4" and s["nll_mnist_vae"] != "n/a" and s["nll_below_mnist"] in ("yes", "no")
    # one more model: only it is trained and evaluated; the others' models and unit results are reused
    log = []
    lab.run(NLL, base(results_dir=str(tmp_path), data_root=str(data_root), datasets=["mnist"],
                      models=["vae-gaussian", "mle-diag-d", "vae-bernoulli", "mle-iso-i"]), log=log.append)
    assert [s for s in log if s.startswith("[nll]")] == ["[nll] 4/4 mnist--mle-iso-i"], log
    assert any(s.startswith("training 1 model(s)") for s in log), log


def test_missing_dataset_stops_before_anything_is_written(tmp_path, data_root):
    from vaebook.data import MissingDataError

    # medium needs the real CelebA-HQ images: MissingDataError names the folder and how to leave it out
    with pytest.raises(MissingDataError) as e:
        lab.run(NLL, base(preset="medium", results_dir=str(tmp_path / "r"), data_root=str(tmp_path),
                          datasets=["celebahq128"]))
    assert str(tmp_path / "celebahq") in str(e.value)
    assert not (tmp_path / "r").exists()
    if (data_root / "celebahq").is_dir():
        pytest.skip("CelebA-HQ is installed in the data folder")
    with pytest.raises(MissingDataError, match=r"datasets=\['mnist'\]"):
        lab.run(NLL, base(preset="medium", results_dir=str(tmp_path / "r"), data_root=str(data_root),
                          datasets=["mnist", "celebahq128"]))
    assert not (tmp_path / "r").exists()
