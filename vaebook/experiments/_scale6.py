"""Section 6 (Tables 4–7) in one place: its scale, its one :class:`~vaebook.lab.Job` per (model,
dataset), its row naming and its verdict rule. No experiment loop lives here.

``generation`` (Table 4), ``celebahq`` (Table 6), ``interpolation`` (Table 5) and ``nll`` (Table 7)
all build their jobs with :func:`job` from the same :data:`PRESETS`, so a model trained for one page is
the same zoo entry for the others (same dataset-spec optimiser setting, same preset overrides, same
training images, same seed).

Choices the paper does not state (ours): the preset data sizes (the first ``n`` images of a split),
the FID sample counts and feature sizes (only ``full`` uses the paper's 10,000 samples and 2048-d
features; other FIDs are marked as not comparable), the second-stage VAE sizes and GMM iterations.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import pandas as pd

from vaebook.experiments import _datasets6 as ds
from vaebook.experiments._datasets6 import ANY, per_dataset
from vaebook.lab.compare import fmt, pairwise_trend, verdict
from vaebook.lab.experiment import Experiment
from vaebook.lab.params import ParameterError, ParamSpec

#: the paper's datasets of Section 6: the default selection (any registered dataset can be selected by name)
DATASETS = ("mnist", "celeba64", "celebahq128")
PAPER_FID_SAMPLES, PAPER_FID_DIMS, PAPER_IWAE_K = 10_000, 2048, 500

#: short presets (≤ 1,000 steps): the trainable -I rows learn log σx² at 50× the lr (0.05), so it can reach the
#: MLE's ≈ ln 0.0125 within ~100 steps; at the paper's lr 1e-3 it stops near e^−0.6 = 0.55 after 600 steps and the
#: MLE-vs-trainable comparison would be against a variance that was never learned (our choice; the paper's runs
#: are long enough not to need it, so ``full`` keeps the paper's optimiser)
FAIR_TRAINABLE = {f"trainable-{s}": dict(variance_lr_factor=50.0) for s in ("iso-i", "diag-i")}

#: The Section-6 scale. ``train``: overrides of the dataset spec's optimiser setting (App. I); ``models``:
#: the default rows per dataset (absent = every row the paper prints for it); the rest per dataset (``"*"``: any
#: dataset not named) or global. ``n_train``/``n_test`` are each dataset's :meth:`DatasetSpec.size` at the preset.
PRESETS = {
    # seconds on CPU: a code-path test only. CelebA nets cost ~10 GFLOP (64²) / ~80 GFLOP (128²) per decoded
    # image, so the CelebA smoke runs use a couple of models, tiny batches and a handful of images.
    "smoke": dict(
        train={"mnist": dict(epochs=1, max_steps=1, batch_size=32),
               "celeba64": dict(epochs=1, max_steps=1, batch_size=4),
               "celebahq128": dict(epochs=1, max_steps=1, batch_size=2), ANY: dict(epochs=1, max_steps=1, batch_size=32)},
        fid_samples={"mnist": 8, "celeba64": 8, "celebahq128": 4, ANY: 8}, fid_dims=64, iwae_k=4, tsne_points=32,
        second_stage=dict(width=32, depth=1, epochs=1, max_steps=3, batch_size=32), gmm_max_iter=20, eval_batch=64,
        models={"celeba64": ["vae-gaussian", "mle-diag-d"], "celebahq128": ["mle-diag-d"]},
        model_kwargs={"mnist": dict(FAIR_TRAINABLE), ANY: dict(FAIR_TRAINABLE)}),
    # subsets and 8 epochs: trends; CelebA needs a GPU at this size. FIDs are compared by ordering only.
    "medium": dict(
        train={d: dict(epochs=8) for d in (*DATASETS, ANY)},
        fid_samples={"mnist": 1_000, "celeba64": 1_000, "celebahq128": 300, ANY: 1_000}, fid_dims=2048, iwae_k=100,
        tsne_points=1_000, second_stage=dict(width=256, depth=2, epochs=20), gmm_max_iter=100, eval_batch=500,
        models={}, model_kwargs={d: dict(FAIR_TRAINABLE) for d in (*DATASETS, ANY)}),
    # what 2 CPU cores give in under 2 hours (measured: ~0.3 s per MNIST training step, ~2.2 s for RAE-GP with the
    # exact Jacobian penalty, ~7 Inception images/s): MNIST only, 600 steps of batch 64 drawn from all 60,000
    # training images (0.64 of an epoch), RAE-GP's penalty from one random direction per example (an unbiased
    # estimate of ‖J‖²_F), FID/KID from 300 samples against 1,000 test images with 2048-d features, IWAE k = 500 on
    # the 1,000 test images. CelebA needs a GPU.
    "cpu": dict(
        train={d: dict(epochs=1, max_steps=600) for d in ("mnist", ANY)},
        model_kwargs={d: {"rae-gp": dict(gp_directions=1), **FAIR_TRAINABLE} for d in ("mnist", ANY)},
        fid_samples={"mnist": 300, ANY: 300}, fid_dims=2048, iwae_k=500, tsne_points=500,
        second_stage=dict(width=256, depth=2, epochs=10), gmm_max_iter=100, eval_batch=250, models={},
        datasets=["mnist"]),
    # the paper: whole splits, its epochs, 10,000 FID samples with 2048-d Inception features, k = 500.
    "full": dict(
        train={},
        fid_samples={d: PAPER_FID_SAMPLES for d in (*DATASETS, ANY)}, fid_dims=PAPER_FID_DIMS, iwae_k=PAPER_IWAE_K,
        tsne_points=2_000, second_stage=dict(width=1024, depth=3, epochs=50), gmm_max_iter=100, eval_batch=500,
        models={}),
}
for _name, _s in PRESETS.items():  # the paper datasets' sizes at each preset, from their specs (one source)
    _s["n_train"], _s["n_test"] = ds.sizes(_name, DATASETS)

#: The size knobs every Section-6 page takes (``None`` = the preset's value for each dataset).
SIZE_PARAMS = {
    "models": ParamSpec("list", allow_none=True, default=None,
                        doc="registered model names; None = every row the paper prints (a subset at smoke)"),
    "n_train": ParamSpec("int", min=2, max=200_000, allow_none=True, default=None,
                         doc="training images per dataset (at most the split); None = preset"),
    "n_test": ParamSpec("int", min=2, max=30_000, allow_none=True, default=None,
                        doc="test images per dataset (at most the split); None = preset"),
}
FID_PARAMS = {
    "fid_samples": ParamSpec("int", min=2, max=50_000, allow_none=True, default=None,
                             doc="images per FID; None = preset (paper: 10,000)"),
    "fid_dims": ParamSpec("int", choices=(64, 192, 768, 2048), allow_none=True, default=None,
                          doc="Inception feature size; None = preset (paper: 2048)"),
}


def experiment_presets(keys: Sequence[str], datasets) -> dict:
    """An experiment's ``presets``: the Section-6 settings ``keys`` of each preset, plus its default
    ``datasets`` (a list, or ``{preset: list}`` with every dataset for a preset not named), narrowed to the preset's
    own ``datasets`` where it names some (the ``cpu`` preset: MNIST only) and the experiment has any of them. A preset
    at which none of those datasets has a size is left out (Table 6 has no ``cpu`` preset: CelebA-HQ has no cpu size)."""
    out = {}
    for name, s in PRESETS.items():
        dl = list(datasets.get(name, DATASETS) if isinstance(datasets, dict) else datasets)
        narrowed = [d for d in dl if d in s.get("datasets", dl)] or dl
        if any(d in s["n_train"] for d in narrowed):
            out[name] = {**{k: s[k] for k in keys}, "datasets": narrowed}
    return out


def job(model: str, dataset: str, p: dict):
    """The one Job of ``model`` on ``dataset`` at the resolved parameters ``p`` (shared by Tables 4–7).

    The dataset's baseline hyperparameters (``model_defaults``), updated by the preset's ``model_kwargs``, are
    passed as model kwargs so they are part of the zoo's cache key.
    """
    from vaebook.data import dataset_spec
    from vaebook.lab import Job

    spec, preset = dataset_spec(dataset), PRESETS[p["preset"]]
    train = {**spec.train, **ds.preset_entry(preset, "train", dataset, {})}
    if p.get("epochs") is not None:
        train["epochs"] = int(p["epochs"])
    n = per_dataset(p, "n_train", dataset)
    kwargs = {**spec.model_defaults.get(model, {}),
              **ds.preset_entry(preset, "model_kwargs", dataset, {}).get(model, {})}
    return Job.make(model, dataset, train, seed=int(p["seed"]), model_kwargs=kwargs,
                    variant=None if n is None else {"n_train": int(n)}, tag=f"{model} on {dataset}")


def load(ctx, dataset: str):
    """The run's images of ``dataset`` (stand-in images only at smoke); a missing dataset raises the data
    layer's error, with how to leave the dataset out when others are selected."""
    from vaebook.data import DataError

    try:
        data = ctx.data(dataset, per_dataset(ctx.p, "n_train", dataset), per_dataset(ctx.p, "n_test", dataset))
    except DataError as e:
        others = [d for d in ctx.p["datasets"] if d != dataset]
        if others:
            raise type(e)(f"{e} (Or run {ctx.experiment.name!r} without it: datasets={others}.)") from e
        raise
    n_test = per_dataset(ctx.p, "n_test", dataset)
    if n_test is not None and len(data.test) < n_test:
        raise ParameterError(f"parameter 'n_test' = {n_test} but {data.spec.label} has {len(data.test):,} test "
                             f"images; choose n_test <= {len(data.test):,}.")
    return data


