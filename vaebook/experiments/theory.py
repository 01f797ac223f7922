"""The proofs and approximations of the paper, checked numerically (Sections 3–5, Appendices A–H), and
the Theorem-2 sweep of the linear VAE.

The checks of :mod:`vaebook.theory` are closed-form / float64 computations that take seconds and train
nothing, so every preset runs all of them (``preset_independent``; ``preset`` only labels the results).
One unit per module of :mod:`vaebook.theory` (a claim group: the linearised ELBO of Eq. (4) / App. B,
Theorem 1 and App. F, Theorem 2 and Lemma 2, Lemma 3, App. C, App. G, App. H, Sec. 5.2) and one unit for
the Theorem-2 sweep.

Each claim has a ``kind`` — how the paper fares — from the ``status`` its check in :mod:`vaebook.theory`
records (:data:`vaebook.theory._record.STATUSES`): ``confirmed`` (holds as printed), ``corrected`` (holds
only once a typo or missing factor is fixed; the printed form fails), ``extension`` (our own rate,
constant or closed form, not a statement of the paper), ``counterexample`` (the printed statement fails,
and the check confirms the counterexample); a check whose comparison fails is ``check fails``. The page
and its summary count kinds (:func:`kind_counts`), never verdicts alone.

Verdicts, for the comparison table (:data:`KIND_VERDICT`): ``confirmed`` → ``match``; ``extension`` → ``ours
only`` (the paper states nothing to compare with); ``corrected`` and ``counterexample`` → ``differs`` (what
the paper prints fails; the reason says what holds instead); ``check fails`` → ``differs``. ``paper`` is a
claim's right side, ``ours`` its left side (as printed strings: some are vectors; for a corrected claim the
right side is the corrected form), so the table does not go through :func:`vaebook.lab.compare.compare`
(which compares numbers).
"""
from __future__ import annotations

from typing import Optional

import pandas as pd

from vaebook.lab import Experiment, ParamSpec, Unit

SWEEP = "theorem2_sweep"
#: the key columns of a comparison row: the claim's name, no dataset (closed forms and small synthetic
#: models), one metric (the claim's comparison)
DATASET, METRIC = "analytic", "claim"


def claim_groups() -> dict:
    """``{group: (claim names)}``: the claims of each module of :mod:`vaebook.theory`, in book order."""
    from vaebook.theory import MODULES

    return {m.__name__.rsplit(".", 1)[-1]: tuple(m.CLAIMS) for m in MODULES}


KINDS = ("confirmed", "corrected", "extension", "counterexample", "check fails")
#: the comparison verdict of each kind (see the module docstring)
KIND_VERDICT = {"confirmed": "match", "extension": "ours only", "corrected": "differs", "counterexample": "differs",
                "check fails": "differs"}
#: the claim-level status of each kind: holds as printed / holds with a correction or in a weaker form /
#: not shown (our check fails)
KIND_STATUS = {"confirmed": "holds", "extension": "holds", "corrected": "partly", "counterexample": "partly",
               "check fails": "not shown at this scale"}
#: columns of the committed claims table that :func:`verdict_table` derives (dropped before a recount)
DERIVED = ("dataset", "metric", "kind", "paper", "ours", "verdict", "reason")


def kind_of(status: str, holds: bool) -> str:
    """The kind of a claim record: its ``status`` when its check holds, else ``check fails``."""
    return str(status or "confirmed") if bool(holds) else "check fails"


def verdict_table(claims: pd.DataFrame) -> pd.DataFrame:
    """Add ``kind``, ``paper`` (right side), ``ours`` (left side), ``verdict`` and ``reason`` to
    ``claims_table`` rows; the claim's ``name`` becomes the row key ``row`` (with ``dataset``, ``metric``).
    Also recounts a committed claims table (its derived columns are recomputed)."""
    rows = []
    for r in claims.to_dict("records"):
        r = {k: v for k, v in r.items() if k not in DERIVED}
        status, holds = r.get("status", "confirmed"), bool(r["holds"])
        kind = kind_of(status, holds)
        if kind == "check fails":
            why = f"the check fails: {r['lhs']} {r['relation']} {r['rhs']} is false ({r['tolerance']})"
        elif kind == "counterexample":
            why = "the paper's statement fails here (confirmed counterexample)"
        elif kind == "corrected":
            why = "the printed form fails; it holds once corrected"
        elif kind == "extension":
            why = "our extension (a rate, constant or closed form the paper does not state); it holds"
        else:
            why = "holds as printed"
        if r.get("notes") and isinstance(r["notes"], str):
            why += f"; {r['notes']}"
        name = r.pop("name", None) or r.pop("row")
        r.pop("row", None)
        rows.append({"row": name, "dataset": DATASET, "metric": METRIC, **r, "kind": kind, "paper": r["rhs"],
                     "ours": r["lhs"], "verdict": KIND_VERDICT[kind], "reason": why})
    return pd.DataFrame(rows)


def kind_counts(t: Optional[pd.DataFrame]) -> dict:
    """Claims per kind (every kind, zeros included) of a claims table."""
    k = t["kind"] if t is not None and "kind" in t else pd.Series(dtype=object)
    return {kind: int((k == kind).sum()) for kind in KINDS}


def kind_line(t: Optional[pd.DataFrame]) -> str:
    """``19 confirmed · 6 corrected · 8 extensions · 2 counterexamples`` (kinds with claims)."""
    plural = {"extension": "extensions", "counterexample": "counterexamples", "check fails": "checks fail"}
    return " · ".join(f"{n} {plural.get(k, k) if n != 1 else k}" for k, n in kind_counts(t).items() if n) or "n/a"


