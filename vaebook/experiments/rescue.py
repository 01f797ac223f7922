"""Beyond the paper (issue #29): Diag-D by maximum likelihood, rescued. Which option of the Σx protocol
(:mod:`vaebook.variance.rescue`) lets the paper's headline shape keep what the paper claims for it, and at what cost?

Trained by its own objective (Eq. 7b with the per-pixel, per-image MLE of G.17, Sec. 5.2's ε = 1e-6), Diag-D on
MNIST drives its output to black (``tests/test_variance_rescue_trap.py``). Each rescue is trained here at the
Section-6 CPU scale with several model seeds, beside the shapes it is compared with, and measured on what the paper
promises for Diag-D:

* a sharp mean: ``mse``, ‖x − μθ(μφ(x))‖² per test image (Table 4's MSE);
* a likelihood: ``nll_valid``, the k-sample IWAE bound on −log p(x) per test image (Table 7's estimator) with a
  Σx fixed before the test image is seen (−D shapes: the per-pixel / scalar mean squared reconstruction residual of
  the first ``train_fit_n`` training images + ε, :func:`vaebook.metrics.nll.train_fit_sigma2`; −I shapes: their
  running training estimate);
* samples: FID and KID of ``fid_samples`` images from the prior against the test images, with ``fid_bootstrap``
  paired bootstrap replicates (the same index draws for every model; the same latent draws for every model of one
  seed), Table 4's protocol;
* noise located (Table 3): on noisy MNIST (``noise_pattern``, ``noise_s2``; the noise drawn once from the run's seed,
  the same images for every model seed), the mean squared residual per partition SU/SL/BU/BL over the first
  ``n_estimate`` training images (:func:`vaebook.experiments.noise_variance.partition_estimates`): Diag-D's MLE is
  that average, so a shape that locates the noise reads clean residual + s_x² in the noisy partitions;
* its fate: whether the reconstructions depend on the input (:func:`vaebook.metrics.recon.reconstruction_variance`),
  their mean intensity (black: ≈ 0), and the training time;
* its training: the loss curve (``curve``, :func:`vaebook.lab.curves.curve_points`) and whether it was flat at its
  end (``plateau``, :func:`vaebook.train.plateau`).

Units are (dataset, row, model seed); the rows are :data:`MNIST_ROWS` and :data:`NOISY_ROWS`, each a registered
model with a rescue spec. Model seeds are ``seed``, ``seed + 1``, …; every unit of a seed shares its FID latent draws
and every unit its bootstrap index draws, so differences between rows are paired within a seed and the seeds give
the training spread. The units run seed by seed, so a stopped sitting has whole seeds. What the numbers say
(rules, statuses, the page's prose) is read from the per-unit records at load (:mod:`._rescue_claims`), not here.

Presets: ``smoke`` (a code test: two training steps on a few images) and ``cpu`` (600 steps of batch 64 on all
60,000 MNIST images, 0.64 % of the paper's 100 epochs, three seeds; 1,000 test images; k = 100; FID from 300
prior samples, 2048-d). Run: ``python -m vaebook.lab run rescue --preset cpu --device cpu``.
"""
from __future__ import annotations

import time

import torch

from vaebook._util import eval_mode, iter_batches, model_device
from vaebook.data import dataset_spec
from vaebook.data.noisy import NOISE_PATTERNS
from vaebook.experiments import _rescue_claims, _rescue_page
from vaebook.experiments._section6.fid import fid_batch, reference
from vaebook.experiments._section6.presets import FID_PARAMS
from vaebook.experiments._lowrank_claims import total_variance
from vaebook.experiments._rescue_figures import strips
from vaebook.experiments.lowrank import recon_stats
from vaebook.experiments.noise_variance import partition_estimates
from vaebook.lab import Experiment, Job, ParamSpec, Unit
from vaebook.lab.curves import curve_points, final_value
from vaebook.lab.params import SEED_MAX, ParameterError
from vaebook.metrics.fid import fid_features
from vaebook.metrics.fid_spread import bootstrap_fid_kid
from vaebook.metrics.nll import iwae_nll, needs_train_fit, train_fit_sigma2
from vaebook.metrics.recon import constant_output_reason, reconstruction_variance
from vaebook.posterior import generate_images, keep_first
from vaebook.train.curve import plateau
from vaebook.variance.rescue import build_rescue

