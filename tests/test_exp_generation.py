"""Table 4 (generation): parameters, model rows from the registry, the shared Section-6 jobs, the verdict
rule, and a smoke run end to end through the runtime."""
import math

import pandas as pd
import pytest
import torch

from vaebook import lab
from vaebook.experiments import _section6 as scale
from vaebook.experiments import generation, interpolation, nll
from vaebook.experiments.generation import EXPERIMENT as GEN
from vaebook.lab import ParameterError
from vaebook.lab.compare import VERDICTS, compare, pairwise_trend
from vaebook.lab.status import CLAIM_STATUSES
from vaebook.models import MODEL_REGISTRY
from vaebook.paper import paper_table


def base(**kw):
    return {"preset": "smoke", "mode": "compute", "device": "cpu", **kw}


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------
def test_unknown_model_names_the_registered_ones():
    with pytest.raises(ParameterError) as e:
        GEN.resolve(base(models=["vae-gaussian", "no-such-model"]))
    msg = str(e.value)
    assert "no-such-model" in msg and "'mle-diag-d'" in msg and "'rae-sn'" in msg


def test_unknown_dataset_names_the_allowed_ones():
    with pytest.raises(ParameterError) as e:
        GEN.resolve(base(datasets=["svhn"]))
    assert "svhn" in str(e.value) and "'celeba64'" in str(e.value) and "'celebahq128'" in str(e.value)


def test_a_model_registered_for_no_selected_dataset_is_refused():
    # the MoL VAE needs colour images (CelebA), the Bernoulli VAE grey ones (MNIST)
    with pytest.raises(ParameterError, match="vae-mol"):
        GEN.resolve(base(datasets=["mnist"], models=["vae-mol"]))
    # fine when another selected dataset has it: it runs there only
    p = GEN.resolve(base(models=["vae-mol", "ae"]))
    assert scale.models_for(p, "mnist", []) == ["ae"]
    assert scale.models_for(p, "celeba64", []) == ["vae-mol", "ae"]


def test_rows_the_paper_does_not_print_are_accepted():
    p = GEN.resolve(base(datasets=["mnist"], models=["rae-l2", "rae-sn"]))
    assert scale.models_for(p, "mnist", ["vae-gaussian"]) == ["rae-l2", "rae-sn"]


def test_other_bad_values_are_rejected():
    with pytest.raises(ParameterError, match="2048"):
        GEN.resolve(base(fid_dims=100))
    with pytest.raises(ParameterError, match="gmm100"):
        GEN.resolve(base(sources=["gmm7"]))
    with pytest.raises(ParameterError, match="fid_samples"):
        GEN.resolve(base(fid_samples=1_000_000))
    with pytest.raises(ParameterError, match="n_train"):
        GEN.resolve(base(n_train=10**7))
    with pytest.raises(ParameterError, match="figure_images"):
        GEN.resolve(base(figure_images=0))
    with pytest.raises(ParameterError, match="models"):
        GEN.resolve(base(models=[]))


# ---------------------------------------------------------------------------------------------
# rows: from the registry
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("table", ["table4", "table5", "table6"])
def test_every_paper_row_is_a_registered_model_of_its_group(table):
    df = paper_table(table)
    for _, r in df.iterrows():
        name = scale.paper_row_key(r)
        assert name in MODEL_REGISTRY, r["model"]
        assert MODEL_REGISTRY[name].group == r["group"]
    if table != "table6":
        assert len(df) == 15  # Tables 4 and 5 have all 15 rows


def test_default_models_follow_the_printed_cells():
    paper = GEN.paper_frame()
    p = GEN.resolve(base(preset="full"))
    rows = {d: list(dict.fromkeys(paper.loc[paper["dataset"] == d, "row"])) for d in ("mnist", "celeba64")}
    mnist, celeba = (scale.models_for(p, d, rows[d]) for d in ("mnist", "celeba64"))
    assert len(mnist) == len(celeba) == 14
    assert "vae-mol" not in mnist and "vae-bernoulli" in mnist
    assert "vae-bernoulli" not in celeba and "vae-mol" in celeba
    # smoke: a small subset on CelebA, every row on MNIST
    ps = GEN.resolve(base())
    assert scale.models_for(ps, "celeba64", rows["celeba64"]) == ["vae-gaussian", "mle-diag-d"]
    assert scale.models_for(ps, "mnist", rows["mnist"]) == mnist
    assert GEN.paper_sources("mnist") == ["prior", "2nd-vae", "gmm10"]
    assert GEN.paper_sources("celeba64") == ["prior", "2nd-vae", "gmm10", "gmm100"]


