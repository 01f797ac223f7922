"""Table 6 (CelebA-HQ): Table 4's experiment on celebahq128 — its rows, the ex-post-density claim, the
missing-data path, and a smoke run on the generated stand-in images."""
import pandas as pd
import pytest
import torch

from vaebook import lab
from vaebook.experiments import _section6 as scale
from vaebook.experiments.celebahq import EXPERIMENT as HQ
from vaebook.experiments.celebahq import ex_post_helps
from vaebook.experiments.generation import Generation
from vaebook.lab import ParameterError
from vaebook.lab.compare import VERDICTS
from vaebook.lab.status import CLAIM_STATUSES


def base(**kw):
    return {"preset": "smoke", "mode": "compute", "device": "cpu", **kw}


def test_it_is_table4s_experiment_on_celebahq():
    assert isinstance(HQ, Generation) and HQ.table == "table6" and HQ.datasets == ("celebahq128",)
    assert "datasets" not in HQ.spec() and "tsne_points" not in HQ.spec()
    assert HQ.paper_sources("celebahq128") == ["prior", "2nd-vae", "gmm10", "gmm100"]


def test_unknown_model_and_bad_values():
    with pytest.raises(ParameterError) as e:
        HQ.resolve(base(models=["no-such-model"]))
    assert "'mle-diag-d'" in str(e.value)
    with pytest.raises(ParameterError, match="'celebahq128' only .*Fix: drop the parameter"):
        HQ.resolve(base(datasets=["mnist"]))
    with pytest.raises(ParameterError, match="vae-bernoulli"):  # registered for MNIST only
        HQ.resolve(base(models=["vae-bernoulli"]))


def test_rows_and_defaults():
    paper = HQ.paper_frame()
    rows = list(dict.fromkeys(paper["row"]))
    full = scale.models_for(HQ.resolve(base(preset="full")), "celebahq128", rows)
    assert len(full) == 10 and not any(n.startswith("trainable-") for n in full)
    assert scale.models_for(HQ.resolve(base()), "celebahq128", rows) == ["mle-diag-d"]
    # a row Table 6 does not print (trainable Σx) is run and shown as "ours only", not refused
    p = HQ.resolve(base(models=["trainable-iso-i", "mle-diag-d"]))
    assert scale.models_for(p, "celebahq128", rows) == ["trainable-iso-i", "mle-diag-d"]


def test_paper_ex_post_tallies():
    # the 2nd-stage VAE beats the prior for every model with a prior except the σx² = 1 VAE; GMM-100 for all
    helps = HQ.paper_ex_post_helps()
    vae2 = dict(helps["fid_2nd_vae"])
    assert vae2.pop("vae-gaussian") is False and all(vae2.values()) and len(vae2) == 6
    assert len(helps["fid_gmm100"]) == 7 and all(helps["fid_gmm100"].values())
    assert ex_post_helps({"a": {"fid_prior": 2.0, "fid_2nd_vae": 1.0}})["fid_2nd_vae"] == {"a": True}
    s = HQ.summary(None)
    assert s["hq_paper_helps"] == "6 of 7" and s["hq_paper_helps_gmm"] == "7 of 7" and s["hq_label"] == "no results"


def test_missing_data_raises_before_anything_is_written(tmp_path):
    from vaebook.data import MissingDataError

    with pytest.raises(MissingDataError) as e:
        lab.run(HQ, base(preset="medium", results_dir=str(tmp_path / "r"), data_root=str(tmp_path)))
    assert str(tmp_path / "celebahq") in str(e.value)
    assert not (tmp_path / "r").exists()


def test_smoke_uses_stand_in_images(tmp_path):
    ctx = lab.Context(HQ, HQ.resolve(base(data_root=str(tmp_path))))
    d = scale.load(ctx, "celebahq128")
    assert d.generated and "not CelebA-HQ" in d.source
    assert tuple(d.train.shape) == (16, 3, 128, 128) and d.train.dtype == torch.uint8
    assert len(d.test) == 4 and 0.0 <= float(d.test.min()) <= float(d.test.max()) <= 1.0
    assert "no folder" in HQ.data_status(str(tmp_path))


def test_smoke_run_end_to_end(tmp_path):
    r = lab.run(HQ, base(results_dir=str(tmp_path / "r"), data_root=str(tmp_path)), log=lambda *_: None)
    t = pd.read_csv(r.final_dir / "table6.csv")
    assert list(t.columns[:9]) == ["dataset", "group", "model", "row", "metric", "paper", "ours", "verdict", "reason"]
    kid = t[t["metric"].str.startswith("kid_")]  # ours only: a KID beside each FID the smoke run computed
    assert len(t) == len(HQ.paper_frame()) + len(kid) and len(kid) > 0
    assert set(kid["verdict"]) <= {"ours only", "did not train"}
    assert set(t["verdict"].dropna()) <= set(VERDICTS)
    dd = t.set_index(["row", "metric"]).loc["mle-diag-d"]
    dd = dd.loc[[m for m in dd.index if not m.startswith("kid_")]]  # the paper's cells
    # stand-in images: nothing can match, every computed cell says so; GMM-100 needs 100 codes (16 here)
    assert dd["verdict"].notna().sum() == 4 and "match" not in set(dd["verdict"])
    assert dd["reason"].str.contains("stand-in").sum() == 4
    assert "gmm100 needs at least 100" in dd.at["fid_gmm100", "reason"]
    assert (r.final_dir / "fig_J10_celebahq_samples.png").is_file()
    res = lab.load_results(r.final_dir)
    assert "NOT CelebA-HQ" in HQ.results_markdown(res) and "n/a" not in HQ.results_markdown(res)
    assert all(c["status"] == "not run" and "stand-in" in c["evidence"] for c in HQ.claims(res))
    s = HQ.summary(res)
    assert "NOT CelebA-HQ" in s["hq_generated"] and s["hq_helps"] in ("0 of 1", "1 of 1")


def test_the_papers_table6_is_shown_as_printed():
    """The page shows the paper's Table 6 whatever has run: every printed row, in the paper's order, the values as the
    paper prints them (CSV shared/paper/tables/table6_celebahq.csv), "–" where it prints none."""
    from vaebook.paper import paper_table

    t = HQ.paper_display()
    printed = paper_table("table6", as_printed=True)
    assert list(t.columns) == ["model", "MSE", "FID prior", "FID 2nd VAE", "FID GMM-10", "FID GMM-100"]
    assert len(t) == len(printed) == 10
    assert list(t["MSE"]) == list(printed["mse"]) and list(t["FID GMM-100"]) == list(printed["fid_gmm100"])
    assert list(t.loc[t["model"].isin(["AE", "RAE", "RAE-GP"]), "FID prior"]) == ["–"] * 3  # no prior
    assert t["model"].iloc[-1] == "Diag-D (MLE)" and t["FID GMM-100"].iloc[-1] == "71.46"
