"""The collapse question (issue #15, part 2): does a VAE with a fixed σx² = 1 collapse (Table 1, first row)?

The paper reports, for the Section-4 VAE at σx² = 1, KL ≈ 0 and MSE 52.7, the total pixel variance of MNIST:
the posterior collapsed and the decoder outputs the mean image. Our Table-1 runs (:mod:`.smoothness`) did not
collapse. Two readings: the objective prefers collapse at σx² = 1 (then runs started anywhere should end
there), or collapse is a stationary point that an optimiser may or may not reach or leave (then the outcome
depends on where training starts and on the learning rate). This experiment separates them.

**Runs.** One model per (initialisation, learning rate, seed): model ``section4-vae`` on ``mnist-d1`` (the
App. D.1 networks, d_z = 8, Adam, batch 64), σx² fixed (parameter ``sigma_x2``, default 1), σz² learned
(stochastic encoding). Each job is built exactly as :mod:`.smoothness` builds its stochastic Table-1 jobs, so
the zoo caches and resumes each model on its own (the random-init model at lr 1e-3 and seed 0 of a preset is the
very zoo entry Table 1 trains at σx² = 1 when the training settings agree); each unit's evaluation is written
when it finishes. Initialisations (a builder argument of :class:`~vaebook.models.vae.Section4VAE`):

* ``random``: PyTorch's default (the paper's);
* ``collapsed``: the network put on the collapsed set: μφ(x) = 0, σz² = 1 and the decoder's first layer
  (the one reading z) zeroed, so KL = 0 and the output ignores z; the expected gradient then keeps every
  parameter coupling z to x where it is (only minibatch noise moves it). See the class docstring for why
  these layers and not the decoder's last one.

**Measured per run** on the first ``n_eval`` *training* images (as Table 1): ``mse`` = E‖x − μθ(μφ(x))‖²
summed over pixels; ``kl`` (nats); the learned ``sigma_z2``; ``recon_var``, the variance across images of the
reconstruction (:func:`vaebook.metrics.recon.reconstruction_variance`, mean over pixels); ``tr_c`` = tr(C),
the total pixel variance of the same images (the collapsed solution's MSE); ``neg_elbo``, the training
objective without its σx²-only constant, E[‖x − μθ(z)‖²/(2σx²) + KL] with one z ~ q(z|x) per image (seeded);
``j_collapse`` = tr(C)/(2σx²) + 0, the collapsed solution's value on the same images, and
``margin_achieved`` = j_collapse − neg_elbo (> 0: the run ended below collapse). The outcome
(:func:`outcome`): ``collapsed`` when KL < :data:`KL_COLLAPSED` nats *and* the reconstructions ignore the input
(:func:`~vaebook.metrics.recon.constant_output_reason` non-empty, or MSE within :data:`MSE_BAND` of tr(C)),
else ``escaped``. ``plateau``: whether the run's training loss curve was flat at its end
(:func:`vaebook.train.plateau`; the run line counts the flat runs); ``curve``: that curve's points for the page's
panels (:func:`vaebook.lab.curves.curve_points`).

**Theory beside it** (computed in ``report``, cheap): for Section 4's linear VAE with the data's covariance C
(:func:`vaebook.theory.collapse.data_covariance` of the training images used) and d_z = 8,
:func:`~vaebook.theory.collapse.collapse_margin` = J_collapse − J*, the depth of the global optimum below the
collapsed solution, over log10 σx² ∈ {0, −0.1, …, −1}. It is 0 exactly when σx² ≥ λ_max(C).

Presets: ``smoke`` (a code test: 2 steps on 128 images, lr 1e-3, seed 0, both initialisations), ``cpu`` (all
60,000 images, 2 epochs per model, the 18 models of the grid) and ``full`` (the paper's 200 epochs).

The page's prose and figures are in :mod:`._collapse_page`. Its runs are evidence for Table 1's claim "σx² = 1
collapses the posterior", judged on the smoothness page by :func:`._collapse_claims.collapse_claim` (this page
shows the same reading with its own runs).
"""
from __future__ import annotations

import dataclasses
import math

import pandas as pd
import torch

from vaebook.experiments import _collapse_page as page
from vaebook.experiments import smoothness as sm
from vaebook.lab import Experiment, ParameterError, ParamSpec, Unit
from vaebook.lab.curves import curve_points
from vaebook.lab.display import fmt, pct
from vaebook.paper import D_Z_SECTION4
from vaebook.train.curve import plateau, plateau_cell