def test_the_section6_pages_share_their_jobs():
    """Same dataset-spec optimiser setting, preset overrides, images and seed: one zoo entry per model."""
    for preset in ("smoke", "medium", "full"):
        pg, pi, pn = (e.resolve(base(preset=preset, datasets=["mnist"])) for e in
                      (GEN, interpolation.EXPERIMENT, nll.EXPERIMENT))
        for m in ("vae-gaussian", "mle-diag-d", "rae-gp"):
            assert scale.job(m, "mnist", pg) == scale.job(m, "mnist", pi) == scale.job(m, "mnist", pn)
    j = scale.job("wae-mmd", "celeba64", GEN.resolve(base(n_train=500, epochs=2)))
    assert j.train_dict == {"epochs": 2, "lr": 2e-4, "batch_size": 4, "max_steps": 1}
    assert dict(j.variant) == {"n_train": 500}
    # the dataset's baseline hyperparameters are explicit kwargs (and part of the cache key)
    assert dict(j.model_kwargs) == {"lam": 100.0}
    assert j.build().lam == 100.0
    gp = scale.job("rae-gp", "celebahq128", GEN.resolve(base())).build()
    assert (gp.gp_directions, gp.gp_examples) == (8, 8)


# ---------------------------------------------------------------------------------------------
# verdicts
# ---------------------------------------------------------------------------------------------
def _ours_from_paper(dataset, f=lambda v: v, note=""):
    paper = GEN.paper_frame()
    d = paper[paper["dataset"] == dataset]
    return pd.DataFrame({"row": d["row"], "dataset": dataset, "metric": d["metric"], "ours": d["paper"].map(f),
                         "note": [note if m.startswith("fid") else "" for m in d["metric"]]})


def _table(ours):
    return compare(ours, GEN.paper_frame(), scale.judge(twin=True))


def test_our_values_equal_to_the_papers_match():
    df = _table(_ours_from_paper("mnist"))
    mn = df[df["dataset"] == "mnist"]
    t4 = paper_table("table4")
    assert len(mn) == int(t4[[c for c in t4.columns if c.startswith("mnist_")]].notna().sum().sum())
    assert (mn["verdict"] == "match").all()
    # a note (e.g. an FID off the paper's scale) rules out "match"; the orderings are the paper's: trends hold
    df = _table(_ours_from_paper("mnist", note="not comparable"))
    fid = df[(df["dataset"] == "mnist") & df["metric"].str.startswith("fid")]
    assert (fid["verdict"] == "trend holds").all() and fid["reason"].str.contains("not comparable").all()
    assert (df[(df["dataset"] == "mnist") & (df["metric"] == "mse")]["verdict"] == "match").all()


def test_trends_follow_order_not_scale():
    doubled = _table(_ours_from_paper("celeba64", lambda v: 2 * v))
    assert (doubled.loc[doubled["dataset"] == "celeba64", "verdict"] == "trend holds").all()
    flipped = _table(_ours_from_paper("celeba64", lambda v: -v))
    flipped = flipped[flipped["dataset"] == "celeba64"]
    not_tie = ~flipped["reason"].str.contains("≈")
    assert not_tie.any() and (flipped[not_tie]["verdict"] == "differs").all()