# -- rows ---------------------------------------------------------------------------------------
def unit_id(dataset: str, model: str) -> str:
    return f"{dataset}--{model}"


def registry_name(label: str, group: str) -> Optional[str]:
    """The registered model with the paper's row ``label`` in ``group`` (None when there is none)."""
    from vaebook.models import MODEL_REGISTRY

    return next((n for n, s in MODEL_REGISTRY.items() if s.label == label and s.group == group), None)


def paper_row_key(r) -> str:
    """Our key of a paper table row (``model`` label, ``group``): the registered model with that label and
    group, else the label itself (so a paper row without a model still shows, as not run)."""
    return registry_name(r["model"], r["group"]) or f"{r['group']}: {r['model']}"


def paper_extra(r) -> dict:
    """Display columns of a paper row (for :func:`vaebook.lab.paper.long_rows`)."""
    return {"model": display(paper_row_key(r)), "group": r["group"]}


def display(name: str) -> str:
    """A row's name for tables and figures, from the registry: label (σx² spelled out) + the group."""
    from vaebook.models import MODEL_REGISTRY

    spec = MODEL_REGISTRY.get(name)
    if spec is None:
        return name
    pretty = spec.label.replace("sigma_x^2", "σx²")
    return pretty + {"trainable_Sigma_x": " (trainable Σx)", "proposed_MLE": " (MLE, ours)"}.get(spec.group, "")


