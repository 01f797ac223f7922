"""Table 4's CelebA-64 column at CPU scale (issue #28): does σx² = 1 oversmooth faces where the MLE shapes do not?

The paper's Table 4 prints, for CelebA 64×64, a test MSE of 121.91 for the VAE with σx² = 1 against 62.02 (Iso-I)
and 63.51 (Diag-I) with σx² by maximum likelihood (Eq. 9a; App. G.1 for the diagonal), and prior-sample FIDs of
55.46, 82.20 and 87.44. Section 6 trains on CelebA with a GPU; this experiment trains the three models with the
paper's App. I.2 networks and optimiser on what two CPU cores give in about 1.5 hours, so the reader sees faces and
a paired measurement of the oversmoothing:

* ``mse`` per test image, ‖x − μθ(μφ(x))‖² (Table 4's MSE), paired across the models on the same test images;
* ``sharpness`` per test image: the reconstruction's gradient energy over the image's own
  (:func:`vaebook.experiments.lowrank.recon_stats`; 1 = as much fine detail as the data, below 1 = smoothed);
* FID and KID of ``fid_samples`` prior samples against the test images, with paired bootstrap replicates (the same
  index draws for every model, the same latent draws for every model of one seed) and the real-vs-real floor (FID's
  bias at this sample size);
* the fitted σx² (Iso-I's scalar, Diag-I's per-pixel map), the loss curve and the plateau rule's verdict;
* the best constant output's MSE (tr C of the test images): a model that does no better than it is not evidence.

Units are (row, model seed). What the numbers say is read from the records at load (:mod:`._faces_claims`).

Presets: ``smoke`` (a code test: one step of batch 4 on stand-in images when CelebA is absent) and ``cpu`` (300
steps of batch 64 on the 9,028 training images of the shipped CelebA subset, 2.1 epochs = 0.17 % of the paper's 70
epochs on 162,770 images; one seed; 1,000 test images; FID from 300 prior samples, 2048-d): about 1 h 40 min on two
CPU cores (≈ 6 s per step). Run: ``python -m vaebook.lab run faces --preset cpu --device cpu``.
"""
from __future__ import annotations

import time

import torch

from vaebook.data import dataset_spec
from vaebook.experiments import _faces_claims, _faces_figures
from vaebook.experiments._lowrank_claims import total_variance
from vaebook.experiments._section6.fid import fid_batch, real_floor, reference
from vaebook.experiments._section6.presets import FID_PARAMS
from vaebook.experiments.lowrank import recon_stats
from vaebook.lab import Experiment, Job, ParamSpec, Unit
from vaebook.lab.curves import curve_points, final_value
from vaebook.lab.params import SEED_MAX, ParameterError
from vaebook.metrics.fid import fid_features
from vaebook.metrics.fid_spread import bootstrap_fid_kid
from vaebook.metrics.recon import constant_output_reason, reconstruction_variance
from vaebook.posterior import generate_images, keep_first
from vaebook.train import plateau

DATASET = "celeba64"
#: row id -> registered model and its label; the paper's Table 4 row is in :data:`._faces_claims.PAPER`
ROWS = {"vae": dict(model="vae-gaussian", label="σx² = 1 (VAE)"),
        "iso-i": dict(model="mle-iso-i", label="Iso-I (MLE)"),
        "diag-i": dict(model="mle-diag-i", label="Diag-I (MLE)")}
#: images kept per model for the figures (the first test images; the first prior samples)
SHOWN = 8

PRESETS = {
    "smoke": dict(rows=list(ROWS), seeds=1, n_train=16, n_test=8, max_steps=1, batch_size=4, log_every=1,
                  fid_samples=8, fid_dims=64, fid_bootstrap=10),
    # 3 models × 300 steps × ≈ 6 s (2 cores, fp32) + ≈ 8 min of evaluation (Inception features of 1,000 test
    # images, 300 training images for the floor and 3 × 300 samples at ≈ 7–10 images/s)
    "cpu": dict(rows=list(ROWS), seeds=1, n_train=None, n_test=1_000, max_steps=300, batch_size=64, log_every=10,
                fid_samples=300, fid_dims=2048, fid_bootstrap=200),
}