def test_not_run_and_ours_only_cells():
    cell = {"dataset": "mnist", "metric": "mse"}
    ours = pd.DataFrame([{**cell, "row": "mle-iso-i", "ours": 4.4},
                         {**cell, "row": "rae-sn", "ours": 5.0, **scale.row_info("rae-sn")},
                         {**cell, "row": "ae", "ours": math.nan, "failed": "did not train: x"}])
    df = scale.finish_table(_table(ours), {("mle-iso-i", "mnist"), ("rae-sn", "mnist"), ("ae", "mnist")}, ["mnist"])
    cell = df.set_index(["row", "dataset", "metric"])
    assert cell.loc[("rae-sn", "mnist", "mse"), "verdict"] == "ours only"
    assert cell.loc[("ae", "mnist", "mse"), "verdict"] == "did not train"
    assert cell.loc[("mle-iso-i", "mnist", "mse"), "verdict"] == "match"
    assert "dataset 'celeba64' not selected" in cell.loc[("ae", "celeba64", "mse"), "reason"]
    assert "model not selected" in cell.loc[("vae-gaussian", "mnist", "mse"), "reason"]
    assert pd.isna(cell.loc[("vae-gaussian", "mnist", "mse"), "verdict"])
    assert list(dict.fromkeys(df["dataset"])) == ["mnist", "celeba64"]


def test_pairwise_trend_ties():
    holds, why = pairwise_trend(4.28, 4.40, 166.3, 166.5, "ref")
    assert holds and "≈" in why  # the paper's 3 % gap is a tie; ours is within 10 %
    assert not pairwise_trend(4.28, 4.40, 100.0, 166.5, "ref")[0]
    assert pairwise_trend(20.25, 4.40, 170.0, 166.5, "ref")[0]
    assert pairwise_trend(1.0, float("nan"), 1.0, 2.0, "ref") is None


def test_reference_rows():
    avail = ["vae-gaussian", "trainable-iso-i", "mle-iso-i", "mle-diag-d", "ae"]
    assert scale.reference_row("mle-iso-i", avail, twin=True) == "trainable-iso-i"
    assert scale.reference_row("mle-iso-i", avail, twin=False) == "vae-gaussian"
    assert scale.reference_row("mle-diag-d", avail, twin=True) == "vae-gaussian"  # no trainable twin ran
    assert scale.reference_row("trainable-iso-i", avail, twin=True) == "mle-iso-i"
    assert scale.reference_row("ae", avail, twin=True) == "mle-iso-i"


def test_paper_tallies():
    t4 = paper_table("table4")
    for ds, pre in (("mnist", "mnist_"), ("celeba64", "celeba_")):
        wins = total = 0
        for shape in ("Iso-I", "Diag-I", "Iso-D", "Diag-D"):
            a = t4[(t4["group"] == "proposed_MLE") & (t4["model"] == shape)].iloc[0]
            b = t4[(t4["group"] == "trainable_Sigma_x") & (t4["model"] == shape)].iloc[0]
            for c in t4.columns:
                if c.startswith(pre + "fid") and not (math.isnan(a[c]) or math.isnan(b[c])):
                    wins += int(a[c] < b[c])
                    total += 1
        key = "mnist" if ds == "mnist" else "celeba"
        assert GEN.summary(None)[f"gen_paper_mle_wins_{key}"] == f"{wins} of {total}"


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def test_epoch_seconds_scale_partial_epochs():
    hist = [{"step": 10, "time_s": 2.0}, {"step": 15, "time_s": 1.5}]  # 0.2 s/step, then 0.3 s/step
    assert scale.epoch_seconds(hist, n_train=640, batch_size=64) == pytest.approx(0.25 * 10)
    assert math.isnan(scale.epoch_seconds([], 640, 64))


def test_keep_first_passes_everything_and_keeps_n():
    from vaebook.posterior import keep_first

    batches = [torch.full((3, 1, 2, 2), float(i)) for i in range(3)]
    store = []
    out = list(keep_first(iter(batches), 5, store))
    assert all(torch.equal(a, b) for a, b in zip(out, batches))
    kept = torch.cat(store)
    assert kept.shape[0] == 5 and torch.equal(kept[:, 0, 0, 0], torch.tensor([0.0, 0, 0, 1, 1]))