def group(name: str) -> str:
    from vaebook.models import MODEL_REGISTRY

    return MODEL_REGISTRY[name].group if name in MODEL_REGISTRY else ""


def row_info(name: str) -> dict:
    return {"model": display(name), "group": group(name)}


def check_models(p: dict) -> None:
    """Requested models: registered, and each registered for at least one selected dataset."""
    from vaebook.models import MODEL_REGISTRY

    req = p.get("models")
    if not isinstance(req, list):
        return
    bad = [m for m in req if m not in MODEL_REGISTRY]
    if bad:
        raise ParameterError(f"parameter 'models': unknown model(s) {bad}; the registered models are "
                             f"{sorted(MODEL_REGISTRY)}.")
    unused = [m for m in req if not any(MODEL_REGISTRY[m].fits(d) for d in p["datasets"])]
    if unused:
        raise ParameterError(f"parameter 'models': {unused} fit none of the selected datasets {p['datasets']} ("
                             + "; ".join(f"{m}: {MODEL_REGISTRY[m].misfit(p['datasets'][0])}; it fits "
                                         f"{list(MODEL_REGISTRY[m].datasets)}" for m in unused)
                             + "). Fix: select a dataset it fits, or drop it.")


def models_for(p: dict, dataset: str, paper_rows: Sequence[str]) -> list:
    """The rows to run on ``dataset``: the requested models that fit it, or (none requested) the default rows
    for it (:func:`~vaebook.experiments._datasets6.rows_for`), restricted to the preset's subset where it has one."""
    from vaebook.models import MODEL_REGISTRY

    req = p.get("models")
    if isinstance(req, list):
        return [m for m in dict.fromkeys(req) if MODEL_REGISTRY[m].fits(dataset)]
    subset = (req or {}).get(dataset)
    return [m for m in paper_rows if m in MODEL_REGISTRY and (subset is None or m in subset)]


def units(ctx, paper: pd.DataFrame) -> list:
    """The units of a Section-6 table: one per (selected dataset, model row), each with its :func:`job`.
    Each dataset's images are loaded here, so a missing dataset stops the run before anything is written."""
    from vaebook.lab import Unit

    out = []
    for d in ctx.p["datasets"]:
        load(ctx, d)
        rows = ds.rows_for(paper, d)
        out += [Unit.make(unit_id(d, m), [job(m, d, ctx.p)], dataset=d, model=m) for m in models_for(ctx.p, d, rows)]
    return out


def failed_rows(base: dict, metrics: Sequence[str], reason: str) -> list:
    """Cells of a model that did not train (never scored)."""
    return [{**base, "metric": m, "ours": math.nan, "failed": reason or "did not train"} for m in metrics]


def untrained_reason(ctx, tm, data, out: dict) -> str:
    """Why the trained model ``tm`` is not scored ("" when it is): its training failed, or its reconstructions of
    the first 1,000 test images do not vary across inputs (:func:`vaebook.metrics.recon.constant_output_reason`;
    "did not train", never scored). The variance is kept in ``out["recon_var"]``. Skipped at smoke (one step)."""
    from vaebook.metrics.recon import constant_output_reason, reconstruction_variance

    if not tm.ok:
        return tm.reason or "did not train"
    if ctx.smoke:
        return ""
    out["recon_var"] = reconstruction_variance(tm.model, data.test[:1000], int(ctx.p.get("eval_batch") or 500))
    return constant_output_reason(out["recon_var"])