DATASET, MODEL = sm.DATASET, sm.MODEL
INITS = ("random", "collapsed")
LRS = (1e-4, 1e-3, 3e-3)
SEEDS = (0, 1, 2)
#: a run is "collapsed" only with a KL below this many nats (as the smoothness page's collapse tolerance)
KL_COLLAPSED = 0.5
#: … and reconstructions that ignore the input: constant across images, or an MSE within this fraction of tr(C)
MSE_BAND = 0.05
#: log10 σx² of the theory curve (Table 1's grid)
THEORY_LOG10 = tuple(round(-0.1 * i, 1) + 0.0 for i in range(11))  # + 0.0: no "-0.0"
TABLE, RUNS, THEORY = "table_collapse", "table_collapse_runs", "table_collapse_theory"
METRICS = ("kl", "mse", "tr_c", "recon_var", "sigma_z2", "neg_elbo", "j_collapse", "margin_achieved")
METRIC_LABELS = {"kl": "KL (nats)", "mse": "MSE", "tr_c": "tr C (total pixel variance)",
                 "recon_var": "reconstruction variance across images", "sigma_z2": "σz²",
                 "neg_elbo": "−ELBO − const (nats)", "j_collapse": "J_collapse = tr C/(2σx²)",
                 "margin_achieved": "J_collapse − (−ELBO − const)"}
OUTCOMES = ("collapsed", "escaped", "did not train")

# Sizing of ``cpu``: 60,000 images / batch 64 = 937 steps per epoch (the last partial batch is dropped), so
# 2 epochs = 1,874 steps per model; at ≈ 0.12 s per step on 2 CPU cores that is ≈ 225 s per model and
# 18 models × 225 s ≈ 67 min of training, plus ≈ 0.5–1 min per model of evaluation on 10,000 images (measured:
# 10 s per 2,000 images on one busy thread) ≈ 10–15 min: about 1.5 h in all, inside 2.5 h (the ceiling,
# 4,000 steps per model, would be 18 × 4,000 × 0.12 s = 2.4 h of training alone).
PRESETS = {
    "smoke": dict(lrs=[1e-3], seeds=[0], n_train=128, n_eval=128, epochs=1, max_steps=2),
    "cpu": dict(lrs=list(LRS), seeds=list(SEEDS), n_train=None, n_eval=10_000, epochs=2),
    "full": dict(lrs=list(LRS), seeds=list(SEEDS), n_train=None, n_eval=10_000, epochs=200),
}


def unit_id(init: str, lr: float, seed: int) -> str:
    """``random_lr0.001_s0``."""
    return f"{init}_lr{float(lr):g}_s{int(seed)}"