def test_source_skip_reasons():
    from vaebook.models import build_model
    from vaebook.posterior import source_skip_reason

    ae, vae = build_model("ae", "mnist"), build_model("vae-gaussian", "mnist")
    assert "no prior" in source_skip_reason(ae, "prior", 1000)
    assert source_skip_reason(vae, "prior", 10) == "" and source_skip_reason(ae, "gmm10", 10) == ""
    assert "100" in source_skip_reason(vae, "gmm100", 16)
    with pytest.raises(ValueError, match="gmm7x"):
        source_skip_reason(vae, "gmm7x", 10)


def test_fid_comparability():
    assert scale.fid_comparable(10_000, 2048) and not scale.fid_comparable(9_999, 2048)
    assert not scale.fid_comparable(10_000, 64)
    assert scale.fid_note(10_000, 2048) == "" and "not comparable" in scale.fid_note(16, 64)
    full = scale.PRESETS["full"]
    assert scale.fid_comparable(full["fid_samples"]["mnist"], full["fid_dims"]) and full["iwae_k"] == 500


def test_side_by_side_layout():
    from vaebook.lab.display import side_by_side

    ours = pd.DataFrame([{"row": "mle-iso-i", "dataset": "mnist", "metric": "mse", "ours": 1.5}])
    df = scale.finish_table(_table(ours), {("mle-iso-i", "mnist")}, ["mnist"], metric_order=generation.METRIC_ORDER)
    wide = side_by_side(df, "mnist", generation.METRIC_LABELS).set_index("model")
    assert list(wide.columns)[:2] == ["MSE", "FID prior"]
    assert wide.at["Iso-I (MLE, ours)", "MSE"] == "1.5 (4.4)"
    assert wide.at["AE", "MSE"] == "– (4.31)"


# ---------------------------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------------------------
def test_smoke_run_end_to_end(tmp_path, data_root, monkeypatch):
    """Four MNIST models, one of them made to fail: its cells say "did not train", RAE-L2's "ours only"."""
    from vaebook.lab.zoo import TrainedModel, Zoo

    train = Zoo.train

    def failing(self, jobs, batched=None):
        out = train(self, [j for j in jobs if j.model != "trainable-iso-i"], batched)
        out.update({j: TrainedModel(j, None, reason="did not train: the loss became non-finite (test)")
                    for j in jobs if j.model == "trainable-iso-i"})
        return out

    monkeypatch.setattr(Zoo, "train", failing)
    models = ["vae-gaussian", "mle-iso-i", "trainable-iso-i", "rae-l2"]
    r = lab.run(GEN, base(results_dir=str(tmp_path), data_root=str(data_root), datasets=["mnist"], models=models),
                log=lambda *_: None)
    t = pd.read_csv(r.final_dir / "table4.csv")
    assert list(t.columns[:9]) == ["dataset", "group", "model", "row", "metric", "paper", "ours", "verdict", "reason"]
    kid = t[t["metric"].str.startswith("kid_")]
    # every paper cell, plus RAE-L2's MSE, 2nd-VAE and GMM-10 FIDs, plus a KID beside every FID we computed
    assert len(t) == len(GEN.paper_frame()) + 3 + len(kid)
    assert set(kid["verdict"]) <= {"ours only", "did not train"}
    fids = t[t["metric"].str.startswith("fid_") & t["ours"].notna()]
    assert len(fids) > 0 and all(((kid["row"] == r) & (kid["metric"] == m.replace("fid_", "kid_"))
                                  & kid["ours"].notna()).any() for r, m in zip(fids["row"], fids["metric"]))
    assert set(t["verdict"].dropna()) <= set(VERDICTS)
    ran = t[t["dataset"] == "mnist"].set_index(["row", "metric"])
    assert (ran.loc["rae-l2", "verdict"] == "ours only").all() and ran.loc["rae-l2", "ours"].notna().all()
    assert (ran.loc["trainable-iso-i", "verdict"] == "did not train").all()
    assert ran.loc["trainable-iso-i", "ours"].isna().all()
    assert ran.loc["vae-gaussian", "ours"].notna().all() and ran.loc["mle-iso-i", "verdict"].notna().all()
    assert t.loc[t["dataset"] == "celeba64", "verdict"].isna().all()
    sig = pd.read_csv(r.final_dir / "table4_iso_i_sigma2.csv").set_index("dataset")
    assert sig.at["mnist", "ours"] > 0 and sig.at["mnist", "verdict"] in VERDICTS
    for fig in ("fig_J7_mnist_samples", "fig_J6_mnist_tsne", "fig_2_time_per_epoch"):
        assert (r.final_dir / f"{fig}.png").is_file()
    res = lab.load_results(r.final_dir)
    s = GEN.summary(res)
    assert s["gen_fid_samples"] == "8" and s["gen_sigma2_mnist"] != "n/a" and "did not train" in s["gen_verdicts"]
    text = GEN.results_markdown(res)  # the page's prose: only the numbers this run has, never "n/a"
    assert "n/a" not in text and "single training run" in text and "256 training images" in text
    assert GEN.results_markdown(None) == ""
    assert {c["status"] for c in GEN.claims(res)} <= set(CLAIM_STATUSES) and len(GEN.claims(res)) == 5
    floor = res.metrics["settings"]["mnist"]["floor"]  # real training images vs the test reference, same N
    assert floor["n"] == 8 and floor["fid"] > 0 and "bias at this sample size" in text
    assert res.metrics["settings"]["mnist"]["did_not_train"] == {"trainable-iso-i": "did not train: the loss became "
                                                                                     "non-finite (test)"}