def claims(res) -> list:
    """One dict per checked claim: ``claim``, ``section`` (the paper's equations), ``status`` (from its kind:
    :data:`KIND_STATUS`), ``evidence`` (left side, relation, right side, tolerance, notes), ``scale``, plus
    ``name`` and ``kind``. None (or no claims table) → one ``not run`` entry per claim of
    :mod:`vaebook.theory`."""
    t = res.tables.get("table_claims") if res is not None else None
    if t is None:
        from vaebook.theory import ALL_CLAIMS

        return [{"name": n, "claim": n.replace("_", " "), "section": "", "status": "not run", "kind": "",
                 "evidence": "no results", "scale": "n/a"} for n in ALL_CLAIMS]
    if "kind" not in t:
        t = verdict_table(t)
    out = []
    for r in t.to_dict("records"):
        ev = f"{r['lhs']} {r['relation']} {r['rhs']} ({r['tolerance']})"
        if isinstance(r.get("notes"), str) and r["notes"]:
            ev += f"; {r['notes']}"
        out.append({"name": r["row"], "claim": r["claim"], "section": r["ref"], "status": KIND_STATUS[r["kind"]],
                    "kind": r["kind"], "evidence": ev,
                    "scale": "exact / float64 computation, no training: the same at every scale"})
    return out


class Theory(Experiment):
    """Every numerical check of :mod:`vaebook.theory` and the Theorem-2 sweep (no training)."""

    name = "theory"
    title = "Theory: every proof and approximation, checked numerically"
    presets = {"smoke": {}, "medium": {}, "full": {}}
    preset_independent = True
    full_cost = ("seconds on one CPU thread, the same at every preset: `python -m vaebook.lab.run_all --mode compute "
                 "--only theory`")

    @property
    def params(self) -> dict:  # a property: the claim names come from vaebook.theory (imported on use)
        from vaebook.theory import ALL_CLAIMS

        return {"claims": ParamSpec("list", choices=tuple(ALL_CLAIMS), allow_none=True, default=None,
                                    doc="names of vaebook.theory.ALL_CLAIMS to run; None = all")}

    def plan(self, ctx) -> list:
        wanted = ctx.p["claims"]
        units = []
        for group, names in claim_groups().items():
            chosen = tuple(n for n in names if wanted is None or n in wanted)
            if chosen:
                units.append(Unit.make(group, claims=chosen))
        return units + [Unit.make(SWEEP)]

    def evaluate(self, unit, ctx) -> dict:
        import torch

        from vaebook.theory import linear_vae, run_all

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny float64 problems: more threads only add overhead
        try:
            if unit.id == SWEEP:
                return {"sweep": linear_vae.theorem2_table()}
            results = run_all(unit.meta["claims"])
        finally:
            torch.set_num_threads(threads)
        return {"claims": [{**r.row(), "seconds": float(r.details.get("seconds", float("nan")))} for r in results]}

    def report(self, ctx, results: dict, run) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from vaebook.theory import ALL_CLAIMS, linear_vae

        rows = {r["name"]: r for res in results.values() for r in res.get("claims", [])}
        order = ctx.p["claims"] or list(ALL_CLAIMS)
        claims = [rows[n] for n in dict.fromkeys(order) if n in rows]
        table = verdict_table(pd.DataFrame([{k: v for k, v in r.items() if k != "seconds"} for r in claims]))
        run.write_table("table_claims", table)
        sweep = results[SWEEP]["sweep"]
        run.write_table("theorem2_sweep", pd.DataFrame(sweep))
        run.save_figure(linear_vae.plot_theorem2(sweep), "theorem2")
        run.write_metrics({"claims": {r["name"]: {"holds": bool(r["holds"]), "status": r["status"],
                                                  "seconds": r["seconds"]} for r in claims},
                           "kinds": kind_counts(table)})

    def summary(self, res) -> dict:
        """Glue strings for the page's prose (claims counted by kind)."""
        from vaebook.lab.compare import verdict_line
        from vaebook.lab.display import fmt

        out = {"th_label": res.label if res is not None else "no results", "th_n": "n/a", "th_holds": "n/a",
               "th_confirmed": "n/a", "th_corrected": "n/a", "th_counter": "n/a", "th_extension": "n/a",
               "th_failed": "n/a", "th_kinds": "n/a", "th_verdicts": "n/a", "th_sz_small": "n/a",
               "th_sx_small": "n/a",
               "th_run": ("closed forms and float64 computations on small models (no training, no data set); the "
                          "same at every preset" + (f": {res.label}" if res is not None else ""))}
        if res is None or "table_claims" not in res.tables:
            return out
        t = res.tables["table_claims"]
        if "kind" not in t:
            t = verdict_table(t)
        c = kind_counts(t)
        out["th_n"] = str(len(t))
        out["th_holds"] = str(int(t["holds"].astype(bool).sum()))
        out.update(th_confirmed=str(c["confirmed"]), th_corrected=str(c["corrected"]),
                   th_counter=str(c["counterexample"]), th_extension=str(c["extension"]),
                   th_failed=str(c["check fails"]), th_kinds=kind_line(t), th_verdicts=verdict_line(t))
        sw = res.tables.get("theorem2_sweep")
        if sw is not None and len(sw):
            r = sw.loc[sw["sigma_x2"].idxmin()]
            out["th_sx_small"], out["th_sz_small"] = fmt(r["sigma_x2"], ".2g"), fmt(r["sigma_z2"], ".2g")
        return out

    def claims(self, res) -> list:
        """One dict per checked claim (see :func:`claims`); the status page lists these apart."""
        return claims(res)


EXPERIMENT = Theory()

__all__ = ["EXPERIMENT", "Theory", "claim_groups", "verdict_table", "kind_of", "kind_counts", "kind_line", "claims",
           "KINDS", "KIND_VERDICT", "KIND_STATUS"]