# -- FID scale ---------------------------------------------------------------------------------
def fid_comparable(n_samples: int, dims: int) -> bool:
    """Whether an FID is on the paper's scale (10,000 samples, 2048-d pool3 features)."""
    return dims == PAPER_FID_DIMS and n_samples >= PAPER_FID_SAMPLES


def fid_note(n_samples: int, dims: int) -> str:
    if fid_comparable(n_samples, dims):
        return ""
    return (f"FID from {n_samples:,} samples with {dims}-d Inception features is not comparable with the paper's "
            f"({PAPER_FID_SAMPLES:,} samples, {PAPER_FID_DIMS}-d): only the ordering is compared")


def data_note(data) -> str:
    return f"{data.source}: the numbers say nothing about the paper" if data.generated else ""


def reference(data, dims: int, device):
    """Inception features of the run's test images, the FID/KID reference (cached on disk by content hash)."""
    from vaebook.metrics.fid import reference_features

    return reference_features(f"{data.dataset}-test-{data.test_hash[:16]}", data.test, n=len(data.test), dims=dims,
                              batch_size=fid_batch(device), device=device)


def real_floor(data, n: int, dims: int, device, seed: int = 0) -> dict:
    """The real-vs-real floor: FID and KID of ``n`` *training* images against the test reference, at the sample
    size the models are scored with. A model's score within this of it cannot be told from real data, and FID's
    bias at small ``n`` shows here. ``{"fid", "kid", "kid_std", "n"}``."""
    from vaebook.metrics.fid import FIDStats, frechet_distance, kid_from_features, reference_features

    ref = reference(data, dims, device)
    n = min(int(n), len(data.train))
    feats = reference_features(f"{data.dataset}-train-{data.train_hash[:16]}", data.train, n=n, dims=dims,
                               batch_size=fid_batch(device), device=device)
    a, b = FIDStats.from_features(feats), FIDStats.from_features(ref)
    kid, kid_std = kid_from_features(feats, ref, seed=seed)
    return {"fid": frechet_distance(a.mu, a.sigma, b.mu, b.sigma), "kid": kid, "kid_std": kid_std, "n": n}


def fid_batch(device) -> int:
    return 200 if str(device).startswith("cuda") else 50


# -- verdicts ----------------------------------------------------------------------------------
MLE_ROWS = ("mle-iso-i", "mle-iso-d", "mle-diag-i", "mle-diag-d")


def reference_row(name: str, available: Sequence[str], twin: bool) -> Optional[str]:
    """The row a cell's trend is read against: an MLE model against the trainable-Σx model of the same
    shape (``twin``: Tables 4, 5 — the paper's comparison of their bottom eight rows), else against the
    σx² = 1 VAE (Tables 6, 7); a trainable model against its MLE twin; any other row against the first
    MLE row that ran."""
    if name.startswith("mle-"):
        prefs = ([name.replace("mle-", "trainable-")] if twin else []) + ["vae-gaussian"]
    elif name.startswith("trainable-"):
        prefs = [name.replace("trainable-", "mle-")]
    else:
        prefs = list(MLE_ROWS)
    return next((r for r in prefs if r != name and r in available), None)


#: the magnitude bound of a Section-6 "trend holds": ours within this factor of the paper's value
TREND_MAX_RATIO = 3.0


