"""Beyond the paper (issue #16): a low-rank decoder covariance Σx = σ²I + UUᵀ estimated by maximum likelihood
(:mod:`vaebook.variance.lowrank`), on MNIST at the Section-6 scale, against MLE Iso-I and Diag-I.

**Hypothesis under test.** Σx⁻¹ down-weights the residual directions Û captures (the dominant ones), so the
decoder is pushed less to fit them: a low-rank Σx may reach a higher likelihood while its means μθ come out
*smoother* (more of the residual is explained as correlated noise instead of being fitted). Both halves are read
from the numbers, per rank, against each baseline; no outcome is fixed in the text.

Per model (one :class:`~vaebook.lab.Unit`; the models are :func:`vaebook.experiments._section6.job` zoo entries,
the same ones Table 4 trains for Iso-I and Diag-I):

* ``mse``: E‖x − μθ(μφ(x))‖² per test image (Table 4's MSE);
* ``grad_ratio``: the reconstructions' finite-difference gradient energy Σ(Δ_h μ)² + (Δ_v μ)² over the test
  images' own (1 = as sharp as the data, < 1 smoother) — a direct smoothness measure beside the MSE;
* ``nll_deq``: the IWAE bound (k importance samples) on −log p(y) for *dequantised* test images
  y = x + u/256, u ~ U[0,1)^d (seeded, the same u for every model), in nats per image. A continuous density on
  [0,1]-valued data is unbounded (it can pile up on the 256 grey levels); on y the density of the model is a
  normalised density and, since the bins [x, x + 1/256) are disjoint, ``bpd`` = (nll_deq + d ln 256)/(d ln 2) is a
  valid upper bound on the bits per dimension of the 8-bit images (Theis et al. 2016). Σx at evaluation: the
  running training estimate (Iso-I, Diag-I: their EMA; low-rank: the stored PPCA fit), fixed before any test image
  is seen;
* calibration of the whitened residual w = Σx^{-1/2}(x − μθ(z)), z ~ q(z|x) one draw per test image (the residual
  the MLE of Σx is fitted to): ``white_var`` = E w² (1 when Σx matches the residuals' second moment) and
  ``white_lag1``, the lag-1 autocorrelation of w along pixel rows (0 when Σx captures neighbouring pixels'
  correlation); ``raw_lag1`` is the same of the raw residual, for reference;
* ``s_per_epoch``: training seconds per epoch (from the zoo's history);
* FID and KID of images from the prior and from a 10-component GMM fitted to the training codes (as Table 4).

Presets: ``smoke`` (a code test: one training step, a few images, CPU seconds) and ``cpu`` (the Section-6 CPU
scale: 600 steps of batch 64 on all MNIST training images, 1,000 test images, k = 500, FID from 500 samples).
"""
from __future__ import annotations

import math

import pandas as pd
import torch

from vaebook._util import encode_means, eval_mode, iter_batches, model_device
from vaebook.experiments import _section6 as scale
from vaebook.experiments._lowrank_claims import (CLAIMS, SECTION, apply_guard, guard, guarded, reading, rules,
                                                 total_variance)
from vaebook.experiments._lowrank_claims import claims as read_claims
from vaebook.experiments._lowrank_display import eigen_figure, samples_figure, spectrum_figure
from vaebook.lab import Experiment, ParamSpec, Unit, rows_frame
from vaebook.lab.compare import compare, verdict_counts
from vaebook.lab.display import fmt
from vaebook.metrics.fid import fid_kid
from vaebook.metrics.nll import iwae_nll
from vaebook.posterior import fit_sampler, generate_images, keep_first, source_skip_reason

DATASET = "mnist"
TABLE = "table_lowrank"
BASELINES = ("mle-iso-i", "mle-diag-i")
RANKS = (1, 4, 16, 64)
LOWRANK = tuple(f"lowrank-r{r}" for r in RANKS)
DEFAULT_MODELS = BASELINES + LOWRANK
SOURCES = ("prior", "gmm10")
METRICS = ("mse", "grad_ratio", "nll_deq", "bpd", "white_var", "white_lag1", "raw_lag1", "s_per_epoch",
           "fid_prior", "kid_prior", "fid_gmm10", "kid_gmm10")
