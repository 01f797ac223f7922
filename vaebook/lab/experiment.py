"""The experiment protocol and the one run loop.

An experiment (one file per paper table in :mod:`vaebook.experiments`) is a subclass of
:class:`Experiment` holding only its science:

* ``name`` (its results folder and notebook), ``presets`` (scale → settings, smallest first; a
  parameter of the same name overrides a setting when not None), ``params`` (its own knobs);
* :meth:`~Experiment.plan`: the units of work, each with the models (:class:`~vaebook.lab.zoo.Job`) it needs;
* :meth:`~Experiment.evaluate`: one unit → a dict of its long rows and anything else (numbers, strings,
  tensors such as images for figures; saved with ``torch.save``, loaded with ``weights_only=True``);
* :meth:`~Experiment.report`: all unit results → comparison tables, figures, metrics in the :class:`Run`;
* :meth:`~Experiment.summary`: the strings a page glues into its prose.

:func:`run` is the loop every experiment shares: validate (before anything is written) → plan → train
the models the plan needs through the :class:`~vaebook.lab.zoo.Zoo` → evaluate each unit (each result
written atomically when it finishes; a re-run skips finished units) → report → publish the run folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

import torch

from vaebook.checks import InputError
from vaebook.io import CorruptCacheError, atomic_torch_save, discard, load_torch_file
from vaebook.lab.params import ParameterError, check_device, common_params, validate_params
from vaebook.lab.results import Run, find_results, jsonable
from vaebook.lab.codekey import files_hash, module_files
from vaebook.lab.zoo import Job, TrainedModel, Zoo, job_code_version


@dataclass(frozen=True)
class Unit:
    """One piece of work: ``id`` (unique, file-name safe), the ``jobs`` it needs, free ``info``."""

    id: str
    jobs: tuple = ()
    info: tuple = ()  # sorted (key, value) pairs

    @staticmethod
    def make(id: str, jobs=(), **info) -> "Unit":
        return Unit(str(id), tuple(jobs), tuple(sorted(info.items())))

    @property
    def meta(self) -> dict:
        return dict(self.info)


class Experiment:
    """Base class of an experiment; see the module docstring."""

    name: str = ""
    title: str = ""
    presets: dict = {}
    smoke_presets: tuple = ("smoke",)
    params: dict = {}
    preset_independent: bool = False
    #: how long the largest preset takes and on what (for the "no results yet" notice)
    full_cost: str = ""
    #: the datasets the experiment trains on when it has no ``datasets`` parameter (the scale lines, the claims)
    datasets: tuple = ()
    #: for an experiment tied to its dataset(s) (no ``datasets`` parameter): which, and why the science needs them
    fixed_datasets: str = ""

    # -- parameters -------------------------------------------------------------------------------
    def spec(self) -> dict:
        return {**common_params(self.presets), **self.params}

    def resolve(self, params: dict) -> dict:
        """Validated parameters with every ``None`` knob filled from the preset (nothing written)."""
        if self.fixed_datasets and "datasets" in params and "datasets" not in self.spec():
            raise ParameterError(f"{self.name}: parameter 'datasets' = {params['datasets']!r} is not taken: this "
                                 f"experiment runs on {self.fixed_datasets}. Fix: drop the parameter; the Section-6 "
                                 "tables (generation, interpolation, nll) take any registered dataset.")
        p = validate_params(params, self.spec())
        for k, v in self.presets[p["preset"]].items():
            if p.get(k) is None:
                p[k] = v
        self.check(p)
        return p

    def check(self, p: dict) -> None:
        """Cross-parameter checks of the experiment (raise :class:`ParameterError`)."""

    # -- the science ---------------------------------------------------------------------------
    def plan(self, ctx: "Context") -> list:
        raise NotImplementedError

    def evaluate(self, unit: Unit, ctx: "Context") -> dict:
        raise NotImplementedError

    def report(self, ctx: "Context", results: dict, run: Run) -> None:
        raise NotImplementedError

    def summary(self, res) -> dict:
        return {}

    def claims(self, res) -> list:
        """The paper's claims this experiment tests, for the status page: dicts with ``claim``, ``section``,
        ``status`` (``holds`` / ``partly`` / ``not shown at this scale`` / ``not run``), ``evidence`` (one line)
        and ``scale`` (ours as a fraction of the paper's). ``res`` None: every claim ``not run``."""
        return []

    def scale(self, res) -> str:
        """Our run as a fraction of the paper's, for a page whose claims are judged elsewhere (the claims' ``scale``
        serves the others); empty by default."""
        return ""

    # -- reading -----------------------------------------------------------------------------
    def find(self, results_dir="results", table: Optional[str] = None, below: Optional[str] = None):
        """The largest-scale complete results of this experiment (None when there are none); with ``table``,
        the largest that hold that table; with ``below``, only presets smaller than that one."""
        order = list(self.presets)
        if below is not None:
            order = order[:order.index(below)] if below in order else []
        return find_results(results_dir, self.name, tuple(reversed(order)), self.smoke_presets, table)

    def eval_key(self, unit: "Unit", p: dict) -> dict:
        """The parameters a unit's evaluation depends on (its cache key); default: all but mode, device and paths.
        Override to name fewer, so that e.g. adding a value to a sweep does not re-evaluate the other units."""
        return {k: v for k, v in p.items() if k not in ("mode", "device", "results_dir", "data_root")}

    def source_hash(self) -> str:
        """Hash of the evaluation code a unit may run: the experiment's module and, transitively, the module that
        defines each name it imports from vaebook (:func:`vaebook.lab.codekey.module_files`; not whole packages),
        so adding a file, or editing one no evaluation imports, re-evaluates nothing."""
        return files_hash(module_files([sys.modules[type(self).__module__]]))


@dataclass
class Context:
    """What a unit's evaluation may use: parameters, device, data, trained models, a log."""

    experiment: Experiment
    p: dict
    log: Callable = print
    zoo: Optional[Zoo] = None
    models: dict = field(default_factory=dict)  # Job -> TrainedModel

    @property
    def device(self):
        from vaebook.train import resolve_device

        return resolve_device(self.p["device"])

    @property
    def smoke(self) -> bool:
        return self.p["preset"] in self.experiment.smoke_presets

    def data(self, dataset: str, n_train=None, n_test=None, **variant):
        """A registered dataset's images at this run's sizes (stand-in images only at smoke)."""
        from vaebook.lab.data import load_data

        return load_data(dataset, n_train, n_test, self.p.get("data_root"), int(self.p["seed"]),
                         allow_stand_in=self.smoke, **variant)

    def job_data(self, job: Job):
        """The training images of ``job`` (its dataset, variant and ``n_train`` from the plan)."""
        v = dict(job.variant)
        n = v.pop("n_train", None)
        return self.data(job.dataset, n, None, **v).train

    def model(self, job: Job) -> TrainedModel:
        return self.models[job]


def data_code(unit: Unit) -> str:
    """Hash of the loader code of the datasets a unit reads (its jobs' and its ``dataset``): the module that
    defines each one's ``load`` and what it imports (:func:`vaebook.lab.codekey.module_files`)."""
    from vaebook.data import DATASETS

    names = {j.dataset for j in unit.jobs} | ({unit.meta["dataset"]} if unit.meta.get("dataset") else set())
    mods = [sys.modules[DATASETS[d].load.__module__] for d in sorted(names) if d in DATASETS]
    return files_hash(module_files(mods)) if mods else ""


def _unit_key(exp: Experiment, unit: Unit, p: dict, ctx: Context) -> str:
    """An evaluation's cache key: the unit, its parameters (:meth:`Experiment.eval_key`), its jobs and the code
    of their models, the experiment's code and the code of the datasets it reads."""
    payload = {"unit": unit.id, "info": jsonable(unit.meta), "p": jsonable(exp.eval_key(unit, p)),
               "jobs": [repr(j) for j in unit.jobs], "code": [job_code_version(j) for j in unit.jobs],
               "exp": exp.source_hash(), "data": data_code(unit)}
    return hashlib.blake2b(json.dumps(payload, sort_keys=True, default=str).encode(), digest_size=10).hexdigest()


def validate_plan(units: list, ctx: Context) -> None:
    """Refuse a plan that cannot run, before anything is written."""
    if not units:
        raise ParameterError(f"{ctx.experiment.name}: these parameters select nothing to run; check the list "
                             "parameters (models, datasets, tables …).")
    ids = [u.id for u in units]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{ctx.experiment.name}.plan returned duplicate unit ids")
    for job in dict.fromkeys(j for u in units for j in u.jobs):
        n = len(ctx.job_data(job))
        bs = job.train_dict.get("batch_size", 64)
        if n < bs:
            raise ParameterError(f"{job.label}: {n} training images but batch_size {bs}; choose n_train >= {bs}.")
        try:
            job.check(ctx.job_data(job))
        except InputError as e:
            raise ParameterError(str(e)) from None


def run(exp: Experiment, params: dict, log: Callable = print) -> Run:
    """Run ``exp`` with ``params`` (see the module docstring); returns the finished :class:`Run`."""
    from vaebook.data import DataError

    p = exp.resolve(params)
    check_device(p["device"])
    if os.environ.get("VAEBOOK_THREADS"):
        torch.set_num_threads(int(os.environ["VAEBOOK_THREADS"]))
    ctx = Context(exp, p, log)
    try:
        units = exp.plan(ctx)
        validate_plan(units, ctx)
    except DataError:
        raise
    for k in ("results_dir", "data_root"):
        if p.get(k) is not None:
            p[k] = os.path.expanduser(p[k])
    root = Path(os.path.expanduser(p["results_dir"])) / p["preset"]
    ctx.zoo = Zoo(root / "models", ctx.job_data, p["device"], log)
    with Run(exp.name, p) as r:
        ctx.models = ctx.zoo.train([j for u in units for j in u.jobs]) if any(u.jobs for u in units) else {}
        r.extra_provenance["training"] = training_summary(ctx.models)
        cache = root / "evals" / exp.name
        results = {}
        for i, u in enumerate(units):
            key = _unit_key(exp, u, p, ctx)
            f = cache / f"{u.id}.pt"
            hit = None
            if f.is_file():
                try:
                    saved = load_torch_file(f, fix=f"re-run: unit {u.id} is evaluated again")
                    hit = saved["result"] if isinstance(saved, dict) and saved.get("key") == key else None
                except (CorruptCacheError, KeyError) as e:  # damaged or planted: discarded, evaluated again
                    log(f"[{exp.name}] {u.id}: {e} (discarded; evaluating again)")
                    discard(f)
                    hit = None
            if hit is None:
                log(f"[{exp.name}] {i + 1}/{len(units)} {u.id}")
                hit = exp.evaluate(u, ctx)
                atomic_torch_save({"key": key, "result": hit}, f)
            results[u.id] = hit
        exp.report(ctx, results, r)
        r.extra_provenance["preset_independent"] = exp.preset_independent
    return r


def training_summary(models: dict) -> dict:
    """The cumulative training cost of a run's models, reused ones included (each model's own training wall
    time, as the zoo recorded it when it was trained): ``{"models", "reused", "train_wall_s", "not_recorded",
    "per_model"}``. A model whose time was not recorded is named in ``not_recorded`` and left out of the sum."""
    per, missing = {}, []
    for job, tm in models.items():
        t = (tm.meta or {}).get("train_wall_s")
        if isinstance(t, (int, float)):
            per[job.label] = round(float(t), 1)
        else:
            missing.append(job.label)
    return {"models": len(models), "reused": sum(bool(tm.from_cache) for tm in models.values()),
            "train_wall_s": round(sum(per.values()), 1), "not_recorded": missing, "per_model": per}


def rows_frame(results: dict, key: str = "rows") -> pd.DataFrame:
    """All units' long rows (``results[unit][key]``) as one frame."""
    rows = [row for res in results.values() for row in (res.get(key) or [])]
    return pd.DataFrame(rows)


__all__ = ["Experiment", "Unit", "Context", "run", "rows_frame", "validate_plan", "training_summary"]