class Collapse(Experiment):
    """Random vs collapsed initialisation at a fixed σx², over learning rates and seeds (module docstring)."""

    name = "collapse"
    datasets = ("mnist",)
    title = "The collapse question: σx² = 1 from a random and from a collapsed start"
    fixed_datasets = ("MNIST with Section 4's nets ('mnist-d1') only: it asks Table 1's question on Table 1's "
                      "setting")
    presets = PRESETS
    full_cost = ("The `cpu` preset trains 18 models (2 initialisations × 3 learning rates × 3 seeds) for 1,874 "
                 "steps each on all 60,000 MNIST training images and evaluates each on 10,000 of them: about 1.5 h on "
                 "2 CPU cores. `full` (200 epochs, 187,400 steps per model) needs a GPU.")
    params = {
        "inits": ParamSpec("list", choices=INITS, default=list(INITS), doc="initialisations"),
        "lrs": ParamSpec("list", item_kind="float", min=0.0, min_exclusive=True, max=1.0, allow_none=True,
                         default=None, doc="Adam learning rates; None = the preset's"),
        "seeds": ParamSpec("list", item_kind="int", min=0, max=2**31 - 1, allow_none=True, default=None,
                           doc="training seeds (one model each); None = the preset's"),
        "sigma_x2": ParamSpec("float", min=0.0, min_exclusive=True, max=100.0, default=1.0,
                              doc="the fixed decoder variance σx² (Table 1's first row: 1)"),
        # as Table 1's (the jobs are built by Smoothness._job)
        "n_train": sm.Smoothness.params["n_train"],
        "n_eval": dataclasses.replace(sm.Smoothness.params["n_eval"],
                                      doc="training images the metrics and tr(C) are measured on"),
        "max_steps": sm.Smoothness.params["max_steps"],
    }

    # -- parameters ------------------------------------------------------------------------------
    def check(self, p: dict) -> None:
        for k in ("inits", "lrs", "seeds"):
            vals = [float(v) if k == "lrs" else v for v in p[k] or ()]
            dup = sorted({v for v in vals if vals.count(v) > 1}, key=str)
            if dup:
                raise ParameterError(f"parameter {k!r} = {p[k]!r} lists {dup} more than once; give each value once.")

    def eval_key(self, unit, p: dict) -> dict:
        """Everything but the selection lists: adding a seed or a learning rate does not re-evaluate the others."""
        return {k: v for k, v in p.items()
                if k not in ("mode", "device", "results_dir", "data_root", "inits", "lrs", "seeds")}

    # -- the plan --------------------------------------------------------------------------------
    @staticmethod
    def job(p: dict, init: str, lr: float, seed: int):
        """The zoo job of one run: Table 1's stochastic job (:meth:`Smoothness._job`) at ``sigma_x2`` with this
        learning rate and seed; ``init`` is a builder argument only when not ``random`` (so a random-init model
        has the same zoo key as Table 1's)."""
        kw = {} if init == "random" else {"init": init}
        return sm.EXPERIMENT._job({**p, "lr": float(lr), "seed": int(seed)}, unit_id(init, lr, seed),
                                  sigma_x2=float(p["sigma_x2"]), sigma_z2="learned", **kw)

    def plan(self, ctx) -> list:
        p = ctx.p
        return [Unit.make(unit_id(init, lr, seed), [self.job(p, init, lr, seed)], init=init, lr=float(lr),
                          seed=int(seed))
                for init in p["inits"] for lr in p["lrs"] for seed in p["seeds"]]

    # -- one model ------------------------------------------------------------------------------
    def evaluate(self, unit, ctx) -> dict:
        from vaebook.lab.data import to_float
        from vaebook.metrics.recon import mean_kl, mean_mse, reconstruction_variance

        p, info = ctx.p, unit.meta
        s2 = float(p["sigma_x2"])
        rec = {"unit": unit.id, "init": info["init"], "lr": info["lr"], "seed": info["seed"], "sigma_x2": s2}
        tm = ctx.model(unit.jobs[0])
        if not tm.ok:
            rec["failed"] = tm.reason
            rec["outcome"], rec["outcome_reason"] = outcome(rec)
            return {"record": rec}
        model = tm.model
        raw = ctx.data(DATASET, p["n_train"], None).train
        raw = raw[: p["n_eval"]] if p["n_eval"] else raw
        x_eval = to_float(raw)
        rec["n_eval"] = len(x_eval)
        rec["mse"] = mean_mse(model, x_eval)
        rec["kl"] = mean_kl(model, x_eval)
        rec["sigma_z2"] = float(model.sigma_z2.detach())
        rec["recon_var"] = reconstruction_variance(model, x_eval)
        rec["tr_c"] = total_variance(raw)
        rec["neg_elbo"] = neg_elbo(model, x_eval, s2, seed=int(p["seed"]))
        rec["j_collapse"] = rec["tr_c"] / (2.0 * s2)
        rec["margin_achieved"] = rec["j_collapse"] - rec["neg_elbo"]
        rec["outcome"], rec["outcome_reason"] = outcome(rec)
        last = tm.history[-1] if tm.history else {}
        rec["steps"], rec["final_train_loss"] = last.get("step", 0), last.get("loss")
        rec["plateau"] = plateau(tm.history)
        rec["curve"] = curve_points(tm.history)  # [[step, loss], …] for the page's training-curve panels
        rec["train_s"] = tm.meta.get("train_wall_s")
        return {"record": rec}

    # -- all models -----------------------------------------------------------------------------
    def report(self, ctx, results: dict, run) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from vaebook.lab.compare import compare, verdict_counts
        from vaebook.theory.collapse import data_covariance

        p = ctx.p
        records = [res["record"] for res in results.values()]
        order = [r["unit"] for r in records]
        table = compare(long_rows(records), pd.DataFrame(), lambda c, t: ("ours only", ""), order)
        rank = {m: i for i, m in enumerate(METRICS)}
        table = (table.assign(_m=table["metric"].map(lambda m: rank.get(m, len(rank))))
                 .sort_values(["_m"], kind="stable").drop(columns="_m").reset_index(drop=True))
        run.write_table(TABLE, table)
        runs = runs_table(records)
        run.write_table(RUNS, runs)
        train = ctx.data(DATASET, p["n_train"], None).train
        C = data_covariance(train)
        theory = theory_table(C, D_Z_SECTION4, theory_grid(p["sigma_x2"]))
        run.write_table(THEORY, theory)
        lam_max = float(torch.linalg.eigvalsh(C)[-1])
        run.save_figure(page.outcome_figure(runs, KL_COLLAPSED), "fig_collapse_outcome")
        run.save_figure(page.theory_figure(theory, runs, p["sigma_x2"], lam_max), "fig_collapse_theory")
        job = self.job(p, p["inits"][0], p["lrs"][0], p["seeds"][0])
        run.write_metrics({
            "records": records, "n_train": len(train), "n_eval": min(p["n_eval"] or len(train), len(train)),
            "sigma_x2": float(p["sigma_x2"]), "d_z": D_Z_SECTION4, "train_config": job.train_dict,
            "inits": list(p["inits"]), "lrs": [float(v) for v in p["lrs"]], "seeds": list(p["seeds"]),
            "theory": {"tr_c_train": float(torch.trace(C)), "lambda_max": lam_max,
                       "n_images": len(train), "log10_sigma_x2": list(theory["log10_sigma_x2"])},
            "thresholds": {"kl_collapsed": KL_COLLAPSED, "mse_band": MSE_BAND},
            "did_not_train": {r["unit"]: r["failed"] for r in records if r.get("failed")},
            "verdicts": verdict_counts(table)})

    # -- the page -------------------------------------------------------------------------------
    def scale(self, res) -> str:
        """Steps per model as a fraction of the paper's (Table 1's 200 epochs), training images, seeds."""
        m = res.metrics if res is not None else {}
        steps = max([r.get("steps") or 0 for r in m.get("records") or []] or [0])
        n, seeds = m.get("n_train"), m.get("seeds") or []
        if not steps:
            return ""
        return (f"{fmt(steps, ',d')} of {fmt(sm.PAPER_STEPS, ',.0f')} steps ({pct(steps, sm.PAPER_STEPS)}), "
                f"{fmt(n, ',d', '?')} of {fmt(sm.PAPER_IMAGES, ',d')} images ({pct(n or 0, sm.PAPER_IMAGES)}), "
                f"{len(seeds)} seed{'' if len(seeds) == 1 else 's'} per initialisation and learning rate")

    def summary(self, res) -> dict:
        """The page's glued strings (:func:`._collapse_page.summary`)."""
        return page.summary(res)