METRIC_LABELS = {"mse": "MSE", "grad_ratio": "gradient energy / data's", "nll_deq": "NLL (dequantised, nats)",
                 "bpd": "bits/dim bound", "white_var": "whitened E w²", "white_lag1": "whitened lag-1 corr.",
                 "raw_lag1": "raw lag-1 corr.", "s_per_epoch": "s / epoch", "fid_prior": "FID prior",
                 "kid_prior": "KID prior", "fid_gmm10": "FID GMM-10", "kid_gmm10": "KID GMM-10"}
#: a paired difference counts as one when it is beyond this many standard errors
SE_BAND = 2.0
#: importance samples decoded at once
K_CHUNK = 50

_SCALE_KEYS = ["n_train", "n_test", "fid_samples", "fid_dims", "gmm_max_iter", "eval_batch", "iwae_k"]
PRESETS = {
    name: {**{k: scale.PRESETS[name][k] for k in _SCALE_KEYS}, "datasets": [DATASET],
           "models": models}
    for name, models in (("smoke", ["mle-iso-i", "mle-diag-i", "lowrank-r4"]), ("cpu", list(DEFAULT_MODELS)))
}


class LowRank(Experiment):
    """Low-rank Σx = σ²I + UUᵀ (r ∈ {1, 4, 16, 64}) against MLE Iso-I and Diag-I on MNIST (see the module docstring)."""

    name = "lowrank"
    title = "Beyond the paper: a low-rank decoder covariance"
    fixed_datasets = ("MNIST ('mnist') only: its verdicts are read against Table 4's MNIST models, the ones it "
                      "reuses from the generation page")
    SECTION, CLAIMS = SECTION, CLAIMS
    presets = PRESETS
    full_cost = ("The `cpu` preset trains six MNIST models (about 3–4 min each on 2 CPU cores; Iso-I and Diag-I are "
                 "reused when the generation page trained them) and scores each with k = 500 importance samples on "
                 "1,000 test images and 2 × 500 FID samples: roughly 45–60 min.")
    params = {
        "models": ParamSpec("list", allow_none=True, default=None,
                            doc=f"registered model names; None = {list(DEFAULT_MODELS)} (a subset at smoke)"),
        "n_train": scale.SIZE_PARAMS["n_train"], "n_test": scale.SIZE_PARAMS["n_test"],
        **scale.FID_PARAMS,
        "iwae_k": ParamSpec("int", min=1, max=5_000, allow_none=True, default=None,
                            doc="importance samples of the NLL bound; None = preset"),
        "figure_images": ParamSpec("int", min=1, max=16, default=8, doc="eigen-images / samples per strip"),
    }

    # -- the experiment -------------------------------------------------------------------------
    def check(self, p: dict) -> None:
        p["datasets"] = [DATASET]
        scale.check_models(p)

    def eval_key(self, unit, p: dict) -> dict:
        """Every parameter but the selection, so adding a model does not re-evaluate the others."""
        return {k: v for k, v in p.items() if k not in ("mode", "device", "results_dir", "data_root", "models")}

    def plan(self, ctx) -> list:
        scale.load(ctx, DATASET)
        return [Unit.make(scale.unit_id(DATASET, m), [scale.job(m, DATASET, ctx.p)], dataset=DATASET, model=m)
                for m in dict.fromkeys(ctx.p["models"])]

    def evaluate(self, unit: Unit, ctx) -> dict:
        p, m = ctx.p, unit.meta["model"]
        job, tm, data = unit.jobs[0], ctx.model(unit.jobs[0]), scale.load(ctx, DATASET)
        base = {"row": m, "dataset": DATASET, **scale.row_info(m)}
        out = {"model": m, "from_cache": tm.from_cache}
        reason = scale.untrained_reason(ctx, tm, data, out)
        if reason:
            return {**out, "rows": scale.failed_rows(base, METRICS, reason), "reason": reason}
        model, seed, bs, n_show = tm.model.eval(), int(p["seed"]), int(p["eval_batch"]), int(p["figure_images"])
        dev, dims, n_fid = model_device(model), int(p["fid_dims"]), int(scale.per_dataset(p, "fid_samples", DATASET))
        dnote = scale.data_note(data)
        vals: dict = {}
        per_image: dict = {}
        rec = recon_stats(model, data.test, bs)
        vals["mse"], per_image["mse"] = float(rec["mse"].mean()), rec["mse"]
        vals["grad_ratio"] = float(rec["grad"].sum() / rec["grad_data"].sum())
        per_image["grad"] = rec["grad"]
        reasons = {}
        if getattr(model, "has_likelihood", False) and hasattr(model, "variance"):
            y = dequantise(data.test, seed)
            nll = iwae_nll(model, y, k=int(p["iwae_k"]), batch_size=max(1, min(bs, 100)), k_chunk=K_CHUNK, seed=seed)
            d = math.prod(data.test.shape[1:])
            vals["nll_deq"] = nll["nll"]
            vals["bpd"] = (nll["nll"] + d * math.log(256)) / (d * math.log(2))
            per_image["nll_deq"] = nll["nll_per_image"].double()
            vals.update(calibration(model, data.test, bs, seed))
        else:
            for k in ("nll_deq", "bpd", "white_var", "white_lag1", "raw_lag1"):
                vals[k], reasons[k] = math.nan, "not computed: the model has no Gaussian likelihood p(x|z)"
        vals["s_per_epoch"] = scale.epoch_seconds(tm.history, len(data.train), job.train_dict["batch_size"])
        images = {"recon": model.reconstruct(data.test[:n_show].to(dev)).cpu()}
        ref, latents = scale.reference(data, dims, dev), None
        fnote = "; ".join(x for x in (scale.fid_note(n_fid, dims), dnote) if x)
        kid_std = {}
        for src in SOURCES:
            skip = source_skip_reason(model, src, len(data.train))
            if skip:
                for k in (f"fid_{src}", f"kid_{src}"):
                    vals[k], reasons[k] = math.nan, f"not computed: {skip}"
                continue
            if src != "prior" and latents is None:
                latents = encode_means(model, data.train, bs)
            sampler = fit_sampler(model, src, latents, seed, None, int(p["gmm_max_iter"]))
            shown: list = []
            stream = keep_first(generate_images(model, n_fid, src, sampler, seed=seed, batch_size=bs), n_show, shown)
            v = fid_kid(stream, ref, batch_size=scale.fid_batch(dev), device=dev, max_images=n_fid, seed=seed)
            vals[f"fid_{src}"], vals[f"kid_{src}"], kid_std[f"kid_{src}"] = v["fid"], v["kid"], v["kid_std"]
            reasons[f"fid_{src}"] = fnote
            images[src] = torch.cat(shown)[:n_show] if shown else None
        out.update(values=vals, per_image=per_image, images=images, kid_std=kid_std,
                   device=str(tm.meta.get("device", dev)), variance=variance_summary(model, n_show))
        out["rows"] = [{**base, "metric": k, "ours": vals[k],
                        **({"reason": reasons[k]} if reasons.get(k) else {})} for k in METRICS if k in vals]
        return out

    def report(self, ctx, results: dict, run) -> None:
        ours = rows_frame(results)
        order = [m for m in ctx.p["models"]]
        table = compare(ours, pd.DataFrame(), lambda c, t: ("ours only", ""), order)
        key = table.assign(_m=table["metric"].map(lambda x: METRICS.index(x) if x in METRICS else len(METRICS)))
        table = key.sort_values(["_m"], kind="stable").drop(columns="_m").reset_index(drop=True)
        ok = {r["model"]: r for r in results.values() if "reason" not in r}
        data = scale.load(ctx, DATASET)
        job = scale.job(ctx.p["models"][0], DATASET, ctx.p)
        wide = pd.DataFrame([{"model": scale.display(m), **{METRIC_LABELS[k]: r["values"].get(k) for k in METRICS}}
                             for m, r in ok.items()])
        comps = comparisons({m: r["per_image"] for m, r in ok.items()}, {m: r["values"] for m, r in ok.items()})
        # a model whose test MSE is not below tr C (the test images' mean image's) is worse than a constant output
        tr_c = total_variance(data.test)
        excluded = guard({m: r["values"] for m, r in ok.items()}, tr_c)
        tables = apply_guard({TABLE: table, "table_lowrank_wide": wide, "table_lowrank_hypothesis": comps}, excluded)
        for name, t in tables.items():
            if name == TABLE or len(t):
                run.write_table(name, t)
        eig = {m: r["variance"] for m, r in ok.items() if r["variance"].get("eigen_images") is not None}
        if eig:
            run.save_figure(eigen_figure(eig), "fig_eigen_images")
            run.save_figure(spectrum_figure(eig), "fig_spectrum")
        imgs = {m: r["images"] for m, r in ok.items()}
        if imgs:
            run.save_figure(samples_figure(imgs, data.test[:int(ctx.p["figure_images"])]), "fig_samples")
        n_fid, dims = int(scale.per_dataset(ctx.p, "fid_samples", DATASET)), int(ctx.p["fid_dims"])
        settings = {"data": data.describe(), "generated": data.generated, "n_train": len(data.train),
                    "n_test": len(data.test), "train": job.train_dict, "iwae_k": int(ctx.p["iwae_k"]),
                    "fid_samples": n_fid, "fid_dims": dims, "fid_comparable": scale.fid_comparable(n_fid, dims),
                    "models": list(ctx.p["models"]), "from_cache": {r["model"]: r["from_cache"] for r in results.values()},
                    "did_not_train": {r["model"]: r["reason"] for r in results.values() if "reason" in r},
                    "tr_c_test": tr_c, "worse_than_constant": excluded}
        run.write_metrics({"values": {m: r["values"] for m, r in ok.items()},
                           "variance": {m: {k: v for k, v in r["variance"].items() if k != "eigen_images"}
                                        for m, r in ok.items()},
                           "kid_std": {m: r["kid_std"] for m, r in ok.items()},
                           "hypothesis": reading(comps, excluded, SE_BAND), "settings": {DATASET: settings},
                           "verdicts": verdict_counts(table)})

    # -- the page -------------------------------------------------------------------------------
    def find(self, results_dir="results", table=None, below=None):
        """The largest-scale results (:meth:`Experiment.find`) with the worse-than-a-constant guard applied to their
        tables (:func:`~vaebook.experiments._lowrank_claims.guarded`: nothing recomputed but tr C)."""
        res = super().find(results_dir, table, below)
        if res is not None:
            guarded(res)
        return res

    def claims(self, res) -> list:
        """The hypothesis as claims (:func:`~vaebook.experiments._lowrank_claims.claims`), section :data:`SECTION`."""
        return read_claims(res, SE_BAND)

    def summary(self, res) -> dict:
        """Strings for the page's prose (glue); 'n/a' where a result lacks a value, 'no results yet' without results."""
        keys = ("lr_label", "lr_run", "lr_likelihood", "lr_smooth", "lr_outcome", "lr_calibration", "lr_time",
                "lr_settings", "lr_guard")
        out = {k: "no results yet" for k in keys}
        out["lr_claim_rules"] = rules(SE_BAND)
        if res is None:
            return out
        out.update({k: "n/a" for k in keys})
        out["lr_label"] = res.label
        out["lr_run"] = scale.training_line(res, [DATASET]) or "n/a"
        m = res.metrics
        st = (m.get("settings") or {}).get(DATASET, {})
        if st:
            out["lr_settings"] = (f"{fmt(st.get('n_test'), ',.0f')} test images, k = {fmt(st.get('iwae_k'), '.0f')} "
                                  f"importance samples, FID/KID from {fmt(st.get('fid_samples'), ',.0f')} samples "
                                  f"with {fmt(st.get('fid_dims'), '.0f')}-d features")
        comps = res.tables.get("table_lowrank_hypothesis")
        excluded, tr_c, src = guarded(res)
        bad = " ".join(f"{scale.display(k)}: {v.removeprefix('did not train: ')}; it is not evidence."
                       for k, v in excluded.items())
        out["lr_guard"] = (f"tr C of the test images = {fmt(tr_c, '.4g')} ({src}). "
                           + (bad or "Every model's test MSE is below it.")) if tr_c is not None else f"Not read: {src}."
        h = reading(comps, excluded, SE_BAND) if comps is not None else (m.get("hypothesis") or {})
        out.update({k: h[k] for k in ("lr_likelihood", "lr_smooth", "lr_outcome") if h.get(k)})
        order = list(st.get("models") or [])
        vals = dict(sorted((m.get("values") or {}).items(), key=lambda kv: order.index(kv[0]) if kv[0] in order
                           else len(order)))
        cal = [f"{scale.display(n)} E w² = {fmt(v.get('white_var'), '.3g')}, lag-1 {fmt(v.get('white_lag1'), '.2f')} "
               f"(raw {fmt(v.get('raw_lag1'), '.2f')})" for n, v in vals.items() if v.get("white_var") is not None]
        if cal:
            out["lr_calibration"] = ("Whitened residuals w = Σx^{-1/2}(x − μθ(z)) on the test images (ideal: E w² = 1, "
                                     "lag-1 correlation 0): " + "; ".join(cal) + ".")
        t = [f"{scale.display(n)} {fmt(v.get('s_per_epoch'), '.0f')} s" for n, v in vals.items()
             if v.get("s_per_epoch") is not None and not math.isnan(float(v["s_per_epoch"]))]
        if t:
            out["lr_time"] = "Training time per epoch (from the zoo's histories, on the device each model trained on): " \
                             + "; ".join(t) + "."
        return out