class Faces(Experiment):
    """σx² = 1 against the MLE Iso-I and Diag-I on CelebA 64×64 (see the module docstring)."""

    SECTION, CLAIMS = _faces_claims.SECTION, _faces_claims.CLAIMS
    name = "faces"
    title = "Faces: σx² = 1 against MLE on CelebA 64×64 (Table 4's CelebA column, CPU scale)"
    presets = PRESETS
    datasets = (DATASET,)
    fixed_datasets = ("CelebA 64×64 ('celeba64') only: its claims are Table 4's CelebA column; Table 4 ('generation') "
                      "takes any registered dataset")
    full_cost = ("The paper trains each model 70 epochs on 162,770 CelebA images (≈ 178,000 steps of batch 64); at the "
                 "≈ 6 s per step two CPU cores take, that is about 12 days per model, so only the GPU presets of the "
                 "generation page (Table 4) run it. The `cpu` preset here: 3 models × 300 steps and their evaluation, "
                 "about 1 h 40 min on 2 CPU cores (`python -m vaebook.lab run faces --preset cpu --device cpu`).")
    params = {
        "rows": ParamSpec("list", choices=tuple(ROWS), allow_none=True, default=None,
                          doc="rows: vae (σx² = 1), iso-i, diag-i; None = all"),
        "seeds": ParamSpec("int", min=1, max=20, allow_none=True, default=None,
                           doc="model seeds per row (seed, seed + 1, …); None = the preset's (cpu: 1)"),
        "n_train": ParamSpec("int", min=4, max=200_000, allow_none=True, default=None,
                             doc="training images (None = the preset's; cpu: all of the subset's 9,028)"),
        "n_test": ParamSpec("int", min=2, max=20_000, allow_none=True, default=None, doc="test images"),
        "max_steps": ParamSpec("int", min=1, max=10_000_000, allow_none=True, default=None,
                               doc="training steps per model"),
        "batch_size": ParamSpec("int", min=1, max=4_096, allow_none=True, default=None, doc="batch size"),
        "log_every": ParamSpec("int", min=1, max=100_000, allow_none=True, default=None,
                               doc="steps between the loss curve's points"),
        **FID_PARAMS,
        "fid_bootstrap": ParamSpec("int", min=2, max=2_000, allow_none=True, default=None,
                                   doc="bootstrap replicates of each FID/KID"),
    }

    def check(self, p: dict) -> None:
        if p.get("epochs") is not None:
            raise ParameterError(f"parameter 'epochs' = {p['epochs']} does not apply to 'faces': every model trains "
                                 "'max_steps' steps; set max_steps instead.")
        if int(p["seed"]) + int(p["seeds"]) - 1 > SEED_MAX:
            raise ParameterError(f"parameter 'seeds' = {p['seeds']} with seed {p['seed']} needs model seeds above "
                                 f"{SEED_MAX}; choose a smaller seed or fewer seeds.")
        if p["n_train"] is not None and int(p["n_train"]) < int(p["batch_size"]):
            raise ParameterError(f"parameter 'n_train' = {p['n_train']} is below batch_size {p['batch_size']}; "
                                 "choose n_train >= batch_size.")

    def eval_key(self, unit, p: dict) -> dict:
        """Every parameter but the selection, so adding a row or a seed does not re-evaluate the others."""
        return {k: v for k, v in p.items() if k not in ("mode", "device", "results_dir", "data_root", "rows", "seeds")}

    def model_seeds(self, p: dict) -> list:
        return [int(p["seed"]) + i for i in range(int(p["seeds"]))]

    def train(self, p: dict) -> dict:
        """The dataset's optimiser (App. I.2: Adam, lr 2e-4, 70 epochs, batch 64) capped at ``max_steps``."""
        return {**dataset_spec(DATASET).train, "batch_size": int(p["batch_size"]), "max_steps": int(p["max_steps"]),
                "log_every": int(p["log_every"])}

    def job(self, row: str, p: dict, seed: int) -> Job:
        n = None if p["n_train"] is None else {"n_train": int(p["n_train"])}
        return Job.make(ROWS[row]["model"], DATASET, self.train(p), seed, variant=n,
                        tag=f"{ROWS[row]['model']} on CelebA 64×64, seed {seed}")

    def plan(self, ctx) -> list:
        return [Unit.make(f"{row}_s{k}", [self.job(row, ctx.p, k)], row=row, seed=k)
                for k in self.model_seeds(ctx.p) for row in dict.fromkeys(ctx.p["rows"])]

    def data(self, ctx):
        return ctx.data(DATASET, ctx.p["n_train"], ctx.p["n_test"])

    def evaluate(self, unit: Unit, ctx) -> dict:
        t0 = time.perf_counter()
        info, p = unit.meta, ctx.p
        tm = ctx.model(unit.jobs[0])
        out = {"row": info["row"], "seed": int(info["seed"]), "from_cache": bool(tm.from_cache),
               "train_s": float(sum(float(r.get("time_s") or 0.0) for r in tm.history)),
               "steps": final_value(tm.history, "step"), "final_loss": final_value(tm.history, "loss"),
               "curve": curve_points(tm.history),
               "plateau": plateau(tm.history)}
        if not tm.ok:
            return {**out, "fate": "failed", "reason": tm.reason or "did not train", "eval_s": 0.0}
        data, model = self.data(ctx), tm.model.eval()
        test = data.test[:int(p["n_test"])]
        rec = recon_stats(model, test, 50)
        out.update(per_image_mse=[round(float(v), 3) for v in rec["mse"]],
                   per_image_sharpness=[round(float(a / b), 5) if b > 0 else None
                                        for a, b in zip(rec["grad"], rec["grad_data"])],
                   mse=float(rec["mse"].mean()), n_test=len(test))
        out["recon_var"] = reconstruction_variance(model, test, 50)
        out["reason"] = "" if ctx.smoke else constant_output_reason(out["recon_var"])
        s2 = model.variance.current().detach().double().cpu()
        out["sigma2"] = {"mean": float(s2.mean()), "min": float(s2.min()), "max": float(s2.max()),
                         "map": s2.reshape(-1, *test.shape[-2:]).mean(0).tolist() if s2.numel() > 1 else None}
        out.update(self.samples(model, data, p, int(info["seed"])))
        return {**out, "eval_s": time.perf_counter() - t0}

    def samples(self, model, data, p: dict, seed: int) -> dict:
        """FID/KID of prior samples with paired bootstrap replicates; the first samples and reconstructions."""
        dev, n, dims = next(model.parameters()).device, int(p["fid_samples"]), int(p["fid_dims"])
        ref = reference(data, dims, dev)
        shown: list = []
        stream = keep_first(generate_images(model, n, "prior", None, seed=seed, batch_size=50), SHOWN, shown)
        feats = fid_features(stream, fid_batch(dev), dev, dims, max_images=n)
        v = bootstrap_fid_kid(feats, ref, int(p["fid_bootstrap"]), int(p["seed"]))
        with torch.no_grad():
            recon = model.reconstruct(data.test[:SHOWN].to(dev)).cpu()
        return {"fid": float(v["fid"]), "kid": float(v["kid"]), "fid_sd": float(v["fid_sd"]),
                "kid_sd": float(v["kid_sd"]), "fid_boot": [round(x, 4) for x in v["fid_boot"]],
                "kid_boot": [float(f"{x:.5g}") for x in v["kid_boot"]], "fid_n": n, "fid_m": int(v["m"]),
                "images": {"samples": torch.cat(shown)[:SHOWN] if shown else None, "recon": recon}}

    def report(self, ctx, results: dict, run) -> None:
        """The per-unit records (the claims read them at load), the run's settings and the figures."""
        p = ctx.p
        data = self.data(ctx)
        test = data.test[:int(p["n_test"])]
        settings = {"train": self.train(p), "seeds": self.model_seeds(p), "n_train": len(data.train),
                    "n_test": len(test), "fid_samples": int(p["fid_samples"]), "fid_dims": int(p["fid_dims"]),
                    "fid_bootstrap": int(p["fid_bootstrap"]), "rows": list(p["rows"]), "generated": bool(data.generated),
                    "source": str(data.source), "tr_c_test": total_variance(test)}
        settings["floor"] = real_floor(data, int(p["fid_samples"]), int(p["fid_dims"]), ctx.device, int(p["seed"]))
        records = {uid: {k: v for k, v in r.items() if k != "images"} for uid, r in results.items()}
        run.write_metrics({"records": records, "rows": ROWS, "settings": settings})
        seed = int(p["seed"])
        imgs = {r["row"]: r["images"] for r in results.values() if r.get("images") and r["seed"] == seed}
        if imgs:
            labels = {k: ROWS[k]["label"] for k in ROWS}
            run.save_figure(_faces_figures.recon_grid(test[:SHOWN], imgs, labels), "fig_faces_recon", dpi=150)
            run.save_figure(_faces_figures.sample_grid(imgs, labels), "fig_faces_samples", dpi=150)

    def claims(self, res) -> list:
        return _faces_claims.claims(res)

    def summary(self, res) -> dict:
        return _faces_claims.summary(res)



EXPERIMENT = Faces()