def test_bad_parameter_is_refused_before_anything_is_written(tmp_path, data_root):
    with pytest.raises(ParameterError, match="fid_dims"):
        lab.run(GEN, base(results_dir=str(tmp_path), data_root=str(data_root), fid_dims=100))
    with pytest.raises(ParameterError, match="n_train"):  # more than MNIST's 60,000 training images
        lab.run(GEN, base(results_dir=str(tmp_path), data_root=str(data_root), datasets=["mnist"], n_train=100_000))
    with pytest.raises(ParameterError, match="n_test"):  # more than MNIST's 10,000 test images
        lab.run(GEN, base(results_dir=str(tmp_path), data_root=str(data_root), datasets=["mnist"], n_test=20_000))
    assert not (tmp_path / "smoke").exists()


class _Decoder(torch.nn.Module):
    """Deterministic encoder z = mean pixel; decoder = a constant image, or the code broadcast to every pixel."""

    def __init__(self, constant: bool):
        super().__init__()
        self.w, self.constant = torch.nn.Parameter(torch.zeros(1)), constant

    def encode(self, x):
        from vaebook.models import Posterior

        return Posterior(x.flatten(1).mean(1, keepdim=True), None)

    def decode(self, z):
        img = torch.full((z.shape[0], 1, 4, 4), 0.5) if self.constant else z[:, :, None, None].expand(-1, 1, 4, 4)
        return img + 0 * self.w


def test_untrained_reason_scores_only_models_whose_output_depends_on_the_input():
    """Section-6 pages: a failed run keeps its reason; an output that ignores its input is "did not train" (with
    its reconstruction variance kept: here 0, or Var(mean pixel) for the input-dependent decoder); smoke skips it."""
    from types import SimpleNamespace

    from vaebook.lab.zoo import TrainedModel

    x = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    data, ctx = SimpleNamespace(test=x), SimpleNamespace(smoke=False, p={"eval_batch": 7})
    out = {}
    assert scale.untrained_reason(ctx, TrainedModel(None, None, reason="did not train: NaN"), data, out) \
        == "did not train: NaN"
    assert scale.untrained_reason(ctx, TrainedModel(None, _Decoder(True)), data, out).startswith("did not train")
    assert out["recon_var"] == 0.0
    out = {}
    assert scale.untrained_reason(ctx, TrainedModel(None, _Decoder(False)), data, out) == ""
    want = float(x.flatten(1).double().mean(1).var(unbiased=False))
    assert out["recon_var"] == pytest.approx(want, rel=1e-5)
    out = {}
    assert scale.untrained_reason(SimpleNamespace(smoke=True, p={}), TrainedModel(None, _Decoder(True)), data, out) == ""
    assert out == {}