# -- measurements ----------------------------------------------------------------------------------------
def dequantise(images: torch.Tensor, seed: int) -> torch.Tensor:
    """y = x + u/256, u ~ U[0,1)^d drawn from ``seed`` (the same for every model); ``images`` float in [0, 1]."""
    g = torch.Generator().manual_seed(int(seed) + 256)
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return x + torch.rand(x.shape, generator=g) / 256.0


def grad_energy(x: torch.Tensor) -> torch.Tensor:
    """Per image Σ (Δ_h x)² + (Δ_v x)² (finite differences along columns and rows), ``B×C×H×W`` → ``B``."""
    return (x[..., :, 1:] - x[..., :, :-1]).pow(2).flatten(1).sum(1) + \
        (x[..., 1:, :] - x[..., :-1, :]).pow(2).flatten(1).sum(1)


@torch.no_grad()
def recon_stats(model, images: torch.Tensor, batch_size: int) -> dict:
    """Per test image: ``mse`` ‖x − μθ(μφ(x))‖², ``grad`` the reconstruction's gradient energy, ``grad_data`` the
    image's own (float64, CPU)."""
    dev, out = model_device(model), {"mse": [], "grad": [], "grad_data": []}
    with eval_mode(model):
        for x in iter_batches(images, batch_size):
            x = x.to(dev)
            mu = model.reconstruct(x)
            out["mse"].append((x - mu).pow(2).flatten(1).sum(1).double().cpu())
            out["grad"].append(grad_energy(mu).double().cpu())
            out["grad_data"].append(grad_energy(x).double().cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def whiten(model, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Σx^{-1/2}(x − μ) at the model's evaluation Σx (``mu`` ``S×B×C×H×W``): the variance's own ``whiten`` where it
    has one (a non-diagonal Σx), else the residual over the per-pixel standard deviation (diagonal shapes)."""
    v = model.variance
    r = x.unsqueeze(0) - mu
    if hasattr(v, "whiten"):
        return v.whiten(r)
    return r / model.eval_sigma2(x, mu).sqrt()


def lag1(w: torch.Tensor) -> tuple[float, float, float]:
    """Sums for the lag-1 correlation along pixel rows: (Σ w_j w_{j+1}, Σ w_j², Σ w_{j+1}²)."""
    a, b = w[..., :, :-1].double(), w[..., :, 1:].double()
    return float((a * b).sum()), float((a * a).sum()), float((b * b).sum())


@torch.no_grad()
def calibration(model, images: torch.Tensor, batch_size: int, seed: int) -> dict:
    """``white_var`` E w², ``white_lag1`` and ``raw_lag1`` (uncentred lag-1 correlation along rows) of the whitened
    and raw residuals x − μθ(z), one z ~ q(z|x) per image (noise from ``seed``)."""
    dev, g = model_device(model), torch.Generator().manual_seed(int(seed) + 1)
    s2 = n = 0.0
    lw, lr = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    with eval_mode(model):
        for x in iter_batches(images, batch_size):
            x = x.to(dev)
            q = model.encode(x)
            eps = torch.randn(q.mean.shape, generator=g).to(dev, q.mean.dtype)
            z = q.mean + eps * q.var.sqrt() if q.var is not None else q.mean
            mu = model.decode(z.unsqueeze(0))
            w = whiten(model, x, mu)
            s2 += float(w.double().pow(2).sum())
            n += w.numel()
            lw = [a + b for a, b in zip(lw, lag1(w))]
            lr = [a + b for a, b in zip(lr, lag1(x.unsqueeze(0) - mu))]
    corr = lambda s: s[0] / math.sqrt(s[1] * s[2]) if s[1] > 0 and s[2] > 0 else math.nan  # noqa: E731
    return {"white_var": s2 / n, "white_lag1": corr(lw), "raw_lag1": corr(lr)}


@torch.no_grad()
def variance_summary(model, n_images: int) -> dict:
    """What the page shows of a model's Σx: ``sigma2`` (the isotropic part, or the mean variance of a diagonal
    shape), ``marginal_mean`` (tr Σx / d); for the low-rank shape ``rank``, the top ``n_images`` columns of U as
    images (``eigen_images``), ‖u_j‖² (``u_norms2``) and the top eigenvalues of the running S (``spectrum``)."""
    v = getattr(model, "variance", None)
    if v is None:
        return {}
    out = {"name": v.name, "marginal_mean": float(v.current().double().mean())}
    if hasattr(v, "factor"):
        s2, U = v.factor()
        out.update(sigma2=float(s2), rank=int(v.rank), u_norms2=[float(t) for t in U.double().pow(2).sum(0)],
                   eigen_images=U[:, :n_images].T.reshape(-1, *v.x_shape).float().cpu() if v.rank else None,
                   spectrum=[float(t) for t in torch.linalg.eigvalsh(v.running_S.double()).flip(0)[:200]],
                   fitted=int(v.fitted_step) >= 0)
    else:
        out["sigma2"] = out["marginal_mean"]
    return out


# -- the reading ----------------------------------------------------------------------------------------
def paired(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of the per-image difference a − b."""
    d = (a.double() - b.double()).flatten()
    n = d.numel()
    return float(d.mean()), float(d.std() / math.sqrt(n)) if n > 1 else math.nan


def direction(mean: float, se: float) -> str:
    """``lower`` / ``higher`` when the paired difference is beyond ``SE_BAND`` standard errors, else ``no clear
    difference``."""
    if math.isnan(mean) or math.isnan(se):
        return "n/a"
    if mean + SE_BAND * se < 0:
        return "lower"
    if mean - SE_BAND * se > 0:
        return "higher"
    return "no clear difference"


def comparisons(per_image: dict, values: dict) -> pd.DataFrame:
    """Each low-rank model against each baseline that ran: paired differences (low-rank − baseline) of the
    dequantised NLL, the MSE and the reconstructions' gradient energy, with ``SE_BAND`` standard errors."""
    rows = []
    for m in per_image:
        if not m.startswith("lowrank-"):
            continue
        for b in BASELINES:
            if b not in per_image:
                continue
            row = {"model": m, "baseline": b, "rank": int(m.rsplit("-r", 1)[1])}
            for k in ("nll_deq", "mse", "grad"):
                if k in per_image[m] and k in per_image[b]:
                    mean, se = paired(per_image[m][k], per_image[b][k])
                    row.update({f"d_{k}": mean, f"se_{k}": se, f"{k}_is": direction(mean, se)})
            rows.append(row)
    return pd.DataFrame(rows)


EXPERIMENT = LowRank()

__all__ = ["LowRank", "EXPERIMENT", "TABLE", "METRICS", "METRIC_LABELS", "DEFAULT_MODELS", "dequantise",
           "grad_energy", "calibration", "whiten", "comparisons", "reading", "paired", "direction"]