#: (row id, registered model, rescue spec, label). Iso-I, Diag-I and Iso-D train without a rescue (none needs one).
#: β-NLL with β = 1 gives Diag-D by MLE the same mean gradient as the faithful split with the unit-variance mean
#: (−r: σ̂² = r² is not a parameter), so that split is not a separate row.
MNIST_ROWS = (
    ("iso-i", "mle-iso-i", "none", "Iso-I"),
    ("diag-i", "mle-diag-i", "none", "Diag-I"),
    ("iso-d", "mle-iso-d", "none", "Iso-D"),
    ("diag-d", "mle-diag-d", "none", "Diag-D, no rescue (the paper's objective)"),
    ("diag-d+warmup", "mle-diag-d", "warmup:steps=200", "Diag-D, 200 Iso-I warm-up steps"),
    ("diag-d+beta0.5", "mle-diag-d", "beta-nll:beta=0.5", "Diag-D, β-NLL β = 0.5"),
    ("diag-d+beta1", "mle-diag-d", "beta-nll:beta=1", "Diag-D, β-NLL β = 1"),
    ("diag-d+faithful", "mle-diag-d", "faithful:mean=iso-i", "Diag-D, faithful split (mean by Iso-I's G.5)"),
    ("diag-d+floor", "mle-diag-d", "floor", "Diag-D, soft floor σ ≥ e^-6"),
    ("diag-d+eps", "mle-diag-d", "eps", "Diag-D, ε = (1/255)²"),
)
#: the rows trained on noisy MNIST (Table 3): Diag-D is the one shape that can place noise in one partition
NOISY_ROWS = ("diag-d", "diag-d+warmup", "diag-d+beta0.5", "diag-d+faithful")
ROWS = {r[0]: dict(model=r[1], rescue=r[2], label=r[3]) for r in MNIST_ROWS}
DATASET, NOISY = "mnist", "noisy-mnist"
#: images decoded at once by the IWAE bound
DECODE_BUDGET = 5_000

PRESETS = {
    "smoke": dict(rows=["iso-i", "diag-d", "diag-d+faithful"], noisy_rows=["diag-d+faithful"], seeds=1,
                  n_train=256, n_test=64, max_steps=2, iwae_k=4, fid_samples=16, fid_dims=64, fid_bootstrap=10,
                  train_fit_n=None, n_estimate=None, noise_pattern="spatial-conditional", noise_s2=0.1),
    # ≈ 42 models × 600 steps (≈ 100–140 s each on 2 cores) + evaluation (≈ 1 min per trained MNIST model):
    # about 1.7–2.2 h on 2 CPU cores.
    "cpu": dict(rows=[r[0] for r in MNIST_ROWS], noisy_rows=list(NOISY_ROWS), seeds=3, n_train=None, n_test=1_000,
                max_steps=600, iwae_k=100, fid_samples=300, fid_dims=2048, fid_bootstrap=200, train_fit_n=20_000,
                n_estimate=10_000, noise_pattern="spatial-conditional", noise_s2=0.1),
}


