"""The base class of the Section-6 experiments (Tables 4–7)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from vaebook.experiments import _datasets6 as ds
from vaebook.experiments._section6.cost import gpu_notice
from vaebook.experiments._section6.jobs import failed_rows, load, units, untrained_reason
from vaebook.experiments._section6.prose import training_line
from vaebook.experiments._section6.rows import check_models, row_info
from vaebook.lab.compare import verdict_line
from vaebook.lab.experiment import Experiment, Unit
from vaebook.lab.zoo import Job, TrainedModel


@dataclass
class EvalSetup:
    """What every Section-6 evaluation opens with (:meth:`Section6Experiment.eval_setup`): the run's parameters,
    the unit's dataset and model row, its job and trained model, the run's images of the dataset, the row's base
    cells (``row``, ``dataset``, ``model``, ``group``), the unit's result so far (``out``) and why the model is not
    scored (``reason``; "" when it is)."""

    p: dict
    dataset: str
    model: str
    job: Job
    tm: TrainedModel
    data: Any
    base: dict
    out: dict
    reason: str

    def failed(self, metrics: Sequence[str]) -> dict:
        """The unit's result when its model did not train: every cell of ``metrics`` failed with the reason."""
        return {**self.out, "rows": failed_rows(self.base, list(metrics), self.reason), "reason": self.reason}


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

    def eval_setup(self, unit: Unit, ctx) -> EvalSetup:
        """The shared opening of a Section-6 ``evaluate``: the unit's trained model (from the zoo) and the run's
        images of its dataset, the row's base cells, and whether the model trained
        (:func:`~vaebook.experiments._section6.jobs.untrained_reason`, which may add ``recon_var`` to ``out``)."""
        d, m, job = unit.meta["dataset"], unit.meta["model"], unit.jobs[0]
        tm, data = ctx.model(job), load(ctx, d)
        out = {"dataset": d, "model": m, "from_cache": tm.from_cache}
        reason = untrained_reason(ctx, tm, data, out)
        return EvalSetup(ctx.p, d, m, job, tm, data, {"row": m, "dataset": d, **row_info(m)}, out, reason)

    def plan(self, ctx) -> list:
        """One unit per (dataset, model row); a missing dataset stops here, before anything is written."""
        return units(ctx, self.paper_frame())



__all__ = ["EvalSetup", "Section6Experiment"]