def judge(twin: bool, notes: Optional[dict] = None, rel_tol: float = 0.1, max_ratio: float = TREND_MAX_RATIO,
          offset=None, bias=None):
    """The verdict rule of Tables 4–7 for :func:`vaebook.lab.compare.compare`.

    ``match`` within ``rel_tol`` of the paper; else ``trend holds`` when ours lies on the same side of
    :func:`reference_row` as the paper's value (:func:`~vaebook.lab.compare.pairwise_trend`; the paper's
    ties within 5 % must stay within 10 %) and within ``max_ratio``× of the paper's value; else ``differs``.
    A cell with a ``note`` (an FID off the paper's scale, stand-in images) cannot ``match``.
    ``notes[(dataset, row)]``: the paper's footnotes. ``offset(dataset)``: a constant every value of the column
    contains whatever the model (e.g. the D/2·ln 2π of a Gaussian NLL); the match tolerance and the magnitude
    bound are read on the values minus it, so a tolerance of 10 % cannot be met by the constant alone.
    ``bias(dataset, metric)``: what our own value carries that the paper's does not (FID's bias at our sample size:
    the real-vs-real FID at the same N, :func:`real_floor`); the magnitude bound is read on ours minus it, so a
    model no worse than real data at N = 300 is not ruled out by the bias alone. None or 0: no correction.
    """
    notes = notes or {}

    def rule(cell: pd.Series, df: pd.DataFrame) -> tuple:
        c = float(offset(cell["dataset"])) if offset is not None else 0.0
        b = float((bias(cell["dataset"], cell["metric"]) if bias is not None else 0.0) or 0.0)
        same = df[(df["dataset"] == cell["dataset"]) & (df["metric"] == cell["metric"]) & df["ours"].notna()]
        ref = reference_row(cell["row"], list(same["row"]), twin)
        trend = None
        if ref is not None:
            r = same[same["row"] == ref].iloc[0]
            trend = pairwise_trend(cell["paper"], r["paper"], cell["ours"], r["ours"], display(ref))
        note = cell.get("note") if isinstance(cell.get("note"), str) else ""
        text = "; ".join(x for x in (note, notes.get((cell["dataset"], cell["row"]), "")) if x)
        if c:
            text = "; ".join(x for x in (text, f"tolerance and magnitude bound read on the values minus the constant "
                                                f"{c:.1f} every model's value contains") if x)
        if b:
            text = "; ".join(x for x in (text, f"magnitude bound read on ours minus FID's bias at our sample size "
                                                f"(real-vs-real FID {b:.3g})") if x)
        po, oo = cell["paper"] - c, cell["ours"] - c - b
        v, why = verdict(po, oo, rel_tol=0.0 if note else rel_tol, trend=trend, note=text, max_ratio=max_ratio)
        if c or b:  # the reason quotes the values as printed
            why = why.replace(f"ours {fmt(oo)} vs paper {fmt(po)}",
                              f"ours {fmt(cell['ours'])} vs paper {fmt(cell['paper'])} (read as {fmt(oo)} vs "
                              f"{fmt(po)})")
        if note and v == "match":  # equal by chance: a value off the paper's scale cannot match
            v = "trend holds" if (trend and trend[0]) else "differs"
        return v, why

    return rule


def fid_floors(ctx, datasets) -> dict:
    """FID's bias at the run's N per dataset (``{dataset: real_floor(...)}``), for :func:`fid_bias` and the page."""
    p = ctx.p
    return {d: real_floor(load(ctx, d), int(per_dataset(p, "fid_samples", d)), int(p["fid_dims"]), ctx.device,
                          int(p["seed"])) for d in datasets}


def fid_bias(floors: dict):
    """``bias(dataset, metric)`` for :func:`judge`: the real-vs-real FID at the run's N for FID columns (``floors``:
    dataset -> :func:`real_floor`'s dict, as in a page's ``settings[d]["floor"]``), 0 elsewhere."""
    def bias(dataset: str, metric: str) -> float:
        f = (floors or {}).get(dataset) or {}
        return float(f.get("fid") or 0.0) if str(metric).startswith("fid") else 0.0

    return bias


def recount(table: pd.DataFrame, rule, notes: dict, paper: pd.DataFrame, datasets: Sequence[str],
            metric_order: Sequence[str] = ()) -> pd.DataFrame:
    """A committed comparison table judged again under today's ``rule`` from its own values: ours and the paper's
    columns are kept, each scored cell gets the verdict and reason the rule gives now. ``notes[metric]``: the note a
    cell of that metric carried when it was judged (e.g. :func:`fid_note` of the run's sample size). Cells that were
    not scored (ours only, did not train, not run) keep their verdict."""
    from vaebook.lab.compare import SCORED, compare

    scored = table[table["verdict"].isin(SCORED)]
    ours = scored[["row", "dataset", "metric", "ours", *(c for c in ("model", "group") if c in scored)]].copy()
    ours["note"] = ours["metric"].map(lambda m: notes.get(m, ""))
    again = compare(ours, paper[paper.set_index(["row", "dataset", "metric"]).index.isin(
        scored.set_index(["row", "dataset", "metric"]).index)], rule).set_index(["row", "dataset", "metric"])
    out = table.copy()
    for i, r in out.iterrows():
        k = (r["row"], r["dataset"], r["metric"])
        if r["verdict"] in SCORED and k in again.index:
            out.at[i, "verdict"], out.at[i, "reason"] = again.at[k, "verdict"], again.at[k, "reason"]
    return out


