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
plateau (:func:`vaebook.train.plateau`: ``plateau`` / ``det_plateau`` columns; the run line counts them) and the
curve's points (``curve`` in its record, for the page's panels: :func:`vaebook.lab.curves.curve_points`), its
last epoch's mean training loss (``final_loss``) and its training time (``train_s``, from the zoo); per run tr C
of the training images (``tr_c_train``: the collapsed solution's MSE, which the collapse claims need).

The rules (cell verdicts, claims, the collapsed solution's loss) are in :mod:`._smoothness_claims`, the page's
prose and figures in :mod:`._smoothness_page`.

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

import pandas as pd
import torch

from vaebook.experiments import _smoothness_claims as rules
from vaebook.experiments import _smoothness_page as page
from vaebook.lab import Experiment, Job, ParameterError, ParamSpec, Unit
from vaebook.lab.curves import curve_points
from vaebook.lab.paper import long_rows
from vaebook.metrics.tsne import tsne_frame
from vaebook.paper import D_Z_SECTION4
from vaebook.train.curve import plateau, plateau_cell

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
    datasets = ("mnist",)
    title = "Smoothness, σx² and σz² (Table 1, Table E.8)"
    fixed_datasets = ("MNIST with Section 4's nets ('mnist-d1') only: Tables 1 and E.8 and their claims are the "
                      "paper's MNIST numbers")
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
        rec["curve"] = curve_points(tm.history)  # [[step, loss], …] for the page's training-curve panels
        rec["train_s"] = tm.meta.get("train_wall_s")
        out = {"record": rec, "panel": info["decodes"] or info["tsne"]}
        if info["decodes"]:
            out["decodes"] = page.perturbed_decodes(model, x_eval, p["figure_s2"], seed)
        if info["tsne"]:
            n = min(p["n_tsne"], len(x_eval))
            out["tsne"] = page.tsne_panel(model, x_eval, d.train_labels[: len(x_eval)], n, seed, 250 if ctx.smoke else None)
        return out

    # -- all models -----------------------------------------------------------------------------
    def report(self, ctx, results: dict, run) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from vaebook.theory.collapse import data_covariance

        p = ctx.p
        records = [res["record"] for res in results.values()]
        train_images = ctx.data(DATASET, p["n_train"], None).train
        n = len(train_images)
        n_eval = min(p["n_eval"] or n, n)
        mi_cap = math.log(min(p["mi_batch"], n_eval))
        wide = wide_tables(records)
        for table in TABLES:
            if table in wide:
                run.write_table(table, rules.compare_table(ours_long(records, table), paper_long(table), table,
                                                           mi_cap))
                run.write_table(f"ours_{table}", wide[table])
        train = {**(dict(next(iter(ctx.models)).train) if ctx.models else {}), "seed": p["seed"],
                 "sigma_z2_lr_factor": p["sigma_z2_lr_factor"]}
        run.write_metrics({
            "records": records, "train_config": train, "n_train": n, "n_eval": n_eval,
            "epochs_by_table": {t: _epochs(p, t) for t in p["tables"]},
            "n_smooth": min(p["n_smooth"] or n, n), "mi_cap_ln_batch": mi_cap, "gap_s2": list(GAP_S2),
            "tr_c_train": float(torch.trace(data_covariance(train_images))),
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
            run.save_figure(page.figure_perturbed(panels("decodes", "table1"), p["figure_s2"]),
                            "figD3_perturbed_decodes")
        for table, stem in (("table1", "figD4_tsne"), ("tableE8", "figE5_tsne")):
            if panels("tsne", table):  # the points too, so the page can re-draw the map without re-running t-SNE
                run.write_table(f"{stem}_points", tsne_frame(panels("tsne", table)))
                run.save_figure(page.figure_tsne(panels("tsne", table)), stem)

    # -- what the page's prose quotes -----------------------------------------------------------
    def summary(self, res) -> dict:
        """Strings for the page's prose from loaded results (or None): every value "n/a" when missing."""
        return page.summary(res)

    def claims(self, res) -> list:
        """One dict per claim of Section 4.2 and Appendix E (:func:`._smoothness_claims.claims`)."""
        return rules.claims(res)


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


EXPERIMENT = Smoothness()

__all__ = ["EXPERIMENT", "Smoothness", "SIGMA_X2_GRID", "SIGMA_Z2_GRID", "paper_long", "ours_long", "wide_tables",
           "row_key"]