class Rescue(Experiment):
    """Diag-D by MLE with each rescue against Iso-I, Diag-I and Iso-D (see the module docstring)."""

    SECTION, CLAIMS = _rescue_claims.SECTION, _rescue_claims.CLAIMS
    name = "rescue"
    title = "Beyond the paper: Diag-D by maximum likelihood, rescued"
    presets = PRESETS
    full_cost = ("No preset at the paper's scale (the paper has no rescued rows). The `cpu` preset trains 42 MNIST "
                 "models (10 rows × 3 seeds on MNIST, 4 × 3 on noisy MNIST; 600 steps each) and scores them: 1 h 46 "
                 "min measured on 2 CPU cores beside other work (`python -m vaebook.lab run rescue --preset cpu "
                 "--device cpu`); a GPU runs the same preset with `--device cuda`.")
    params = {
        "rows": ParamSpec("list", choices=tuple(ROWS), allow_none=True, default=None,
                          doc="MNIST rows (shape + rescue); None = the preset's"),
        "noisy_rows": ParamSpec("list", choices=tuple(ROWS), allow_none=True, default=None,
                                doc="rows also trained on noisy MNIST; None = the preset's"),
        "seeds": ParamSpec("int", min=1, max=20, allow_none=True, default=None,
                           doc="model seeds per row (seed, seed + 1, …); None = the preset's (cpu: 3)"),
        "n_train": ParamSpec("int", min=64, max=60_000, allow_none=True, default=None,
                             doc="training images (None = the preset's; cpu: all)"),
        "n_test": ParamSpec("int", min=2, max=10_000, allow_none=True, default=None, doc="test images"),
        "max_steps": ParamSpec("int", min=1, max=10_000_000, allow_none=True, default=None,
                               doc="training steps per model (batch 64)"),
        "iwae_k": ParamSpec("int", min=1, max=5_000, allow_none=True, default=None,
                            doc="importance samples of the NLL bound"),
        **FID_PARAMS,
        "fid_bootstrap": ParamSpec("int", min=2, max=2_000, allow_none=True, default=None,
                                   doc="bootstrap replicates of each FID/KID"),
        "train_fit_n": ParamSpec("int", min=2, max=60_000, allow_none=True, default=None,
                                 doc="training images whose reconstructions fit the −D rows' valid-bound Σx "
                                     "(None = all of the run's)"),
        "n_estimate": ParamSpec("int", min=16, max=60_000, allow_none=True, default=None,
                                doc="noisy training images the partition estimates average over (None = all)"),
        "noise_pattern": ParamSpec("str", choices=tuple(NOISE_PATTERNS),
                                   allow_none=True, default=None, doc="Table 3's noise pattern"),
        "noise_s2": ParamSpec("float", min=0.0, min_exclusive=True, max=1.0, allow_none=True, default=None,
                              doc="injected noise variance s_x²"),
    }

    def check(self, p: dict) -> None:
        if p.get("epochs") is not None:
            raise ParameterError(f"parameter 'epochs' = {p['epochs']} does not apply to 'rescue': every model trains "
                                 f"'max_steps' steps of batch 64 (one pass at most); set max_steps instead.")
        if int(p["seed"]) + int(p["seeds"]) - 1 > SEED_MAX:
            raise ParameterError(f"parameter 'seeds' = {p['seeds']} with seed {p['seed']} needs model seeds above "
                                 f"{SEED_MAX}; choose a smaller seed or fewer seeds.")

    def eval_key(self, unit, p: dict) -> dict:
        """Every parameter but the selection, so adding a row or a seed does not re-evaluate the others."""
        return {k: v for k, v in p.items()
                if k not in ("mode", "device", "results_dir", "data_root", "rows", "noisy_rows", "seeds")}

    def model_seeds(self, p: dict) -> list:
        return [int(p["seed"]) + i for i in range(int(p["seeds"]))]

    def train(self, p: dict) -> dict:
        return {**dataset_spec(DATASET).train, "epochs": 1, "max_steps": int(p["max_steps"])}

    def job(self, row: str, p: dict, seed: int, noisy: bool) -> Job:
        r = ROWS[row]
        build_rescue(r["rescue"])  # a bad spec fails here, before anything is trained
        n = {} if p["n_train"] is None else {"n_train": int(p["n_train"])}
        variant = ({"pattern": p["noise_pattern"], "s2": float(p["noise_s2"]), "seed": int(p["seed"]), **n}
                   if noisy else (n or None))
        where = f"noisy MNIST ({p['noise_pattern']}, s_x2={float(p['noise_s2']):g})" if noisy else "MNIST"
        return Job.make(r["model"], NOISY if noisy else DATASET, self.train(p), seed,
                        model_kwargs=model_kwargs(row), variant=variant,
                        tag=f"{r['model']} rescue={r['rescue']} on {where}, seed {seed}")

    def plan(self, ctx) -> list:
        p, units = ctx.p, []
        for k in self.model_seeds(p):  # seed by seed: a stopped sitting leaves whole seeds
            for kind, rows in (("mnist", p["rows"]), ("noisy", p["noisy_rows"])):
                for row in dict.fromkeys(rows):
                    units.append(Unit.make(f"{kind}_{row}_s{k}", [self.job(row, p, k, kind == "noisy")],
                                           kind=kind, row=row, seed=k))
        return units

    def evaluate(self, unit: Unit, ctx) -> dict:
        t0 = time.perf_counter()
        out = self.measure(unit, ctx)
        return {**out, "eval_s": time.perf_counter() - t0}

    def measure(self, unit: Unit, ctx) -> dict:
        info, p = unit.meta, ctx.p
        tm = ctx.model(unit.jobs[0])
        out = {"kind": info["kind"], "row": info["row"], "seed": int(info["seed"]), "from_cache": bool(tm.from_cache),
               "rescue": ROWS[info["row"]]["rescue"],
               "train_s": float(sum(float(r.get("time_s") or 0.0) for r in tm.history)),
               "final_loss": final_value(tm.history, "loss"), "steps": final_value(tm.history, "step")}
        if not tm.ok:
            return {**out, "fate": "failed", "reason": tm.reason or "did not train"}
        # was the loss curve flat at the end (vaebook.train.curve), and its points for the page's panels
        out["plateau"], out["curve"] = plateau(tm.history), curve_points(tm.history)
        data = self.data(ctx, unit.jobs[0])
        model, bs = tm.model.eval(), 250
        out["device"] = str(tm.meta.get("device", "cpu"))
        test = data.test[:int(p["n_test"])]
        rec = recon_stats(model, test, bs)
        out["mse"] = float(rec["mse"].mean())
        if info["kind"] == "mnist":
            out["per_image_mse"] = [round(float(v), 4) for v in rec["mse"]]
        out["data_sq"] = float(test.double().pow(2).flatten(1).sum(1).mean())  # the MSE of an all-black output
        out["recon_var"] = reconstruction_variance(model, test, bs)
        out["mean_output"] = _mean_output(model, test, bs)
        reason = constant_output_reason(out["recon_var"]) if not ctx.smoke else ""
        if reason:
            return {**out, "fate": "constant", "reason": reason}
        out["fate"] = "input-dependent"
        if info["kind"] == "noisy":
            m = p["n_estimate"] or len(data.train)
            out["estimates"] = partition_estimates(model, data.train[:m], data.train_labels[:m], seed=int(p["seed"]))
            out["n_estimate"] = min(m, len(data.train))
            return out
        out.update(self.likelihood(model, data, p))
        out.update(self.samples(model, data, p, int(info["seed"])))
        return out

    def data(self, ctx, job: Job):
        v = dict(job.variant)
        n = v.pop("n_train", None)
        return ctx.data(job.dataset, n, ctx.p["n_test"] if job.dataset == DATASET else None, **v)

    def likelihood(self, model, data, p: dict) -> dict:
        """The valid IWAE bound per test image (Σx fixed before the test image is seen)."""
        k = int(p["iwae_k"])
        k_chunk = max(1, min(k, 50))
        kw = dict(k=k, batch_size=max(1, DECODE_BUDGET // k_chunk), k_chunk=k_chunk, seed=int(p["seed"]))
        s2, n_fit = None, 0
        if needs_train_fit(model):
            n_fit = len(data.train) if p["train_fit_n"] is None else min(int(p["train_fit_n"]), len(data.train))
            s2 = train_fit_sigma2(model, data.train, n=n_fit, batch_size=DECODE_BUDGET)
        r = iwae_nll(model, data.test, sigma2=s2, **kw)
        return {"nll_valid": float(r["nll"]), "nll_valid_se": float(r["nll_stderr"]), "iwae_k": k,
                "train_fit_n": n_fit, "per_image_nll": [round(float(v), 3) for v in r["nll_per_image"]],
                "sigma2_valid_mean": float(s2.mean()) if s2 is not None else float(model.variance.current().mean())}

    def samples(self, model, data, p: dict, seed: int) -> dict:
        """FID/KID of prior samples with paired bootstrap replicates; the first 8 samples for the figure."""
        dev, n, dims = model_device(model), int(p["fid_samples"]), int(p["fid_dims"])
        ref = reference(data, dims, dev)
        shown: list = []
        stream = keep_first(generate_images(model, n, "prior", None, seed=seed, batch_size=250), 8, shown)
        feats = fid_features(stream, fid_batch(dev), dev, dims, max_images=n)
        v = bootstrap_fid_kid(feats, ref, int(p["fid_bootstrap"]), int(p["seed"]))
        recon = model.reconstruct(data.test[:8].to(dev)).cpu()
        return {"fid": float(v["fid"]), "kid": float(v["kid"]), "fid_sd": float(v["fid_sd"]),
                "kid_sd": float(v["kid_sd"]), "fid_boot": [round(x, 4) for x in v["fid_boot"]],
                "kid_boot": [float(f"{x:.5g}") for x in v["kid_boot"]], "fid_n": n, "fid_m": int(v["m"]),
                "images": {"samples": torch.cat(shown)[:8] if shown else None, "recon": recon}}

    def report(self, ctx, results: dict, run) -> None:
        """The per-unit records (the page's rules read them at load) and the image strips."""
        records = {uid: {k: v for k, v in r.items() if k != "images"} for uid, r in results.items()}
        settings = self.settings(ctx)
        if not ctx.smoke:  # tr C of the clean test images: the MSE of their mean image (the fates' guard)
            clean = self.data(ctx, self.job("iso-i", ctx.p, int(ctx.p["seed"]), False))
            settings["tr_c_test"] = total_variance(clean.test[:int(ctx.p["n_test"])])
        rows = {k: ROWS[k] for k in dict.fromkeys(r["row"] for r in results.values())}
        run.write_metrics({"records": records, "rows": rows, "settings": settings})
        imgs = {(r["row"], r["seed"]): r["images"] for r in results.values() if r.get("images")}
        if imgs:
            labels = {r: ROWS[r]["label"] for r in ROWS}
            run.save_figure(strips(imgs, list(ctx.p["rows"]), int(ctx.p["seed"]), labels), "fig_strips")

    def claims(self, res) -> list:
        """The page's claims (rules: :mod:`vaebook.experiments._rescue_claims`), read from the records at load."""
        return _rescue_claims.claims(res)

    def summary(self, res) -> dict:
        return _rescue_page.summary(res)

    def settings(self, ctx) -> dict:
        p = ctx.p
        return {"train": self.train(p), "seeds": self.model_seeds(p), "n_train": p["n_train"], "n_test": p["n_test"],
                "iwae_k": int(p["iwae_k"]), "fid_samples": int(p["fid_samples"]), "fid_dims": int(p["fid_dims"]),
                "fid_bootstrap": int(p["fid_bootstrap"]), "train_fit_n": p["train_fit_n"],
                "n_estimate": p["n_estimate"], "noise_pattern": p["noise_pattern"], "noise_s2": float(p["noise_s2"]),
                "rows": list(p["rows"]), "noisy_rows": list(p["noisy_rows"])}


def model_kwargs(row: str) -> dict:
    """The row's builder arguments: its rescue alone (``warmup_steps = 0`` overrides the datasets' legacy default)."""
    kw = {"rescue": ROWS[row]["rescue"]}
    return {**kw, "warmup_steps": 0} if ROWS[row]["model"] == "mle-diag-d" else kw



@torch.no_grad()
def _mean_output(model, images: torch.Tensor, batch_size: int) -> float:
    """Mean pixel intensity of the reconstructions (≈ 0 for an all-black output)."""
    dev, s, n = model_device(model), 0.0, 0
    with eval_mode(model):
        for x in iter_batches(images, batch_size):
            y = model.reconstruct(x.to(dev))
            s, n = s + float(y.sum()), n + y.numel()
    return s / max(n, 1)


EXPERIMENT = Rescue()