def finish_table(df: pd.DataFrame, ran: set, datasets: Sequence[str], metric_hint: str = "not computed in this run",
                 dataset_order: Sequence[str] = DATASETS, metric_order: Sequence[str] = ()) -> pd.DataFrame:
    """Say why a paper cell was not run (dataset / model / metric not selected: ``metric_hint``), drop the
    helper columns, and sort: datasets in ``dataset_order``, then metrics in ``metric_order`` (the paper's
    column order), then rows as given. ``ran``: the (row, dataset) pairs that were run."""
    df = df.drop(columns=[c for c in ("note",) if c in df]).copy()
    if len(df):
        rows = {r: i for i, r in enumerate(dict.fromkeys(df["row"]))}
        key = pd.DataFrame({"d": df["dataset"].map(lambda d: list(dataset_order).index(d) if d in dataset_order
                                                    else len(dataset_order)),
                            "r": df["row"].map(rows),
                            "m": df["metric"].map(lambda m: list(metric_order).index(m) if m in metric_order
                                                  else len(metric_order))}, index=df.index)
        df = df.loc[key.sort_values(["d", "m", "r"], kind="stable").index].reset_index(drop=True)
    for i, r in df.iterrows():
        if r["verdict"] is None or (isinstance(r["verdict"], float) and math.isnan(r["verdict"])):
            if r["reason"] != "not run":
                continue
            if r["dataset"] not in datasets:
                why = f"not run: dataset {r['dataset']!r} not selected (parameter 'datasets')"
            elif (r["row"], r["dataset"]) not in ran:
                why = "not run: model not selected (parameter 'models'; the smoke preset runs a subset)"
            else:
                why = f"not run: {metric_hint}"
            df.at[i, "reason"] = why
    return df


def order(paper: pd.DataFrame, ours: pd.DataFrame) -> list:
    """Row keys in display order: the paper's rows, then ours in registry order."""
    from vaebook.models import MODEL_REGISTRY

    rows = list(dict.fromkeys(paper["row"])) if len(paper) else []
    extra = set(ours["row"]) if len(ours) else set()
    return rows + [n for n in MODEL_REGISTRY if n in extra and n not in rows]


