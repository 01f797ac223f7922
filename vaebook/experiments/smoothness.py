"""Section 4.2 and Appendix E: how the decoder variance σx² (Table 1) and the encoder variance σz²
(Table E.8) set the decoder's smoothness, the KL and the mutual information (MNIST, d_z = 8,
the Appendix-D.1 networks without batch norm: model ``section4-vae`` on dataset ``mnist-d1``).

* Table 1: σx² fixed at log10 σx² ∈ {0, −0.1, …, −1}; *stochastic* encoding (σz² learned, its final
  value reported) and *deterministic* encoding (σz² = 0).
* Table E.8: σz² fixed at log10 σz² ∈ {1.0, 0.9, …, −1.0}; σx² by the Iso-I MLE (Eq. 10).
* Figures D.3 (decodes of perturbed encodings) and D.4 / E.5 (t-SNE of the codes with prior draws).

One unit per trained model (``table1_sx-0.3_stochastic``, ``table1_sx-0.3_deterministic``,
``tableE8_sz0.5``); the deterministic unit also holds the stochastic model at the same σx² (its σz² is
the MI kernel below).

Metrics (``vaebook.metrics``), all on (a subset of) the **training** set as in the paper:
MSE = E‖x − μθ(μφ(x))‖² summed over pixels; KL (nats); MI = Eq. (D.1) with d_z/2 on evaluation
batches (it can not exceed ln of the batch size); expected gaps Δ²(s²) for s² ∈ {1e-2, 1e-3} (Eq. 5);
ELS **divided by d_z** (= E‖∇μθ‖²_F / d_z, Eq. C.7), the normalisation the printed Table 1 / E.8 values
follow (their gaps satisfy Δ² ≈ 2·d_z·s²·ELS). Per model also whether its training loss curve reached a
plateau (:func:`vaebook.train.plateau`: ``plateau`` / ``det_plateau`` columns; the run line counts them).

Choices where the paper is silent:

* deterministic-encoding MI: Eq. (D.1) needs a kernel width; we use the σz² the stochastic model
  learned at the same σx² (recorded as ``det_mi_kernel_sigma_z2``; 1e-2 when there is none);
* ``sigma_z2_lr_factor`` (medium only): medium trains each of its 17 models for 768 steps (12 epochs of
  4,096 images; the CPU budget), over every other σx² of Table 1 and five σz² of Table E.8. At the paper's
  lr 1e-3, Adam moves log σz² by at most ~1e-3 per step, so 768 steps could not take σz² below ~0.46
  (Table 1 reaches 0.0045); medium gives that one parameter 10× the learning rate (a builder argument
  of :class:`~vaebook.models.vae.Section4VAE`, so part of the model's cache key). ``full`` uses lr 1e-3
  for everything.
* ``lr``: 1e-3 at every preset. A first medium run used 3e-3 to leave the mean-image plateau sooner;
  8 of its 11 stochastic models (and most deterministic ones) never left it (MSE ≈ 53 = the mean
  image, KL ≈ 0 at σx² = 0.1); we did not diagnose why (ReLUs killed by large early steps are one candidate).
  At 1e-3 the same nets leave the plateau after ~100–200 steps (measured at σx² = 0.1: MSE 27, KL 13
  after 200 steps stochastic; MSE 18 deterministic).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
import torch

from vaebook.lab import Experiment, Job, ParameterError, ParamSpec, Unit
from vaebook.lab.compare import compare, pairwise_trend, spearman, verdict, verdict_line
from vaebook.lab.display import fmt, pct
from vaebook.lab.paper import long_rows
from vaebook.paper import D_Z_SECTION4, paper_table
from vaebook.train.curve import plateau, plateau_cell, plateau_line

DATASET = "mnist-d1"
MODEL = "section4-vae"
SIGMA_X2_GRID = tuple(round(-0.1 * i, 1) for i in range(11))  # 0.0 … −1.0 (Table 1)
SIGMA_Z2_GRID = tuple(round(1.0 - 0.1 * i, 1) for i in range(21))  # 1.0 … −1.0 (Table E.8)
GAP_S2 = (1e-2, 1e-3)
ENCODINGS = ("stochastic", "deterministic")
TABLES = ("table1", "tableE8")
TITLES = {"table1": "Table 1", "tableE8": "Table E.8"}
#: the column of our wide tables / the paper's CSV holding a row's log10 value, and the row-key prefix
KEY = {"table1": "log10_sigma_x2", "tableE8": "log10_sigma_z2"}
PREFIX = {"table1": "sx", "tableE8": "sz"}
#: the compared columns, in display order (``det_``: deterministic encoding)
COLUMNS = {"table1": ("mse", "kl", "sigma_z2", "mi", "gap_1e-2", "gap_1e-3", "els", "det_mse", "det_mi",
                      "det_gap_1e-2", "det_gap_1e-3", "det_els"),
           "tableE8": ("mse", "kl", "mi", "gap_1e-2", "gap_1e-3", "els")}
#: rows where the paper shows posterior collapse of the stochastic encoder (σx² = 1; σz² ≥ 10^0.9)
COLLAPSE = {"table1": (0.0,), "tableE8": (1.0, 0.9)}
DET_MI_NOTE = "kernel σz² = the stochastic model's at this σx² (paper silent)"
DEFAULT_MI_KERNEL = 1e-2
#: "trend holds" needs ours within this factor (either way) of the paper's value, besides the row's direction
TREND_BAND = 2.0
#: an MI cell is "at ceiling" when ours ≥ ln(batch) − this (nats): Eq. (D.1) cannot exceed ln(batch)
MI_CEILING_TOL = 0.05
#: on a collapse row, a KL/MI the paper prints as ≈ 0 must be matched within this many nats
COLLAPSE_TOL = 0.5
#: a claim is "partly" shown when at least this share of its steps/rows (but not all) supports it
PARTLY_MIN = 0.5
#: the paper's Section-4 training (App. D.1): 200 epochs of the 60,000 MNIST images, batch 64
PAPER_IMAGES, PAPER_EPOCHS, PAPER_BATCH = 60_000, 200, 64
PAPER_STEPS = PAPER_EPOCHS * PAPER_IMAGES / PAPER_BATCH


def _tag(v: float) -> str:
    """A log10 value as written in unit ids and row keys (``-0.3``, ``0.0``, ``-1.0``; ``-0.25`` off the grid)."""
    v = float(v) + 0.0  # no "-0.0"
    return f"{v:.1f}" if round(v, 1) == v else f"{v:g}"


def row_key(table: str, log10: float) -> str:
    """The comparison row of a log10 value: ``sx-0.3`` (Table 1), ``sz0.5`` (Table E.8)."""
    return f"{PREFIX[table]}{_tag(log10)}"


def _epochs(p: dict, table: str) -> int:
    """Training epochs of ``table``'s models: ``epochs_tableE8`` for Table E.8 when given, else ``epochs``."""
    return p["epochs_tableE8"] if table == "tableE8" and p.get("epochs_tableE8") is not None else p["epochs"]