# -- measurements ----------------------------------------------------------------------------------------
def total_variance(x: torch.Tensor) -> float:
    """tr(C) of images ``N×C×H×W`` (uint8, or float in [0, 1]): E‖x − x̄‖² summed over pixels, in float64 (uint8
    divided by 255 there, as :func:`~vaebook.theory.collapse.data_covariance`): the MSE of the mean image."""
    uint8 = x.dtype == torch.uint8
    x = x.reshape(x.shape[0], -1).double()
    x = x / 255.0 if uint8 else x
    return float(x.var(0, unbiased=False).sum())


@torch.no_grad()
def neg_elbo(model, images, sigma_x2: float, seed: int, batch_size: int = 500) -> float:
    """E_x[‖x − μθ(z)‖²/(2σx²) + KL(q(z|x) ‖ p(z))], one z ~ q(z|x) per image (noise from ``seed``): the training
    objective without its σx²-only constant (d/2)·ln 2πσx², in nats per image."""
    from vaebook._util import eval_mode, flat_sum, iter_batches, model_device, model_dtype

    dev, dt = model_device(model), model_dtype(model)
    g = torch.Generator().manual_seed(int(seed))
    tot, n = 0.0, 0
    with eval_mode(model):
        for x in iter_batches(images, batch_size):
            x = x.to(dev, dt)
            q = model.encode(x)
            eps = torch.randn(q.mean.shape, generator=g, dtype=torch.float64).to(dev, q.mean.dtype)
            z = q.mean + eps * q.var.sqrt()
            val = flat_sum((model.decode(z) - x) ** 2).double() / (2.0 * sigma_x2) + \
                q.kl_to_standard_normal().double()
            tot, n = tot + float(val.sum()), n + len(x)
    return tot / n


