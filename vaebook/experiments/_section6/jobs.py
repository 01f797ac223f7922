"""The one :class:`~vaebook.lab.Job` per (model, dataset) of Tables 4–7, the run's images, the units of a table
and the rows that did not train. ``generation``, ``celebahq``, ``interpolation`` and ``nll`` all build their jobs
with :func:`job` from the same presets, so a model trained for one page is the same zoo entry for the others (same
dataset-spec optimiser setting, same preset overrides, same training images, same seed)."""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from vaebook.data import DataError, dataset_spec
from vaebook.experiments import _datasets6 as ds
from vaebook.experiments._datasets6 import per_dataset
from vaebook.experiments._section6.presets import PRESETS
from vaebook.experiments._section6.rows import models_for, unit_id
from vaebook.lab.params import ParameterError
from vaebook.lab.zoo import Job
from vaebook.lab.experiment import Unit
from vaebook.metrics.recon import constant_output_reason, reconstruction_variance


def job(model: str, dataset: str, p: dict):
    """The one Job of ``model`` on ``dataset`` at the resolved parameters ``p`` (shared by Tables 4–7).

    The dataset's baseline hyperparameters (``model_defaults``), updated by the preset's ``model_kwargs``, are
    passed as model kwargs so they are part of the zoo's cache key.
    """

    spec, preset = dataset_spec(dataset), PRESETS[p["preset"]]
    train = {**spec.train, **ds.preset_entry(preset, "train", dataset, {})}
    if p.get("epochs") is not None:
        train["epochs"] = int(p["epochs"])
    n = per_dataset(p, "n_train", dataset)
    kwargs = {**spec.model_defaults.get(model, {}),
              **ds.preset_entry(preset, "model_kwargs", dataset, {}).get(model, {})}
    return Job.make(model, dataset, train, seed=int(p["seed"]), model_kwargs=kwargs,
                    variant=None if n is None else {"n_train": int(n)}, tag=f"{model} on {dataset}")


def load(ctx, dataset: str):
    """The run's images of ``dataset`` (stand-in images only at smoke); a missing dataset raises the data
    layer's error, with how to leave the dataset out when others are selected."""
    try:
        data = ctx.data(dataset, per_dataset(ctx.p, "n_train", dataset), per_dataset(ctx.p, "n_test", dataset))
    except DataError as e:
        others = [d for d in ctx.p["datasets"] if d != dataset]
        if others:
            raise type(e)(f"{e} (Or run {ctx.experiment.name!r} without it: datasets={others}.)") from e
        raise
    n_test = per_dataset(ctx.p, "n_test", dataset)
    if n_test is not None and len(data.test) < n_test:
        raise ParameterError(f"parameter 'n_test' = {n_test} but {data.spec.label} has {len(data.test):,} test "
                             f"images; choose n_test <= {len(data.test):,}.")
    return data



def units(ctx, paper: pd.DataFrame) -> list:
    """The units of a Section-6 table: one per (selected dataset, model row), each with its :func:`job`.
    Each dataset's images are loaded here, so a missing dataset stops the run before anything is written."""
    out = []
    for d in ctx.p["datasets"]:
        load(ctx, d)
        rows = ds.rows_for(paper, d)
        out += [Unit.make(unit_id(d, m), [job(m, d, ctx.p)], dataset=d, model=m) for m in models_for(ctx.p, d, rows)]
    return out


def failed_rows(base: dict, metrics: Sequence[str], reason: str) -> list:
    """Cells of a model that did not train (never scored)."""
    return [{**base, "metric": m, "ours": math.nan, "failed": reason or "did not train"} for m in metrics]


def untrained_reason(ctx, tm, data, out: dict) -> str:
    """Why the trained model ``tm`` is not scored ("" when it is): its training failed, or its reconstructions of
    the first 1,000 test images do not vary across inputs (:func:`vaebook.metrics.recon.constant_output_reason`;
    "did not train", never scored). The variance is kept in ``out["recon_var"]``. Skipped at smoke (one step)."""
    if not tm.ok:
        return tm.reason or "did not train"
    if ctx.smoke:
        return ""
    out["recon_var"] = reconstruction_variance(tm.model, data.test[:1000], int(ctx.p.get("eval_batch") or 500))
    return constant_output_reason(out["recon_var"])



def epoch_seconds(history: list, n_train: int, batch_size: int) -> float:
    """Seconds per full epoch from a training history (time per step × steps per epoch, so the partial
    epochs of short runs count correctly)."""
    prev, rates = 0, []
    for rec in history:
        steps = int(rec.get("step", 0)) - prev
        prev = int(rec.get("step", prev))
        if steps > 0 and rec.get("time_s") is not None:
            rates.append(float(rec["time_s"]) / steps)
    if not rates:
        return math.nan
    return sum(rates) / len(rates) * max(1, n_train // batch_size)



__all__ = ["job", "load", "units", "failed_rows", "untrained_reason", "epoch_seconds"]