class Smoothness(Experiment):
    """Tables 1 and E.8 with Figures D.3, D.4 and E.5 (see the module docstring)."""

    name = "smoothness"
    title = "Smoothness, σx² and σz² (Table 1, Table E.8)"
    presets = {
        "smoke": dict(sigma_x2_log10=[0.0, -1.0], sigma_z2_log10=[0.0], n_train=128, n_eval=128, n_smooth=16,
                      mi_batch=128, n_tsne=60, tsne_panels="few", sigma_z2_lr_factor=1.0, lr=1e-3, epochs=1,
                      max_steps=2),
        # 12 epochs of 4,096 images = 768 steps per model, 17 models (the committed results)
        "medium": dict(sigma_x2_log10=list(SIGMA_X2_GRID[::2]), sigma_z2_log10=[1.0, 0.5, 0.0, -0.5, -1.0],
                       n_train=4096, n_eval=2000, n_smooth=250, mi_batch=2000, n_tsne=600, tsne_panels="all",
                       sigma_z2_lr_factor=10.0, lr=1e-3, epochs=12),
        # all 60,000 images, 2 epochs = 1,874 steps per model (1 % of the paper's 200 epochs); MI with the paper's
        # 10,000-image batch. 33 models at ≈ 0.19 s per step (measured on 2 CPU cores, 2026-11-29: the collapse
        # page's cpu run, same net) ≈ 3.3 h of training, plus about a minute of evaluation per model: too long for
        # one sitting, so run it in three of 11 models each (≈ 1.1 h of training + ≈ 10 min of evaluation), each a
        # complete, committable run that reuses the earlier sittings' models and evaluations (book/how_to_rerun.md):
        # `-p tables='["table1"]' -p encodings='["stochastic"]'`, then `-p tables='["table1"]'`, then the whole.
        # Table E.8 trains 4 epochs (3,748 steps): at 2 (the committed sitting 3, 2026-11-30) none of its 11 loss
        # curves was flat (the last 20 % still gave 5.3–9.3 % of the improvement) while 21 of Table 1's 22 were;
        # a fourth sitting retrains only those 11 (≈ 2.3 h at the measured 334–396 s per 2 epochs)
        "cpu": dict(sigma_x2_log10=list(SIGMA_X2_GRID), sigma_z2_log10=list(SIGMA_Z2_GRID[::2]), n_train=None,
                    n_eval=10_000, n_smooth=500, mi_batch=10_000, n_tsne=2000, tsne_panels="all",
                    sigma_z2_lr_factor=10.0, lr=1e-3, epochs=2, epochs_tableE8=4),
        "full": dict(sigma_x2_log10=list(SIGMA_X2_GRID), sigma_z2_log10=list(SIGMA_Z2_GRID), n_train=None,
                     n_eval=None, n_smooth=10_000, mi_batch=10_000, n_tsne=3000, tsne_panels="all",
                     sigma_z2_lr_factor=1.0, lr=1e-3, epochs=200),
    }
    params = {
        "tables": ParamSpec("list", choices=TABLES, default=list(TABLES)),
        "encodings": ParamSpec("list", choices=ENCODINGS, default=list(ENCODINGS)),
        "sigma_x2_log10": ParamSpec("list", item_kind="float", min=-3.0, max=1.0, allow_none=True, default=None,
                                    doc="log10 σx² values of Table 1; None = the preset's"),
        "sigma_z2_log10": ParamSpec("list", item_kind="float", min=-3.0, max=2.0, allow_none=True, default=None,
                                    doc="log10 σz² values of Table E.8; None = the preset's"),
        "n_train": ParamSpec("int", min=64, max=60_000, allow_none=True, default=None,
                             doc="training images; None = the preset's"),
        "n_eval": ParamSpec("int", min=16, max=60_000, allow_none=True, default=None,
                            doc="training images used for MSE/KL/MI"),
        "n_smooth": ParamSpec("int", min=8, max=60_000, allow_none=True, default=None,
                              doc="images for the gaps and the ELS"),
        "mi_batch": ParamSpec("int", min=16, max=60_000, allow_none=True, default=None,
                              doc="evaluation batch of Eq. (D.1)"),
        "n_tsne": ParamSpec("int", min=20, max=10_000, allow_none=True, default=None, doc="codes in each t-SNE panel"),
        "sigma_z2_lr_factor": ParamSpec("float", min=0.0, min_exclusive=True, max=1000.0, allow_none=True,
                                        default=None, doc="learning-rate multiplier of log σz² (Table 1 stochastic)"),
        "tsne_panels": ParamSpec("str", choices=("all", "few"), allow_none=True, default=None,
                                 doc="t-SNE of every figure panel, or only the stochastic Table-1 ends (smoke)"),
        "lr": ParamSpec("float", min=0.0, min_exclusive=True, max=1.0, allow_none=True, default=None,
                        doc="Adam learning rate; None = the preset's (the paper's 1e-3)"),
        "figure_s2": ParamSpec("float", min=0.0, min_exclusive=True, max=10.0, default=1e-2,
                               doc="perturbation variance of Figure D.3"),
        "max_steps": ParamSpec("int", min=1, max=10_000_000, allow_none=True, default=None,
                               doc="cap on steps per model"),
        "epochs_tableE8": ParamSpec("int", min=1, max=100_000, allow_none=True, default=None,
                                    doc="epochs of Table E.8's models; None = `epochs` (at 2 epochs on all images "
                                        "Table 1's loss curves are flat, Table E.8's still fall)"),
    }
    full_cost = ("`python -m vaebook.lab.run_all --preset full --mode compute --only smoothness`: 43 models × "
                 "187,500 steps (200 epochs of 60,000 MNIST images); not run yet. Medium (17 models × 768 steps) "
                 "took 21 min on 2 CPU threads, so expect days on a CPU: use a GPU.")

    # -- parameters ------------------------------------------------------------------------------
    def check(self, p: dict) -> None:
        for k in ("tables", "encodings", "sigma_x2_log10", "sigma_z2_log10"):
            tags = [v if isinstance(v, str) else _tag(v) for v in p[k] or ()]
            dup = sorted({t for t in tags if tags.count(t) > 1})
            if dup:
                raise ParameterError(f"parameter {k!r} = {p[k]!r} lists {dup} more than once; give each value once.")

    def eval_key(self, unit, p: dict) -> dict:
        """Every parameter but the selection (tables, encodings, the two sweeps): a unit's id, figure panels
        and jobs (with the stochastic sibling of a deterministic unit) name what it depends on, so a run in
        sittings (Table 1 first, then the whole page) does not re-evaluate the models it shares."""
        return {k: v for k, v in p.items() if k not in ("mode", "device", "results_dir", "data_root", "tables",
                                                          "encodings", "sigma_x2_log10", "sigma_z2_log10",
                                                          "epochs_tableE8")}

    # -- the plan --------------------------------------------------------------------------------
    def _job(self, p: dict, uid: str, table: str = "table1", **model_kwargs) -> Job:
        from vaebook.data import dataset_spec

        train = {**dataset_spec(DATASET).train, "epochs": _epochs(p, table), "lr": p["lr"]}
        if p.get("max_steps") is not None:
            train["max_steps"] = p["max_steps"]
        variant = {"n_train": p["n_train"]} if p.get("n_train") is not None else None
        return Job.make(MODEL, DATASET, train, p["seed"], dict(d_z=D_Z_SECTION4, **model_kwargs), variant, tag=uid)

    def plan(self, ctx) -> list:
        p = ctx.p
        few = p["tsne_panels"] == "few"
        units = []
        if "table1" in p["tables"]:
            xs = p["sigma_x2_log10"]
            ends = {max(xs), min(xs)}
            stoch = {}
            for lx in xs:
                kw = {"sigma_z2_lr_factor": p["sigma_z2_lr_factor"]} if p["sigma_z2_lr_factor"] != 1.0 else {}
                stoch[lx] = self._job(p, f"table1_sx{_tag(lx)}_stochastic", sigma_x2=10.0 ** lx,
                                      sigma_z2="learned", **kw)
            for lx in xs:
                for enc in p["encodings"]:
                    uid = f"table1_sx{_tag(lx)}_{enc}"
                    if enc == "stochastic":
                        jobs = [stoch[lx]]
                    else:  # the stochastic sibling's σz² is the MI kernel (when it is run)
                        jobs = [self._job(p, uid, sigma_x2=10.0 ** lx, sigma_z2=0.0)]
                        jobs += [stoch[lx]] if "stochastic" in p["encodings"] else []
                    panel = f"{enc}, σx²={10 ** lx:.2g}"
                    units.append(Unit.make(uid, jobs, table="table1", log10=float(lx), encoding=enc,
                                           decodes=panel if lx in ends else "",
                                           tsne=panel if lx in ends and (enc == "stochastic" or not few) else ""))
        if "tableE8" in p["tables"]:
            zs = p["sigma_z2_log10"]
            ends = {max(zs), min(zs)}
            for lz in zs:
                uid = f"tableE8_sz{_tag(lz)}"
                job = self._job(p, uid, "tableE8", sigma_x2="mle", sigma_z2=10.0 ** lz)
                units.append(Unit.make(uid, [job], table="tableE8",
                                       log10=float(lz), encoding="stochastic", decodes="",
                                       tsne=f"σz²={10 ** lz:.2g} (fixed)" if lz in ends and not few else ""))
        return units

    # -- one model ------------------------------------------------------------------------------
    def evaluate(self, unit, ctx) -> dict:
        """The Table-1 / E.8 columns of the unit's model (its first job), and its figure panels."""
        from vaebook.lab.data import to_float
        from vaebook.metrics import mean_kl, mean_mse, mi_upper_bound, smoothness_report

        p, info = ctx.p, unit.meta
        rec = {"unit": unit.id, "table": info["table"], "log10": info["log10"], "encoding": info["encoding"]}
        tm = ctx.model(unit.jobs[0])
        if not tm.ok:
            return {"record": {**rec, "failed": tm.reason}}
        model, seed = tm.model, p["seed"]
        d = ctx.data(DATASET, p["n_train"], None)
        x = to_float(d.train)
        x_eval = x[: p["n_eval"]] if p["n_eval"] else x
        x_smooth = x[: p["n_smooth"]] if p["n_smooth"] else x
        stochastic = not getattr(model, "deterministic", False)
        kernel = None
        if not stochastic:
            sib = ctx.model(unit.jobs[1]) if len(unit.jobs) > 1 else None
            if sib is not None and sib.ok:
                kernel = float(sib.model.sigma_z2.detach())
            else:
                kernel = DEFAULT_MI_KERNEL
                rec["mi_kernel_note"] = (f"kernel σz² = {DEFAULT_MI_KERNEL:g}: no trained stochastic model at this "
                                         "σx² (paper silent)")
            rec["det_mi_kernel_sigma_z2"] = kernel
        rec["mse"] = mean_mse(model, x_eval)
        if stochastic:
            rec["kl"] = mean_kl(model, x_eval)
            rec["sigma_z2"] = float(model.sigma_z2.detach())
        mi = mi_upper_bound(model, x_eval, batch_size=min(p["mi_batch"], len(x_eval)), seed=seed, sigma_z2=kernel)
        rec["mi"], rec["mi_ln_n"] = mi["mi_d1"], mi["ln_n"]
        sm = smoothness_report(model, x_smooth, s2_values=GAP_S2, seed=seed)
        rec["gap_1e-2"], rec["gap_1e-3"] = sm["gap_0.01"], sm["gap_0.001"]
        rec["els"], rec["els_frobenius"] = sm["els"], sm["els_frobenius"]
        v = getattr(model, "variance", None)
        if v is not None and v.mode == "mle":
            rec["sigma_x2_mle"] = float(v.running_sigma2)
        last = tm.history[-1] if tm.history else {}
        rec["final_loss"], rec["steps"] = last.get("loss"), last.get("step", 0)
        rec["plateau"] = plateau(tm.history)
        out = {"record": rec, "panel": info["decodes"] or info["tsne"]}
        if info["decodes"]:
            out["decodes"] = self._perturbed_decodes(model, x_eval, p["figure_s2"], seed)
        if info["tsne"]:
            n = min(p["n_tsne"], len(x_eval))
            out["tsne"] = self._tsne(model, x_eval, d.train_labels[: len(x_eval)], n, seed, 250 if ctx.smoke else None)
        return out

    @staticmethod
    @torch.no_grad()
    def _perturbed_decodes(model, x, s2: float, seed: int, n_images: int = 4, n_perturb: int = 6) -> torch.Tensor:
        """Figure D.3 panel: rows [original | reconstruction | decodes of μφ(x) + ε, ε ~ N(0, s²I)] (one image)."""
        g = torch.Generator().manual_seed(seed)
        xs = x[:n_images].to(model.device)
        mu = model.encode(xs).mean
        eps = torch.randn((n_perturb,) + tuple(mu.shape), generator=g, dtype=torch.float64) * math.sqrt(s2)
        pert = model.decode(mu.unsqueeze(0) + eps.to(mu.device, mu.dtype))  # P×B×1×28×28
        cols = [xs.cpu(), model.decode(mu).cpu()] + [pert[j].cpu() for j in range(n_perturb)]
        return torch.cat([torch.cat([c[i, 0] for c in cols], dim=1) for i in range(len(xs))], dim=0).float()

    @staticmethod
    def _tsne(model, x, labels, n: int, seed: int, max_iter: Optional[int]) -> dict:
        """Figures D.4 / E.5 panel: t-SNE of μφ(x) (coloured by digit) with n/2 prior draws."""
        from threadpoolctl import threadpool_limits

        from vaebook.metrics.tsne import tsne_latents

        kw = {} if max_iter is None else {"max_iter": max_iter}
        # Barnes-Hut on a few hundred points: OpenMP threads cost more than they save (and a lot on a busy CPU)
        with threadpool_limits(limits=1 if n < 1000 else None):
            r = tsne_latents(model, x[:n], labels[:n], n_prior=max(10, n // 2), seed=seed, **kw)
        return {k: torch.as_tensor(np.asarray(r[k])) for k in ("embedding", "labels", "is_prior")}

    # -- all models -----------------------------------------------------------------------------
    def report(self, ctx, results: dict, run) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        p = ctx.p
        records = [res["record"] for res in results.values()]
        n = len(ctx.data(DATASET, p["n_train"], None).train)
        n_eval = min(p["n_eval"] or n, n)
        mi_cap = math.log(min(p["mi_batch"], n_eval))
        wide = wide_tables(records)
        for table in TABLES:
            if table in wide:
                run.write_table(table, compare_table(ours_long(records, table), paper_long(table), table, mi_cap))
                run.write_table(f"ours_{table}", wide[table])
        train = {**(dict(next(iter(ctx.models)).train) if ctx.models else {}), "seed": p["seed"],
                 "sigma_z2_lr_factor": p["sigma_z2_lr_factor"]}
        run.write_metrics({
            "records": records, "train_config": train, "n_train": n, "n_eval": n_eval,
            "epochs_by_table": {t: _epochs(p, t) for t in p["tables"]},
            "n_smooth": min(p["n_smooth"] or n, n), "mi_cap_ln_batch": mi_cap, "gap_s2": list(GAP_S2),
            "els_normalisation": "per d_z (E||J||_F^2 / d_z, Eq. C.7), as Table 1 prints",
            "did_not_train": {r["unit"]: r["failed"] for r in records if r.get("failed")}})
        # panels in plan order: the largest σx² (σz²) of the sweep first, each encoding
        ends = {t: sorted({r["log10"] for r in records if r["table"] == t}, reverse=True) for t in TABLES}

        def panels(what, table):
            got = [res for res in results.values() if what in res and res["record"]["table"] == table]
            got.sort(key=lambda res: (ENCODINGS.index(res["record"]["encoding"]),
                                      ends[table].index(res["record"]["log10"])))
            return {res["panel"]: res[what] for res in got}

        if panels("decodes", "table1"):
            run.save_figure(figure_perturbed(panels("decodes", "table1"), p["figure_s2"]), "figD3_perturbed_decodes")
        if panels("tsne", "table1"):
            run.save_figure(figure_tsne(panels("tsne", "table1")), "figD4_tsne")
        if panels("tsne", "tableE8"):
            run.save_figure(figure_tsne(panels("tsne", "tableE8")), "figE5_tsne")

    # -- what the page's prose quotes -----------------------------------------------------------
    def summary(self, res) -> dict:
        """Strings for the page's prose from loaded results (or None): every value "n/a" when missing."""
        return summary(res)

    def claims(self, res) -> list:
        """One dict per claim of Section 4.2 and Appendix E (see :func:`claims`)."""
        return claims(res)


# --- the comparison with the paper ------------------------------------------------------------------
def _band(paper: float, ours: float) -> tuple[bool, str]:
    """Whether ours is within a factor :data:`TREND_BAND` of the paper's value (both positive)."""
    if not (paper > 0 and ours > 0):
        return False, f"ours {fmt(ours)} and paper {fmt(paper)} are not both positive: no ×{TREND_BAND:g} band"
    r = ours / paper
    ok = 1.0 / TREND_BAND <= r <= TREND_BAND
    return ok, f"ours/paper = {r:.2f} ({'within' if ok else 'outside'} ×{TREND_BAND:g})"


def _row_trend(cell, df: pd.DataFrame, key: str, exclude: set) -> tuple[bool, str]:
    """(holds, why) for one cell: ours within :data:`TREND_BAND` of the paper's value **and**, against each
    neighbouring row of the sweep that we ran (rows in ``exclude`` — collapse rows — and rows without our
    value left out), our change has the paper's sign (:func:`vaebook.lab.compare.pairwise_trend`: where the
    paper's two values are within 5 % of each other ours must be within 10 %)."""
    pv, ov = float(cell["paper"]), float(cell["ours"])
    in_band, why_band = _band(pv, ov)
    sel = df[(df["dataset"] == cell["dataset"]) & (df["metric"] == cell["metric"]) & df["paper"].notna()
             & df["ours"].notna() & ~df["row"].isin(exclude)].sort_values(key, ascending=False, kind="stable")
    rows = list(sel["row"])
    if cell["row"] not in rows:
        return False, why_band + "; direction not judged (row outside the sweep)"
    i = rows.index(cell["row"])
    nbs = [sel.iloc[j] for j in (i - 1, i + 1) if 0 <= j < len(rows)]
    if not nbs:
        return False, why_band + "; no neighbouring row run: direction not judged"
    dirs = [pairwise_trend(pv, float(nb["paper"]), ov, float(nb["ours"]), str(nb["row"])) for nb in nbs]
    ok_dir = all(d[0] for d in dirs)
    return in_band and ok_dir, "; ".join([why_band] + [d[1] for d in dirs])


def paper_long(table: str) -> pd.DataFrame:
    """The paper's Table 1 / E.8 as long rows (``row`` = :func:`row_key`, ``metric`` = the paper's column)."""
    key = KEY[table]
    return long_rows(table, lambda r: row_key(table, r[key]), {c: (DATASET, c) for c in COLUMNS[table]},
                     extra=lambda r: {key: float(r[key]) + 0.0})


def ours_long(records: list, table: str) -> pd.DataFrame:
    """Our long rows of ``table`` from the unit records (``det_`` metrics from the deterministic encoder);
    ``failed`` holds the reason of a model that did not train, ``reason`` the MI kernel of ``det_mi``."""
    key, rows = KEY[table], []
    for r in records:
        if r["table"] != table:
            continue
        pre = "det_" if r["encoding"] == "deterministic" else ""
        for m in COLUMNS[table]:
            if not m.startswith(pre) or (not pre and m.startswith("det_")):
                continue
            q = m[len(pre):]
            if not r.get("failed") and r.get(q) is None:
                continue
            rows.append({"row": row_key(table, r["log10"]), "dataset": DATASET, "metric": m,
                         "ours": float("nan") if r.get("failed") else float(r[q]), key: float(r["log10"]) + 0.0,
                         "failed": r.get("failed") or None,
                         "reason": (r.get("mi_kernel_note") or DET_MI_NOTE) if m == "det_mi" else None})
    return pd.DataFrame(rows, columns=["row", "dataset", "metric", "ours", key, "failed", "reason"])


def compare_table(ours: pd.DataFrame, paper: pd.DataFrame, table: str, mi_cap: Optional[float] = None,
                  collapse_rows: Optional[tuple] = None) -> pd.DataFrame:
    """The long comparison of ``table`` (:func:`vaebook.lab.compare.compare`), cell by cell:

    * an MI cell whose value is within :data:`MI_CEILING_TOL` of our estimator's ceiling ``mi_cap`` =
      ln(batch) is ``at ceiling`` (it only says MI ≥ that; not scored);
    * ``collapse_rows`` (log10 values; default :data:`COLLAPSE`): rows where the paper shows posterior
      collapse of the stochastic encoder. Those cells are judged by value only (collapse is the claim, a
      trend cannot excuse its absence): a KL/MI the paper prints as ≈ 0 must be matched within
      ±:data:`COLLAPSE_TOL` nats, σz² within ±0.05, anything else within 10 %;
    * elsewhere ``match`` is within 10 %, else ``trend holds`` when ours is within a factor
      :data:`TREND_BAND` of the paper's value **and** the row's direction holds against each neighbouring
      row we ran (:func:`_row_trend`; collapse rows are not neighbours of stochastic cells), else ``differs``.
    Deterministic (``det_``) columns have no collapse rows. MI cells note the paper's values above
    ln 10,000 (not reachable by Eq. (D.1) as printed).
    """
    collapse = {row_key(table, v) for v in (COLLAPSE[table] if collapse_rows is None else collapse_rows)}
    key = KEY[table]

    def judge(cell, df):
        m = cell["metric"]
        det = m.startswith("det_")
        q = m.replace("det_", "")
        pv, ov = float(cell["paper"]), float(cell["ours"])
        if q == "mi" and mi_cap is not None and ov >= mi_cap - MI_CEILING_TOL:
            return "at ceiling", (f"ours {fmt(ov)} is at our estimator's ceiling ln(batch) = {mi_cap:.2f} (within "
                                  f"{MI_CEILING_TOL:g} nats): it says only MI ≥ {fmt(ov)}; paper {fmt(pv)}")
        abs_tol, note, trend = 0.0, "", None
        if not det and cell["row"] in collapse:
            if q in ("kl", "mi") and abs(pv) <= COLLAPSE_TOL:
                abs_tol = COLLAPSE_TOL
                note = f"collapse row: the paper's value ≈ 0 must be matched (±{COLLAPSE_TOL:g} nats)"
            elif q == "sigma_z2":
                abs_tol, note = 0.05, "collapse row: σz² → 1"
            else:
                note = "collapse row: compared by value only"
        else:
            trend = _row_trend(cell, df, key, set() if det else collapse)
        if q == "mi":
            cap = f"our estimator is capped at ln(batch) = {mi_cap:.2f}" if mi_cap else ""
            if pv > (mi_cap or math.inf) or pv > math.log(10_000):
                note = "; ".join(x for x in (note, f"the paper's {pv:g} exceeds ln 10,000 = 9.21, the maximum of "
                                             "Eq. (D.1) as printed: not reproducible", cap) if x)
            elif cap:
                note = "; ".join(x for x in (note, cap) if x)
        return verdict(pv, ov, rel_tol=0.1, abs_tol=abs_tol, trend=trend, note=note)

    df = compare(ours, paper, judge)
    rank = {m: i for i, m in enumerate(COLUMNS.get(table, ()))}
    cols = [c for c in ("dataset", "row", key) if c in df] + [c for c in df.columns if c not in ("dataset", "row", key)]
    return (df[cols].assign(_m=df["metric"].map(lambda m: rank.get(m, len(rank))), _k=-df[key].astype(float))
            .sort_values(["_m", "_k"], kind="stable").drop(columns=["_m", "_k"]).reset_index(drop=True))


def wide_tables(records: list) -> dict:
    """Our numbers laid out like the paper's tables (``table1``: stochastic + ``det_*`` columns); a model that
    did not train leaves its cells empty and its reason in ``failed`` / ``det_failed``."""
    out = {}
    t1 = [r for r in records if r["table"] == "table1"]
    if t1:
        rows = {}
        for r in t1:
            row = rows.setdefault(r["log10"], {"log10_sigma_x2": r["log10"]})
            pre = "" if r["encoding"] == "stochastic" else "det_"
            for k in ("mse", "kl", "sigma_z2", "mi", "gap_1e-2", "gap_1e-3", "els", "els_frobenius", "mi_ln_n",
                      "final_loss", "failed"):
                if k in r and not (pre and k in ("kl", "sigma_z2")):
                    row[pre + k] = r[k]
            if "plateau" in r:  # results evaluated before loss curves were logged have no column
                row[pre + "plateau"] = plateau_cell(r["plateau"])
        out["table1"] = pd.DataFrame(sorted(rows.values(), key=lambda d: -d["log10_sigma_x2"]))
    e8 = [r for r in records if r["table"] == "tableE8"]
    if e8:
        cols = ("mse", "kl", "mi", "gap_1e-2", "gap_1e-3", "els", "els_frobenius", "sigma_x2_mle", "mi_ln_n",
                "final_loss") + (("failed",) if any(r.get("failed") for r in e8) else ())
        pl = {"plateau": plateau_cell} if any("plateau" in r for r in e8) else {}
        out["tableE8"] = pd.DataFrame([{"log10_sigma_z2": r["log10"], **{k: r.get(k) for k in cols},
                                        **{k: f(r.get(k)) for k, f in pl.items()}}
                                       for r in sorted(e8, key=lambda d: -d["log10"])])
    return out


# --- figures ------------------------------------------------------------------------------------
def figure_perturbed(panels: dict, s2: float):
    """Figure D.3: per model, rows of [original (red) | reconstruction (blue) | decodes of μφ(x) + ε]."""
    import matplotlib.pyplot as plt

    names = list(panels)
    rows = panels[names[0]].shape[0] // 28
    n_perturb = panels[names[0]].shape[1] // 28 - 2
    fig, axes = plt.subplots(len(names), 1, figsize=(1.0 * (n_perturb + 2), 1.05 * rows * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        ax.imshow(panels[name].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{name}: original | reconstruction | {n_perturb} decodes of μφ(x)+ε, s²={s2:g}", fontsize=8)
        for k, color in ((0, "red"), (1, "blue")):
            ax.add_patch(plt.Rectangle((k * 28 + 0.5, 0.5), 27, 28 * rows - 2, fill=False, edgecolor=color, lw=2))
    fig.tight_layout()
    return fig


def figure_tsne(panels: dict):
    """Figures D.4 / E.5: t-SNE of μφ(x) coloured by digit, with prior draws (pink)."""
    import matplotlib.pyplot as plt

    from vaebook.metrics.tsne import plot_tsne

    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.4), squeeze=False)
    for ax, (name, r) in zip(axes[0], panels.items()):
        plot_tsne({k: np.asarray(v) for k, v in r.items()}, ax=ax, title=name)
        ax.title.set_fontsize(8)
    axes[0, -1].legend(fontsize=6, markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


# --- the paper's claims, one by one ----------------------------------------------------------------
def _records(res, table: Optional[str] = None) -> list:
    """The run's per-model records; with ``table``, that table's only."""
    return [r for r in res.metrics.get("records", []) if table is None or r.get("table", table) == table]


def _model_steps(res, table: Optional[str] = None) -> Optional[int]:
    steps = [r["steps"] for r in _records(res, table) if r.get("steps")]
    return int(max(steps)) if steps else None


def run_line(res, table: Optional[str] = None) -> str:
    """Images, epochs, steps per model (with their share of the paper's), seeds, and how many models reached
    a plateau (:func:`vaebook.train.curve.plateau_line`) of a run; with ``table``, the plateaus of that table's
    models only."""
    if res is None:
        return "n/a"
    m = res.metrics
    t, n, steps = m.get("train_config") or {}, m.get("n_train"), _model_steps(res, table)
    epochs = (m.get("epochs_by_table") or {}).get(table, t.get("epochs"))
    seed = (res.provenance.get("parameters") or {}).get("seed", t.get("seed"))
    trained = [r.get("plateau") for r in _records(res, table) if not r.get("failed")]
    return ", ".join([
        f"{n:,} training images ({pct(n, PAPER_IMAGES)} of the paper's {PAPER_IMAGES:,})" if n else "images n/a",
        f"{epochs} of the paper's {PAPER_EPOCHS} epochs" if epochs else "epochs n/a",
        f"{steps:,} steps per model ({pct(steps, PAPER_STEPS)} of the paper's {PAPER_STEPS:,.0f})" if steps
        else "steps n/a",
        f"one seed ({seed}): every number is a single run, with no error bar (the paper states no seeds either)"]) + \
        f"; loss curves{f' of {TITLES.get(table, table)}' if table else ''}: {plateau_line(trained)}"


def _scale(res, table: Optional[str] = None) -> str:
    n, steps = res.metrics.get("n_train"), _model_steps(res, table)
    return (f"{steps:,} of {PAPER_STEPS:,.0f} steps ({pct(steps, PAPER_STEPS)}), " if steps else "steps n/a, ") + \
        (f"{n:,} of {PAPER_IMAGES:,} images ({pct(n, PAPER_IMAGES)}), " if n else "images n/a, ") + "1 seed"


def _status(n_ok: int, n: int) -> str:
    if n == 0:
        return "not shown at this scale"
    if n_ok == n:
        return "holds"
    return "partly" if n_ok >= PARTLY_MIN * n and n_ok > 0 else "not shown at this scale"


def _series(wide: Optional[pd.DataFrame], key: str, col: str) -> list:
    """``[(log10, value)]`` of a wide table's column, largest variance first, rows without a value left out."""
    if wide is None or col not in wide:
        return []
    w = wide[[key, col]].apply(pd.to_numeric, errors="coerce").dropna().sort_values(key, ascending=False)
    return list(zip(w[key].astype(float), w[col].astype(float)))


def _steps(series: list, sign: int, ceiling: Optional[float] = None) -> tuple[int, int, int]:
    """Consecutive steps of ``series`` (variance falling) whose change has ``sign`` (+1 rises, −1 falls):
    (agreeing, informative, saturated). A step with an end at the MI ``ceiling`` is saturated, not informative."""
    ok = n = sat = 0
    for (_, a), (_, b) in zip(series, series[1:]):
        if ceiling is not None and max(a, b) >= ceiling - MI_CEILING_TOL:
            sat += 1
            continue
        n += 1
        ok += int(np.sign(b - a) == sign)
    return ok, n, sat


def _ends(series: list, sym: str) -> str:
    return f"{fmt(series[0][1])} → {fmt(series[-1][1])} ({sym} {fmt(10 ** series[0][0], '.2g')} → " \
           f"{fmt(10 ** series[-1][0], '.2g')})" if series else "n/a"


LABELS = {"els": "ELS", "gap_1e-2": "Δ²(1e-2)", "gap_1e-3": "Δ²(1e-3)"}
CLAIMS = (
    ("collapse", "σx² = 1 collapses the posterior (KL and MI ≈ 0)", "4.2"),
    ("sz", "σz² falls with σx²", "4.2"),
    ("els", "smoothness (ELS, expected gaps) rises as σx² falls", "4.2"),
    ("mi", "the MI bound rises as σx² falls", "4.2"),
    ("det_rough", "the deterministic encoder is less smooth", "4.2"),
    ("det_els", "without σz², the ELS rises with σx² (deterministic encoding)", "4.2"),
    ("det_mi", "the deterministic encoder's MI does not collapse at σx² = 1", "4.2"),
    ("e8_els", "a larger σz² makes the decoder smoother", "E"),
    ("e8_mi", "the MI bound falls as σz² rises", "E"),
    ("e8_collapse", "a large σz² collapses the posterior without KL collapse", "E"),
)


def _direction_claim(series_by_col: dict, sign: int, sym: str, ceiling: Optional[float] = None) -> tuple:
    """(status, evidence) of 'every column moves with ``sign`` as the variance falls', pooled over columns."""
    ok = n = sat = 0
    parts = []
    for col, ser in series_by_col.items():
        if len(ser) < 2:
            continue
        o, k, s_ = _steps(ser, sign, ceiling)
        ok, n, sat = ok + o, n + k, sat + s_
        parts.append(f"{LABELS.get(col, col)} {_ends(ser, sym)}: {o} of {k} steps"
                     + (f", {s_} at the MI ceiling" if s_ else ""))
    if not parts:
        return "not run", "fewer than two rows run"
    status = _status(ok, n)
    if sat and status == "holds":
        status = "partly"  # the ceiling hides the rest of the sweep
    return status, "; ".join(parts)


def table_results(res, table: str):
    """The results a page section shows for ``table``: ``res`` when it holds the table, else the largest
    smaller-preset results beside it that do (a run of Table 1 alone leaves Table E.8 to them), never smoke
    numbers for a non-smoke run; None when there are none. Each section states its own run's scale."""
    if res is None or table in res.tables or f"ours_{table}" in res.tables:
        return res
    other = EXPERIMENT.find(res.path.parent.parent, table=table, below=res.preset)
    return None if other is None or (other.is_smoke and not res.is_smoke) else other


def claims(res) -> list:
    """The claims of Section 4.2 (Table 1) and Appendix E (Table E.8), each ``{claim, section, status,
    evidence, scale}`` computed from ``res``'s wide tables, Appendix E's from :func:`table_results` (None →
    ``not run``; smoke → ``not run``: smoke numbers are not results).

    Direction claims count consecutive steps of our sweep (the variance falling) that move the paper's way:
    all → ``holds``, at least :data:`PARTLY_MIN` → ``partly``, fewer → ``not shown at this scale``; MI steps
    with an end at the estimator's ceiling are not informative and cap the status at ``partly``. Collapse
    claims need KL and MI within :data:`COLLAPSE_TOL` nats of 0 (one of them: ``partly``). "Less smooth":
    deterministic ELS above stochastic at each σx² run.
    """
    out = {cid: {"claim": c, "section": sec, "status": "not run", "evidence": "no results", "scale": "n/a"}
           for cid, c, sec in CLAIMS}
    if res is None:
        return list(out.values())
    res8 = table_results(res, "tableE8")
    t1 = res.tables.get("ours_table1")
    e8 = res8.tables.get("ours_tableE8") if res8 is not None else None
    cap = res.metrics.get("mi_cap_ln_batch")
    cap8 = res8.metrics.get("mi_cap_ln_batch") if res8 is not None else None
    x, z = "log10_sigma_x2", "log10_sigma_z2"

    def put(cid, status, evidence):
        # a claim of Appendix E is judged on Table E.8's run, which may be another preset's
        src = res8 if cid.startswith("e8_") else res
        out[cid].update(status=status, evidence=evidence, smoke=src.is_smoke,
                        scale=_scale(src, "tableE8" if cid.startswith("e8_") else "table1"))

    def row_at(wide, key, value):
        if wide is None or key not in wide:
            return None
        r = wide[pd.to_numeric(wide[key], errors="coerce").round(6) == round(value, 6)]
        return r.iloc[0] if len(r) else None

    def val(row, col):
        v = row.get(col) if row is not None else None
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(v) else v

    p1, pe8 = paper_table("table1"), paper_table("tableE8")
    pr1, pr8 = row_at(p1, x, 0.0), row_at(pe8, z, 1.0)
    # σx² = 1: collapse
    r = row_at(t1, x, 0.0)
    kl, mi, sz = val(r, "kl"), val(r, "mi"), val(r, "sigma_z2")
    if kl is not None and mi is not None:
        small = [kl <= COLLAPSE_TOL, mi <= COLLAPSE_TOL]
        put("collapse", "holds" if all(small) else "partly" if any(small) else "not shown at this scale",
            f"at σx² = 1: KL {fmt(kl)} nats, MI {fmt(mi)} nats, σz² {fmt(sz)} (paper: {fmt(val(pr1, 'kl'))}, "
            f"{fmt(val(pr1, 'mi'))}, {fmt(val(pr1, 'sigma_z2'))}; collapse = within {COLLAPSE_TOL:g} nats of 0)")
    if t1 is not None:
        st, ev = _direction_claim({"σz²": _series(t1, x, "sigma_z2")}, -1, "σx²")
        put("sz", st, ev) if st != "not run" else None
        st, ev = _direction_claim({c: _series(t1, x, c) for c in ("els", "gap_1e-2", "gap_1e-3")}, +1, "σx²")
        put("els", st, ev) if st != "not run" else None
        st, ev = _direction_claim({"MI": _series(t1, x, "mi")}, +1, "σx²", cap)
        put("mi", st, ev) if st != "not run" else None
        st, ev = _direction_claim({"det ELS": _series(t1, x, "det_els")}, -1, "σx²")
        put("det_els", st, ev) if st != "not run" else None
        pairs = [(lx, dict(_series(t1, x, "els")).get(lx), v) for lx, v in _series(t1, x, "det_els")]
        pairs = [(lx, s_, d) for lx, s_, d in pairs if s_ is not None]
        if pairs:
            k = sum(d > s_ for _, s_, d in pairs)
            ratios = [d / s_ for _, s_, d in pairs if s_ > 0]
            pr = (p1["det_els"].astype(float) / p1["els"].astype(float)).agg(["min", "max"])
            put("det_rough", _status(k, len(pairs)),
                f"deterministic ELS above stochastic at {k} of {len(pairs)} σx² run" + (
                    f" (ratio {fmt(min(ratios))}–{fmt(max(ratios))}; paper {fmt(pr['min'])}–{fmt(pr['max'])})"
                    if ratios else ""))
        dmi = val(r, "det_mi")
        if dmi is not None:
            above = dmi > COLLAPSE_TOL
            contrast = mi is not None and dmi > mi
            put("det_mi", "holds" if above and contrast else "partly" if above else "not shown at this scale",
                f"at σx² = 1: deterministic MI {fmt(dmi)} nats vs stochastic {fmt(mi)} (paper "
                f"{fmt(val(pr1, 'det_mi'))} vs {fmt(val(pr1, 'mi'))}); "
                "the deterministic MI depends on the Eq. (D.1) kernel, which the paper does not give (ours: the "
                "stochastic model's σz²)")
    if t1 is not None and ("det_els" not in t1 or t1["det_els"].isna().all()):
        for cid in ("det_els", "det_rough", "det_mi"):  # a run that left the deterministic encoder out
            out[cid]["evidence"] = "not in this run (it trained the stochastic encoder only)"
    if e8 is not None:
        st, ev = _direction_claim({c: _series(e8, z, c) for c in ("els", "gap_1e-2", "gap_1e-3")}, +1, "σz²")
        put("e8_els", st, ev) if st != "not run" else None
        st, ev = _direction_claim({"MI": _series(e8, z, "mi")}, +1, "σz²", cap8)
        put("e8_mi", st, ev) if st != "not run" else None
        big = [(lz, row_at(e8, z, lz)) for lz, _ in _series(e8, z, "mi") if lz >= 0.9 - 1e-9]
        if big:
            ev, good, half = [], 0, 0
            for lz, row in big:
                m_, k_ = val(row, "mi"), val(row, "kl")
                ok_mi, ok_kl = m_ is not None and m_ <= COLLAPSE_TOL, k_ is not None and k_ >= 5.0
                good += ok_mi and ok_kl
                half += ok_mi  # a posterior collapse, with the KL collapsing too; KL > 0 alone shows nothing
                ev.append(f"σz² = {fmt(10 ** lz, '.2g')}: MI {fmt(m_)} nats, KL {fmt(k_)} nats")
            put("e8_collapse", "holds" if good == len(big) else "partly" if half else "not shown at this scale",
                "; ".join(ev) + f" (paper at σz² = 10: MI {fmt(val(pr8, 'mi'))}, KL {fmt(val(pr8, 'kl'))}; collapse "
                f"= MI within {COLLAPSE_TOL:g} nats of 0 with KL ≥ 5 nats)")
    for rec in out.values():
        if rec.pop("smoke", False):
            rec.update(status="not run", evidence="smoke test, not a result: " + rec["evidence"])
    return list(out.values())


# --- what the page's prose quotes (glued strings; "n/a" when a value is missing) -----------------
def _loss_wo_const(mse: float, kl: float, log10_sigma_x2: float) -> float:
    """Negative ELBO per image without its σx²-only constant (Eq. 3 with Σx = σx² I):
    ``MSE / (2 σx²) + KL``. Comparable between solutions at the same σx²."""
    return float(mse) / (2.0 * 10.0 ** float(log10_sigma_x2)) + float(kl)


def summary(res) -> dict:
    """Strings for the page's prose from loaded :class:`~vaebook.lab.results.Results` (or None)."""
    p1, pe8 = paper_table("table1", as_printed=True), paper_table("tableE8", as_printed=True)

    def paper_at(tab, key, value, col):
        row = tab[tab[key].astype(float) == value]
        return row[col].iloc[0] if len(row) else "n/a"

    out = {"sm_label": res.label if res is not None else "no results",
           "sm_p_sz_hi": paper_at(p1, "log10_sigma_x2", 0.0, "sigma_z2"),
           "sm_p_sz_lo": paper_at(p1, "log10_sigma_x2", -1.0, "sigma_z2"),
           "sm_p_kl_hi": paper_at(p1, "log10_sigma_x2", 0.0, "kl"),
           "sm_p_mi_hi": paper_at(p1, "log10_sigma_x2", 0.0, "mi"),
           "sm_p_els_hi": paper_at(p1, "log10_sigma_x2", 0.0, "els"),
           "sm_p_els_lo": paper_at(p1, "log10_sigma_x2", -1.0, "els"),
           "sm_p_det_els_lo": paper_at(p1, "log10_sigma_x2", -1.0, "det_els"),
           "sm_p_e8_mse_hi": paper_at(pe8, "log10_sigma_z2", 1.0, "mse"),
           "sm_p_e8_kl_hi": paper_at(pe8, "log10_sigma_z2", 1.0, "kl"),
           "sm_p_loss_collapse": fmt(_loss_wo_const(float(paper_at(p1, "log10_sigma_x2", 0.0, "mse")),
                                                     float(paper_at(p1, "log10_sigma_x2", 0.0, "kl")), 0.0)),
           "sm_p_mi_max": fmt(pd.to_numeric(p1["mi"]).max(), ".3g"),
           "sm_p_e8_mi_max": fmt(pd.to_numeric(pe8["mi"]).max(), ".3g")}
    keys = ("sm_sz_hi", "sm_sz_lo", "sm_kl_hi", "sm_mi_hi", "sm_els_hi", "sm_els_lo", "sm_det_els_lo", "sm_sz_rho",
            "sm_t1_verdicts", "sm_e8_verdicts", "sm_mi_cap", "sm_e8_mse_hi", "sm_e8_mse_lo", "sm_e8_kl_hi",
            "sm_e8_mi_hi", "sm_e8_mi_lo", "sm_x_hi", "sm_x_lo", "sm_z_hi", "sm_z_lo", "sm_n_train", "sm_steps",
            "sm_loss_hi")
    out.update({k: "n/a" for k in keys})
    res8 = table_results(res, "tableE8")
    out.update(sm_e8_run=("not run: no results hold Table E.8" if res8 is None else
                          "the run of Table 1, Table E.8's models: " + run_line(res, "tableE8") if res8 is res else
                          f"this preset's run did not include Table E.8, so this section shows another run: "
                          f"{res8.label}. {run_line(res8, 'tableE8')}"))
    out.update(sm_run=run_line(res, "table1"), sm_band=fmt(TREND_BAND, "g"), sm_mi_tol=fmt(MI_CEILING_TOL, "g"),
               sm_collapse_tol=fmt(COLLAPSE_TOL, "g"))
    for (cid, _, _), c in zip(CLAIMS, claims(res)):
        out[f"sm_c_{cid}"] = f"{c['status']} ({c['evidence']})"
    if res is None:
        return out
    t1 = res.tables.get("ours_table1")
    e8 = res8.tables.get("ours_tableE8") if res8 is not None else None
    if t1 is not None and len(t1):
        hi, lo = t1.loc[t1["log10_sigma_x2"].idxmax()], t1.loc[t1["log10_sigma_x2"].idxmin()]
        out.update(sm_x_hi=fmt(10 ** hi["log10_sigma_x2"], ".2g"), sm_x_lo=fmt(10 ** lo["log10_sigma_x2"], ".2g"))
        for k, col in (("sz", "sigma_z2"), ("kl", "kl"), ("mi", "mi"), ("els", "els"), ("det_els", "det_els")):
            if col in t1:
                out[f"sm_{k}_hi"], out[f"sm_{k}_lo"] = fmt(hi[col]), fmt(lo[col])
        if "det_els" not in t1 or pd.isna(lo["det_els"]):
            out["sm_det_els_lo"] = "not in this run (it trained the stochastic encoder only)"
        if {"mse", "kl"} <= set(t1.columns):
            out["sm_loss_hi"] = fmt(_loss_wo_const(hi["mse"], hi["kl"], hi["log10_sigma_x2"]))
        if "sigma_z2" in t1 and t1["sigma_z2"].notna().sum() >= 3:
            ok = t1["sigma_z2"].notna()
            out["sm_sz_rho"] = fmt(spearman(t1.loc[ok, "log10_sigma_x2"], t1.loc[ok, "sigma_z2"]), ".2f")
    if e8 is not None and len(e8):
        hi, lo = e8.loc[e8["log10_sigma_z2"].idxmax()], e8.loc[e8["log10_sigma_z2"].idxmin()]
        out.update(sm_z_hi=fmt(10 ** hi["log10_sigma_z2"], ".2g"), sm_z_lo=fmt(10 ** lo["log10_sigma_z2"], ".2g"),
                   sm_e8_mse_hi=fmt(hi.get("mse")), sm_e8_mse_lo=fmt(lo.get("mse")), sm_e8_kl_hi=fmt(hi.get("kl")),
                   sm_e8_mi_hi=fmt(hi.get("mi")), sm_e8_mi_lo=fmt(lo.get("mi")))
    if res.tables.get("table1") is not None:
        out["sm_t1_verdicts"] = verdict_line(res.tables.get("table1"))
    if e8 is not None:
        out["sm_e8_verdicts"] = verdict_line(res8.tables.get("tableE8"))
    out["sm_mi_cap"] = fmt(res.metrics.get("mi_cap_ln_batch"), ".3g")
    out["sm_n_train"] = fmt(res.metrics.get("n_train"), "d") if res.metrics.get("n_train") else "n/a"
    steps = [r.get("steps") for r in res.metrics.get("records", []) if r.get("steps")]
    out["sm_steps"] = fmt(max(steps), "d") if steps else "n/a"
    return out


EXPERIMENT = Smoothness()

__all__ = ["EXPERIMENT", "Smoothness", "SIGMA_X2_GRID", "SIGMA_Z2_GRID", "compare_table", "paper_long", "ours_long",
           "wide_tables", "figure_perturbed", "figure_tsne", "summary", "claims", "run_line", "row_key",
           "table_results", "TREND_BAND", "MI_CEILING_TOL", "COLLAPSE_TOL"]


def figure_sweep(table: pd.DataFrame, key: str):
    """Paper vs ours over the sweep, one panel per quantity (log scale where every value is positive); the
    shaded band is the factor-``TREND_BAND`` magnitude a "trend holds" cell must stay within."""
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(table["metric"]))
    cols = 4
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.5 * rows), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        t = table[table["metric"] == m].sort_values(key)
        p = t.dropna(subset=["paper"])
        o = t.dropna(subset=["ours"])
        ax.plot(p[key], p["paper"], "o-", color="0.35", ms=3, lw=1, label="paper")
        ax.fill_between(p[key], p["paper"] / TREND_BAND, p["paper"] * TREND_BAND, color="0.85", lw=0)
        ax.plot(o[key], o["ours"], "s-", color="tab:blue", ms=4, lw=1.2, label="ours")
        vals = pd.concat([p["paper"], o["ours"]])
        if len(vals) and (vals > 0).all():
            ax.set_yscale("log")
        ax.set_title(m, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(key.replace("log10_", "log₁₀ ").replace("sigma_x2", "σx²").replace("sigma_z2", "σz²"), fontsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