def epoch_seconds(history: list, n_train: int, batch_size: int) -> float:
    """Seconds per full epoch from a training history (time per step × steps per epoch, so the partial
    epochs of short runs count correctly)."""
    prev, rates = 0, []
    for rec in history:
        steps = int(rec.get("step", 0)) - prev
        prev = int(rec.get("step", prev))
        if steps > 0 and rec.get("time_s") is not None:
            rates.append(float(rec["time_s"]) / steps)
    if not rates:
        return math.nan
    return sum(rates) / len(rates) * max(1, n_train // batch_size)


# -- claims (the status page) ------------------------------------------------------------------
#: training images of the paper's splits (the whole training split; CelebA-HQ: 27,000 of 30,000)
PAPER_TRAIN_IMAGES = {"mnist": 60_000, "celeba64": 162_770, "celebahq128": 27_000}


def is_ae_type(row: str) -> bool:
    """AE, WAE and the RAE variants (the autoencoder-type baselines of Tables 4-6)."""
    return row == "ae" or row.startswith(("wae-", "rae"))


def is_vae(row: str) -> bool:
    """The VAE rows: the baselines with a likelihood (σx² = 1, Bernoulli, MoL), trainable Σx and MLE Σx."""
    return row.startswith(("vae-", "trainable-", "mle-"))


def cells(df: pd.DataFrame, dataset: str, metric: str, col: str = "ours") -> dict:
    """``{row: value}`` of one (dataset, metric) column of a comparison table (missing values left out)."""
    if df is None or df.empty:
        return {}
    d = df[(df["dataset"] == dataset) & (df["metric"] == metric)]
    return {r: float(v) for r, v in zip(d["row"], d[col]) if not pd.isna(v)}


def both(df: pd.DataFrame, dataset: str, metric: str) -> tuple:
    """(ours, paper) ``{row: value}`` of one column over the rows where both have a value."""
    o, p = cells(df, dataset, metric, "ours"), cells(df, dataset, metric, "paper")
    keep = [r for r in o if r in p]
    return {r: o[r] for r in keep}, {r: p[r] for r in keep}


def dataset_label(d: str) -> str:
    from vaebook.data import dataset_spec

    try:
        return dataset_spec(d).label
    except Exception:  # noqa: BLE001 - an unregistered name: show it as it is
        return d


def _trained(p: dict, d: str):
    """``(images, epochs, batch size, steps)`` of a dataset's models under run parameters ``p`` (``steps`` capped
    by ``max_steps``; ``None`` where the image count is unknown)."""
    import math as _m

    train = job("mle-iso-i", d, p).train_dict
    n = per_dataset(p, "n_train", d) or PAPER_TRAIN_IMAGES.get(d)
    bs, ep = int(train.get("batch_size", 64)), int(train.get("epochs", 1))
    steps = ep * _m.ceil(int(n) / bs) if n else None
    if steps is not None and train.get("max_steps"):
        steps = min(steps, int(train["max_steps"]))
    return n, ep, bs, steps


def run_scale(res, datasets: Sequence[str] = (), evals: Sequence[tuple] = ()) -> str:
    """Our run as a fraction of the paper's, for the status page: per dataset the optimisation steps and training
    images (App. I epochs and batch sizes on the whole split), then ``evals`` (``(label, ours, paper)``, e.g. FID
    samples), then the seeds (one run per model)."""
    import math as _m

    from vaebook.data import dataset_spec
    from vaebook.lab.status import pct

    if res is None:
        return "–"
    p = dict(res.provenance.get("parameters") or {})
    if p.get("preset") not in PRESETS:
        return "unknown preset"
    parts = []
    for d in datasets or p.get("datasets") or []:
        spec = dataset_spec(d)
        paper = spec.train
        n_full = PAPER_TRAIN_IMAGES.get(d)
        try:
            n, _, _, steps = _trained(p, d)
        except Exception:  # noqa: BLE001 - a provenance without the settings: say so
            parts.append(f"{spec.label}: ?")
            continue
        paper_steps = int(paper.get("epochs", 1)) * _m.ceil(n_full / int(paper.get("batch_size", 64))) if n_full else 0
        parts.append(f"{spec.label}: {pct(steps, paper_steps)} of the steps, {pct(n, n_full)} of the images")
    for label, ours, paper in evals:
        parts.append(f"{label} {pct(ours, paper)}")
    seed = p.get("seed", 0)
    parts.append(f"1 seed ({seed}) per model")
    return "; ".join(parts)


def training_line(res, datasets: Sequence[str] = ()) -> str:
    """Markdown: how the run's models were trained (images, epochs, steps per dataset) and that every number is
    one training run (one seed)."""
    from vaebook.lab.display import fmt

    if res is None:
        return ""
    p = dict(res.provenance.get("parameters") or {})
    if p.get("preset") not in PRESETS:
        return ""
    parts = []
    for d in datasets or p.get("datasets") or []:
        try:
            n, ep, bs, steps = _trained(p, d)
        except Exception:  # noqa: BLE001 - a provenance without the settings
            continue
        full = ep * math.ceil(int(n) / bs) if n else None
        if steps and full and steps < full:  # capped by max_steps: say the fraction of an epoch
            parts.append(f"{dataset_label(d)} on {fmt(n, ',.0f', '?')} training images, {fmt(steps, ',.0f')} steps of "
                         f"batch {bs} ({steps / math.ceil(int(n) / bs):.2g} epoch)")
            continue
        parts.append(f"{dataset_label(d)} on {fmt(n, ',.0f', '?')} training images, {ep} epoch{'s' * (ep != 1)} "
                     f"of batch {bs}" + (f" ({fmt(steps, ',.0f')} step{'s' * (steps != 1)})" if steps else ""))
    if not parts:
        return ""
    return ("Trained: " + "; ".join(parts) + f". One seed per model (seed {p.get('seed', 0)}): every number below "
            "is a single training run.")


#: GFLOP of one training step per image (forward + backward, FlopCounterMode; results/benchmarks/cpu/train_speed.csv)
TRAIN_GFLOP = {"mnist": 0.2009, "celeba64": 19.19}
#: GFLOP of Inception pool3 features per image at 299² (pytorch-fid's network)
INCEPTION_GFLOP = 11.46
#: the sustained throughput the GPU estimate assumes (TFLOP/s): one H100/H200 at ~10–20 % of its bf16 peak
GPU_TFLOPS = 100.0
#: what this project's 2-core CPU sustains on these nets (TFLOP/s; train_speed.csv: 0.13–0.16)
CPU_TFLOPS = 0.15


def _span(seconds: float) -> str:
    h = seconds / 3600
    if h < 1:
        return f"{max(1, round(seconds / 60))} min"
    return f"{h:.2g} h" if h < 48 else f"{h / 24:.0f} days"


def gpu_notice(dataset: str, n_models: int, fid_sets: int, name: str, select: bool = True) -> str:
    """Markdown: why ``dataset`` was not run here, what it needs (command, FLOP-based time, hardware).
    ``select``: the experiment takes a ``datasets`` parameter (the command names the dataset)."""
    from vaebook.data import dataset_spec

    spec = dataset_spec(dataset)
    cmd = (f"`python -m vaebook.lab run {name} --preset full --device cuda"
           + (f" -p datasets='[\"{dataset}\"]'`" if select else "`"))
    n, ep = PAPER_TRAIN_IMAGES.get(dataset), int(spec.train.get("epochs", 1))
    if dataset not in TRAIN_GFLOP or not n:
        return f"**{spec.label}: not run.** It needs a GPU ({cmd}); its cost is not estimated here."
    train = n_models * ep * n * TRAIN_GFLOP[dataset] * 1e9
    fid = fid_sets * PAPER_FID_SAMPLES * INCEPTION_GFLOP * 1e9
    total = train + fid
    fid_txt = (f", plus {fid_sets} FID sets of {PAPER_FID_SAMPLES:,} images ≈ {fid / 1e15:.2g} PFLOP" if fid_sets
               else " (its evaluation not counted)")
    return (f"**{spec.label}: not run.** At the paper's scale it is {n_models} models × {ep} epochs × {n:,} images × "
            f"{TRAIN_GFLOP[dataset]:g} GFLOP per image-step ≈ {train / 1e18:.2g} EFLOP of training{fid_txt}: about {_span(total / (GPU_TFLOPS * 1e12))} "
            f"on one H100/H200 at a sustained {GPU_TFLOPS:g} TFLOP/s (our estimate from FLOP counts, not measured), "
            f"about {_span(total / (CPU_TFLOPS * 1e12))} on the 2 CPU cores this book was built on. "
            f"Command: {cmd}.")


class Section6Experiment(Experiment):
    """What the experiments of Tables 4–7 share: one unit per (dataset, model row) from :func:`units`, the model
    and dataset checks, an evaluation key without the selection, and the frame of the page's results paragraph.
    A subclass defines ``table``, ``paper_frame`` and ``results_parts``."""

    table: str = ""

    def results_parts(self, res, t: pd.DataFrame, st: dict, ran: list) -> list:
        """The table's own sentences of the results paragraph (``st``: settings per dataset run)."""
        return []

    def fid_sets(self, t: pd.DataFrame, dataset: str) -> int:
        """FID sample sets the paper's version of this table needs on ``dataset`` (for :func:`gpu_notice`)."""
        d = t[t["dataset"] == dataset]
        return int(d["metric"].astype(str).str.startswith("fid").sum())

    def not_run_notices(self, t: pd.DataFrame, ran: list) -> list:
        """One notice per dataset of the paper's table that this run left out (CelebA on a CPU)."""
        out = []
        for d in dict.fromkeys(t["dataset"]):
            if d in ran:
                continue
            rows = t.loc[(t["dataset"] == d) & t["paper"].notna(), "row"]
            out.append("\n\n" + gpu_notice(d, int(rows.nunique()), self.fid_sets(t, d), self.name,
                                             "datasets" in self.params))
        return out

    def results_markdown(self, res) -> str:
        """The page's results paragraph from the numbers this run has: how it was trained, the table's own
        findings, the verdict counts (nothing when there are no results)."""
        from vaebook.lab.compare import verdict_line

        if res is None or res.tables.get(self.table) is None:
            return ""
        t = res.tables[self.table]
        st = res.metrics.get("settings", {})
        ran = [d for d in dict.fromkeys(t["dataset"]) if d in st]  # in the table's order
        out = [f"**Results.** {training_line(res, ran)}", *self.results_parts(res, t, st, ran),
               *self.not_run_notices(t, ran)]
        line = verdict_line(t)
        if line:
            out.append(f"\n\nVerdicts over all cells of {self.table.replace('table', 'Table ')}: {line}.")
        if isinstance(res.metrics.get("recounted"), str):
            out.append(f"(The {res.metrics['recounted']}.)")
        return " ".join(out).replace(" \n\n", "\n\n")

    def paper_frame(self) -> pd.DataFrame:
        raise NotImplementedError

    def eval_key(self, unit, p: dict) -> dict:
        """Every parameter but the selection (``datasets``, ``models``: the unit and its job name those), with the
        per-dataset settings reduced to the unit's dataset, so adding a dataset or a model does not re-evaluate the
        others."""
        return {k: v for k, v in ds.eval_view(p, unit.meta.get("dataset")).items()
                if k not in ("mode", "device", "results_dir", "data_root", "datasets", "models")}

    def check(self, p: dict) -> None:
        """The selected datasets (any registered one), their sizes at the preset (an error where there is none)
        and the requested models."""
        ds.check_datasets(p, self.name, self.presets[p["preset"]]["datasets"])
        ds.fill_sizes(p, self.name)
        check_models(p)

    def plan(self, ctx) -> list:
        """One unit per (dataset, model row); a missing dataset stops here, before anything is written."""
        return units(ctx, self.paper_frame())


__all__ = ["ANY", "recount", "fid_bias", "fid_floors", "PRESETS", "DATASETS", "SIZE_PARAMS", "FID_PARAMS", "experiment_presets", "per_dataset", "job", "load",
           "unit_id", "registry_name", "paper_row_key", "paper_extra", "display", "group", "row_info", "check_models",
           "models_for", "units", "failed_rows", "untrained_reason", "fid_comparable", "fid_note", "data_note", "reference", "real_floor", "fid_batch",
           "reference_row", "judge", "finish_table", "order", "epoch_seconds", "Section6Experiment",
           "PAPER_TRAIN_IMAGES", "TRAIN_GFLOP", "gpu_notice", "is_ae_type", "is_vae", "cells", "both", "dataset_label", "run_scale", "training_line"]
