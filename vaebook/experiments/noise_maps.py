"""Section 5.3, pictures: where do Diag-I and Diag-D put their variance on noisy MNIST? (issue #28)

Table 3 (:mod:`vaebook.experiments.noise_variance`) prints partition averages only. This smaller experiment, a
section of the Table-3 page (``page = "noise_variance"``), trains the two per-pixel shapes by maximum likelihood on
noisy MNIST with the ``spatial`` noise (SU+BU: the upper halves of every image) and the ``conditional`` noise (SU+SL:
every pixel of the digits 0–4) at s_x² = 0.1 (:data:`vaebook.data.noisy.NOISE_PATTERNS`), at several model seeds, and
records the maps behind the averages:

* **Diag-I** (``mle-diag-i``): its per-pixel σx², the MLE of Eq. (9a) for the shape, i.e. the mean over images of the
  squared residual (x − μθ(z))², z ~ q(z|x) once per image (seeded), over the first ``n_estimate`` (noisy) training
  images after training, in eval mode: Table 3's estimate before it is averaged over a partition
  (:func:`vaebook.experiments.noise_variance.partition_estimates`). Its running (EMA) training estimate, what the
  model itself uses at evaluation, is recorded beside it (``running_map``).
* **Diag-D** (``mle-diag-d`` with Table 3's Iso-I warm-up, rescue ``warmup:steps=200``, set the way Table 3 sets it:
  the dataset's ``model_defaults``): its MLE σx² of an image is that image's squared residual (+ ε = 10⁻⁶, left out
  here); recorded are its mean over the same images (``map``), its mean over the images of each digit group
  (``map_by_class``: ``S`` = digits 0–4, ``B`` = 5–9) and the map of the first training image of each group
  (``example_maps``).
* for the page: the first ``n_images / 2`` training images of each digit group as the models saw them (noisy, not
  clipped), their labels and indices; the loss curve (:func:`vaebook.train.loss_curve`) and whether it was flat at
  its end (:func:`vaebook.train.plateau`); the reconstructions' variance across 1,000 test images (a model whose
  output ignores its input is ``constant`` and not evidence: :func:`vaebook.metrics.recon.constant_output_reason`).

The jobs are Table 3's (same model, builder arguments, training settings, noise variant and seeds), so in a results
folder whose model zoo holds Table 3's ``cpu`` models the first Diag-I seed and every Diag-D seed are reused. The noise
is drawn once from the run's seed, so every model seed sees the same noisy images. Units run seed by seed.

The rules (:mod:`._noise_maps_claims`), the figures (:mod:`._noise_maps_figures`) and the page's glued prose
(:mod:`._noise_maps_page`) read the per-unit records at load.

Presets: ``smoke`` (a code test: 2 steps on 128 images, one seed) and ``cpu`` (all 60,000 training images, 600 steps
of batch 64 per model as Table 3's ``cpu``; 3 seeds; 2 patterns × 2 shapes × 3 seeds = 12 models; maps over the first
10,000 training images). Run: ``python -m vaebook.lab run noise_maps --preset cpu --device cpu``.
"""
from __future__ import annotations

import time

import torch

from vaebook.data import dataset_spec, mix_seed
from vaebook.data.noisy import NOISE_PATTERNS, SMALL_DIGITS
from vaebook.experiments import _noise_maps_claims, _noise_maps_figures, _noise_maps_page
from vaebook.experiments.noise_variance import model_train_s
from vaebook.lab import Experiment, Job, ParamSpec, Unit
from vaebook.lab.data import to_float
from vaebook.lab.params import SEED_MAX, ParameterError
from vaebook.metrics.recon import constant_output_reason, reconstruction_variance
from vaebook.train import loss_curve, plateau

DATASET = "noisy-mnist"
#: shape → registered model (Table 3's names)
MODELS = {"diag-i": "mle-diag-i", "diag-d": "mle-diag-d"}
GROUPS = ("S", "B")  # digits 0–4, digits 5–9 (vaebook.data.noisy)
#: test images whose reconstructions' variance says whether a model depends on its input (Table 3's N_RECON)
N_RECON = 1000
SIG = 4  # significant digits of a recorded map value