def outcome(rec: dict) -> tuple[str, str]:
    """``(outcome, why)`` of one run record: ``did not train`` (``failed``), ``collapsed`` when KL <
    :data:`KL_COLLAPSED` and the reconstructions ignore the input (constant across images by
    :func:`~vaebook.metrics.recon.constant_output_reason`, or MSE within :data:`MSE_BAND` of tr C), else
    ``escaped``. The reason quotes the numbers."""
    from vaebook.metrics.recon import constant_output_reason

    if rec.get("failed"):
        return "did not train", str(rec["failed"])
    kl, mse, trc, rv = (float(rec[k]) for k in ("kl", "mse", "tr_c", "recon_var"))
    const = constant_output_reason(rv)
    rel = abs(mse - trc) / trc if trc > 0 else math.inf
    near = rel <= MSE_BAND
    ignores = bool(const) or near
    kl_txt = f"KL {fmt(kl)} {'<' if kl < KL_COLLAPSED else '≥'} {KL_COLLAPSED:g} nats"
    in_txt = (f"reconstruction variance across images {rv:.2g} ({'constant' if const else 'not constant'}); MSE "
              f"{fmt(mse)} is {rel:.1%} from tr C = {fmt(trc)} ({'within' if near else 'outside'} {MSE_BAND:.0%})")
    return ("collapsed" if kl < KL_COLLAPSED and ignores else "escaped"), f"{kl_txt}; {in_txt}"


def long_rows(records: list) -> pd.DataFrame:
    """Our long rows (``row`` = unit id, one per metric); a run that did not train has ``failed`` set."""
    rows = []
    for r in records:
        for m in METRICS:
            if not r.get("failed") and r.get(m) is None:
                continue
            rows.append({"row": r["unit"], "dataset": DATASET, "init": r["init"], "lr": r["lr"], "seed": r["seed"],
                         "metric": m, "ours": math.nan if r.get("failed") else float(r[m]),
                         "failed": r.get("failed") or None})
    return pd.DataFrame(rows, columns=["row", "dataset", "init", "lr", "seed", "metric", "ours", "failed"])


RUN_COLUMNS = ("init", "lr", "seed", "outcome", "kl", "mse", "tr_c", "recon_var", "sigma_z2", "neg_elbo",
               "j_collapse", "margin_achieved", "steps", "plateau", "outcome_reason")


def runs_table(records: list) -> pd.DataFrame:
    """One row per run (init, lr, seed) with its outcome, in plan order; ``plateau``: the verdict of
    :func:`vaebook.train.plateau` on its training loss curve (``n/a`` without one)."""
    return pd.DataFrame([{k: plateau_cell(r.get(k)) if k == "plateau" else r.get(k) for k in RUN_COLUMNS}
                         for r in records], columns=list(RUN_COLUMNS))


def theory_grid(sigma_x2: float) -> list:
    """:data:`THEORY_LOG10`, with log10 of the run's σx² added when it is off that grid (largest first)."""
    grid = set(THEORY_LOG10) | {round(math.log10(float(sigma_x2)), 6) + 0.0}
    return sorted(grid, reverse=True)


def theory_table(C: torch.Tensor, d_z: int, log10s) -> pd.DataFrame:
    """:func:`~vaebook.theory.collapse.collapse_margin` of the linear VAE at each log10 σx²."""
    from vaebook.theory.collapse import collapse_margin

    return pd.DataFrame([{"log10_sigma_x2": float(v), **collapse_margin(C, d_z, 10.0 ** float(v))} for v in log10s])


EXPERIMENT = Collapse()

__all__ = ["EXPERIMENT", "Collapse", "INITS", "LRS", "SEEDS", "KL_COLLAPSED", "MSE_BAND", "THEORY_LOG10", "TABLE",
           "RUNS", "THEORY", "METRICS", "outcome", "neg_elbo", "total_variance", "theory_table", "runs_table",
           "unit_id"]