PRESETS = {
    "smoke": dict(patterns=["spatial", "conditional"], shapes=list(MODELS), seeds=1, n_train=128, max_steps=2,
                  n_estimate=None, n_images=8, noise_s2=0.1),
    # 12 models × 600 steps: 50–150 s each on 2 CPU cores beside another job (150 steps measured at 13–37 s; Table 3
    # and rescue measured 100–140 s per 600-step model) + maps on 10,000 images (≈ 20 s a model): ≈ 15–35 min.
    "cpu": dict(patterns=["spatial", "conditional"], shapes=list(MODELS), seeds=3, n_train=None, max_steps=600,
                n_estimate=10_000, n_images=8, noise_s2=0.1),
}


class NoiseMaps(Experiment):
    """Diag-I's and Diag-D's σx² maps on spatial and conditional noise (module docstring)."""

    SECTION, CLAIMS = _noise_maps_claims.SECTION, _noise_maps_claims.CLAIMS
    name = "noise_maps"
    page = "noise_variance"
    title = "Where the MLE variance sits: σx² maps on noisy MNIST (Section 5.3)"
    datasets = ("mnist",)
    fixed_datasets = ("noisy MNIST ('noisy-mnist') only: the noise patterns are defined by MNIST's digit classes "
                      "(0–4 / 5–9) and image halves")
    presets = PRESETS
    full_cost = ("No preset at the paper's scale (the paper shows no maps). `cpu`: 12 models (Diag-I and Diag-D × "
                 "spatial and conditional noise × 3 seeds), 600 steps each on all 60,000 noisy MNIST images: about "
                 "15–35 min on 2 CPU cores (`python -m vaebook.lab run noise_maps --preset cpu --device cpu`); a GPU "
                 "runs the same preset with `--device cuda`.")
    params = {
        "patterns": ParamSpec("list", choices=tuple(NOISE_PATTERNS), allow_none=True, default=None,
                              doc="noise patterns; None = the preset's (spatial, conditional)"),
        "shapes": ParamSpec("list", choices=tuple(MODELS), allow_none=True, default=None,
                            doc="Σx shapes trained by MLE; None = the preset's (both)"),
        "seeds": ParamSpec("int", min=1, max=20, allow_none=True, default=None,
                           doc="model seeds per pattern × shape (seed, seed + 1, …); None = the preset's (cpu: 3)"),
        "n_train": ParamSpec("int", min=64, max=60_000, allow_none=True, default=None,
                             doc="training images (None = the preset's; cpu: all)"),
        "max_steps": ParamSpec("int", min=1, max=10_000_000, allow_none=True, default=None,
                               doc="training steps per model (batch 64)"),
        "n_estimate": ParamSpec("int", min=16, max=60_000, allow_none=True, default=None,
                                doc="training images the maps average over (the first n; None = all)"),
        "n_images": ParamSpec("int", min=2, max=16, allow_none=True, default=None,
                              doc="noisy training images recorded for the page (half from each digit group)"),
        "noise_s2": ParamSpec("float", min=0.0, min_exclusive=True, max=1.0, allow_none=True, default=None,
                              doc="injected noise variance s_x²"),
    }

    def check(self, p: dict) -> None:
        if p.get("epochs") is not None:
            raise ParameterError(f"parameter 'epochs' = {p['epochs']} does not apply to 'noise_maps': every model "
                                 "trains 'max_steps' steps of batch 64 (one pass at most); set max_steps instead.")
        if int(p["seed"]) + int(p["seeds"]) - 1 > SEED_MAX:
            raise ParameterError(f"parameter 'seeds' = {p['seeds']} with seed {p['seed']} needs model seeds above "
                                 f"{SEED_MAX}; choose a smaller seed or fewer seeds.")
        if int(p["n_images"]) % 2:
            raise ParameterError(f"parameter 'n_images' = {p['n_images']}: half come from each digit group; choose "
                                 "an even number.")

    def eval_key(self, unit, p: dict) -> dict:
        """Every parameter but the selection, so adding a pattern, shape or seed does not re-evaluate the others."""
        return {k: v for k, v in p.items()
                if k not in ("mode", "device", "results_dir", "data_root", "patterns", "shapes", "seeds")}

    def model_seeds(self, p: dict) -> list:
        return [int(p["seed"]) + i for i in range(int(p["seeds"]))]

    def train(self, p: dict) -> dict:
        """Table 3's ``cpu`` training settings: one pass capped at ``max_steps`` (same zoo key)."""
        return {**dataset_spec(DATASET).train, "epochs": 1, "max_steps": int(p["max_steps"])}

    def variant(self, p: dict, pattern: str) -> dict:
        """The noisy-MNIST loader arguments, as Table 3 builds them (the noise drawn from the run's seed)."""
        n = {} if p["n_train"] is None else {"n_train": int(p["n_train"])}
        return {"pattern": pattern, "s2": float(p["noise_s2"]), "seed": int(p["seed"]), **n}

    def job(self, p: dict, pattern: str, shape: str, seed: int) -> Job:
        model = MODELS[shape]  # builder arguments: the dataset's (Diag-D: warmup_steps=200), as Table 3's jobs
        return Job.make(model, DATASET, self.train(p), seed,
                        model_kwargs=dict(dataset_spec(DATASET).model_defaults.get(model, {})),
                        variant=self.variant(p, pattern),
                        tag=f"{model} on noisy MNIST ({pattern}, s_x2={float(p['noise_s2']):g}), seed {seed}")

    def plan(self, ctx) -> list:
        p, units = ctx.p, []
        for k in self.model_seeds(p):  # seed by seed: a stopped sitting leaves whole seeds
            for pattern in dict.fromkeys(p["patterns"]):
                for shape in dict.fromkeys(p["shapes"]):
                    units.append(Unit.make(f"{pattern}_{shape}_s{k}", [self.job(p, pattern, shape, k)],
                                           pattern=pattern, shape=shape, seed=k))
        return units

    def evaluate(self, unit: Unit, ctx) -> dict:
        t0 = time.perf_counter()
        info, p = unit.meta, ctx.p
        tm = ctx.model(unit.jobs[0])
        hist = tm.history or []
        curve = loss_curve(hist)
        last = hist[-1] if hist else {}
        out = {"pattern": info["pattern"], "shape": info["shape"], "seed": int(info["seed"]),
               "s_x2": float(p["noise_s2"]), "from_cache": bool(tm.from_cache), "train_s": model_train_s(tm),
               "final_loss": float(last["loss"]) if isinstance(last.get("loss"), (int, float)) else None,
               "curve": [[int(s), _sig(v, 5)] for s, v in curve] if curve else None, "plateau": plateau(hist)}
        if not tm.ok:
            return {**out, "fate": "failed", "reason": tm.reason or "did not train", "eval_s": time.perf_counter() - t0}
        v = dict(unit.jobs[0].variant)
        data = ctx.data(DATASET, v.pop("n_train", None), None, **v)
        model = tm.model.eval()
        out["recon_var"] = reconstruction_variance(model, data.test[:N_RECON])
        reason = constant_output_reason(out["recon_var"])
        out.update(fate="constant" if reason else "trained", reason=reason)
        m = min(int(p["n_estimate"] or len(data.train)), len(data.train))
        seed = mix_seed(p["seed"], "noise_maps", info["pattern"], info["shape"], info["seed"]) % (2**31 - 1)
        maps = residual_maps(model, data.train[:m], data.train_labels[:m], seed=seed)
        out.update(n_estimate=m, map=_grid(maps["all"]), counts=maps["counts"])
        if info["shape"] == "diag-d":  # the per-image MLE: its class means and one image of each group
            out["map_by_class"] = {g: _grid(maps["by_group"][g]) for g in GROUPS if g in maps["by_group"]}
            out["example_maps"] = {g: _grid(maps["examples"][g]) for g in GROUPS if g in maps["examples"]}
            out["example_index"] = {g: maps["example_index"][g] for g in GROUPS if g in maps["example_index"]}
        else:  # Diag-I's own running (EMA) σx², what the model uses at evaluation
            s2 = model.variance.current().detach().double().cpu()
            out["running_map"] = _grid(s2.reshape(-1, *maps["all"].shape).mean(0))
        out["images"] = example_images(data.train[:m], data.train_labels[:m], int(p["n_images"]))
        out["eval_s"] = time.perf_counter() - t0
        return out

    def report(self, ctx, results: dict, run) -> None:
        """The per-unit records (the rules read them at load), the region means, the plotted arrays and figures."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        records = {uid: {k: v for k, v in r.items() if k != "images"} for uid, r in results.items()}
        images = {}
        for r in results.values():  # the same noisy images for every model of a pattern (noise from the run's seed)
            if r.get("images") and r["pattern"] not in images:
                images[r["pattern"]] = r["images"]
        settings = self.settings(ctx)
        plotted = _noise_maps_figures.figure_data(records, images)
        run.write_metrics({"records": records, "settings": settings, "plotted": plotted})
        run.write_table("region_means", _noise_maps_claims.region_table(records))
        for pattern, d in plotted.items():
            for stem, fig in _noise_maps_figures.figures(pattern, d).items():
                run.save_figure(fig, stem)

    def settings(self, ctx) -> dict:
        p = ctx.p
        return {"train": self.train(p), "seeds": self.model_seeds(p), "n_train": p["n_train"],
                "n_estimate": p["n_estimate"], "n_images": int(p["n_images"]), "noise_s2": float(p["noise_s2"]),
                "patterns": list(p["patterns"]), "shapes": list(p["shapes"]), "dataset": DATASET,
                "model_kwargs": {s: dict(dataset_spec(DATASET).model_defaults.get(m, {})) for s, m in MODELS.items()}}

    def claims(self, res) -> list:
        return _noise_maps_claims.claims(res)

    def summary(self, res) -> dict:
        return _noise_maps_page.summary(res)


# -- the maps --------------------------------------------------------------------------------------------------
@torch.no_grad()
def residual_maps(model, images: torch.Tensor, labels: torch.Tensor, seed: int = 0, batch_size: int = 500) -> dict:
    """Per-pixel means of the squared residual r² = (x − μθ(z))², z ~ q(z|x) once per image (seeded; the mean when the
    encoder is deterministic), in eval mode: over all images (``all``, Diag-I's MLE σx²), over the images of each digit
    group (``by_group``: ``S`` = 0–4, ``B`` = 5–9: Diag-D's MLE averaged over them), and r² of the first image of each
    group (``examples``: Diag-D's MLE for that image; ``example_index``). Maps are H×W (channels averaged), float64;
    ``counts``: images per group."""
    g = torch.Generator().manual_seed(int(seed))
    labels = torch.as_tensor(labels).cpu()
    was, dev = model.training, next(model.parameters()).device
    total, sums, counts, examples, index = None, {}, {k: 0 for k in GROUPS}, {}, {}
    model.eval()
    try:
        for i in range(0, len(images), batch_size):
            x = to_float(images[i:i + batch_size]).to(dev)
            q = model.encode(x)
            z = q.mean if q.var is None else q.mean + torch.randn(q.mean.shape, generator=g).to(dev) * q.var.sqrt()
            r2 = ((x - model.decode(z)) ** 2).double().cpu().mean(1)  # B×H×W
            total = r2.sum(0) if total is None else total + r2.sum(0)
            small = labels[i:i + len(x)] <= SMALL_DIGITS[-1]
            for grp, sel in (("S", small), ("B", ~small)):
                if sel.any():
                    sums[grp] = sums.get(grp, 0) + r2[sel].sum(0)
                    counts[grp] += int(sel.sum())
                    if grp not in examples:
                        j = int(sel.nonzero()[0])
                        examples[grp], index[grp] = r2[j].clone(), i + j
    finally:
        model.train(was)
    n = sum(counts.values())
    return {"all": total / n if n else None, "by_group": {k: v / counts[k] for k, v in sums.items()},
            "examples": examples, "example_index": index, "counts": counts}


def example_images(images: torch.Tensor, labels: torch.Tensor, n: int) -> dict:
    """The first ``n / 2`` images of each digit group (S = 0–4 first, then B = 5–9), as the model saw them (noisy,
    not clipped): ``{"images": k×H×W, "labels", "index"}``."""
    labels = torch.as_tensor(labels).cpu()
    idx = []
    for sel in (labels <= SMALL_DIGITS[-1], labels > SMALL_DIGITS[-1]):
        idx += [int(i) for i in sel.nonzero().flatten()[:n // 2]]
    x = to_float(images[idx]).double().mean(1) if idx else torch.zeros(0, 1, 1)
    return {"images": _grid(x), "labels": [int(labels[i]) for i in idx], "index": idx}


def _sig(v, digits: int = SIG):
    return float(f"{float(v):.{digits}g}")


def _grid(t) -> list:
    """A tensor as nested lists of numbers with :data:`SIG` significant digits (JSON: the page redraws from them)."""
    if t is None:
        return None
    t = torch.as_tensor(t).double()
    return [_grid(s) for s in t] if t.dim() > 2 else [[_sig(v) for v in row.tolist()] for row in t]


EXPERIMENT = NoiseMaps()
