"""Which datasets a Section-6 table runs, at what size: any registered dataset by name (the paper's are the
default selection, not the only one).

A preset's per-dataset settings (``n_train``, ``n_test``, ``fid_samples``, ``train``, ``model_kwargs``) are dicts
keyed by dataset name, with :data:`ANY` as the value for a dataset the preset does not name. The sizes come from
each dataset's :meth:`~vaebook.data.DatasetSpec.size`: a preset without a size for a selected dataset is an error
naming the preset, the dataset and the fix, never a silent run on the whole split.
"""
from __future__ import annotations

from collections.abc import Sequence as _Sequence
from typing import Optional, Sequence

from vaebook.data import DATASETS as REGISTERED, DataError, dataset_spec
from vaebook.lab.params import ParameterError
from vaebook.models import MODEL_REGISTRY

#: the key of a preset's per-dataset dict that holds the value for every dataset it does not name
ANY = "*"
#: the parameters whose resolved value is a dict keyed by dataset (reduced to one dataset in an evaluation key)
PER_DATASET = ("n_train", "n_test", "fid_samples")


class RegisteredDatasets(_Sequence):
    """The ``choices`` of a ``datasets`` parameter: every dataset registered *now* (one registered after the
    experiment was built included), in registration order."""

    def __len__(self) -> int:
        return len(REGISTERED)

    def __getitem__(self, i):
        return list(REGISTERED)[i]

    def __contains__(self, name) -> bool:
        return name in REGISTERED

    def __repr__(self) -> str:
        return f"RegisteredDatasets({list(REGISTERED)})"


def sizes(preset: str, datasets: Sequence[str]) -> tuple:
    """``({dataset: n_train}, {dataset: n_test})`` of the datasets that have a size at ``preset``."""
    have = [d for d in datasets if d in REGISTERED and preset in dataset_spec(d).sizes]
    return ({d: dataset_spec(d).size(preset)[0] for d in have}, {d: dataset_spec(d).size(preset)[1] for d in have})


def per_dataset(p: dict, key: str, dataset: str):
    """A resolved setting for ``dataset``: a parameter value applies to every dataset; a preset's is per dataset
    (its :data:`ANY` entry for a dataset it does not name)."""
    v = p.get(key)
    return v.get(dataset, v.get(ANY)) if isinstance(v, dict) else v


def required(p: dict, key: str, dataset: str) -> int:
    """:func:`per_dataset` as an int, or a :class:`ParameterError` naming the parameter, dataset and fix."""
    v = per_dataset(p, key, dataset)
    if v is None:
        raise ParameterError(f"parameter {key!r} has no value for dataset {dataset!r} at preset {p.get('preset')!r}. "
                             f"Fix: pass {key}=<int>, or give the preset a value for it.")
    return int(v)


def preset_entry(preset: dict, key: str, dataset: str, default=None):
    """A preset's per-dataset entry ``key`` for ``dataset`` (its :data:`ANY` entry when it names no such dataset)."""
    v = preset.get(key) or {}
    return v.get(dataset, v.get(ANY, default))


def fill_sizes(p: dict, experiment: str) -> None:
    """Give ``p["n_train"]``/``p["n_test"]`` a value for every selected dataset: the parameter when given (an int
    for all datasets), else the preset's, else the dataset spec's size at the preset; none of them is an error."""
    for key, i in (("n_train", 0), ("n_test", 1)):
        v = p.get(key)
        if v is not None and not isinstance(v, dict):
            continue
        v = dict(v or {})
        for d in p["datasets"]:
            if d not in v:
                try:
                    v[d] = dataset_spec(d).size(p["preset"])[i]
                except DataError as e:
                    raise ParameterError(f"{experiment}: {e}") from None
        p[key] = v


def check_datasets(p: dict, experiment: str, default: Sequence[str]) -> None:
    """The selected datasets: registered, each once (the message lists the registered ones)."""
    p["datasets"] = list(dict.fromkeys(p.get("datasets") or default))
    bad = [d for d in p["datasets"] if d not in REGISTERED]
    if bad:
        raise ParameterError(f"{experiment}: parameter 'datasets': unknown dataset(s) {bad}; the registered datasets "
                             f"are {list(REGISTERED)}. Fix: choose among them, or register one (a file in "
                             "vaebook/data/, README 'Extending').")


def rows_for(paper, dataset: str) -> list:
    """A table's default rows on ``dataset``: the paper's rows for it; for a dataset the paper does not have, every
    row the table prints on any dataset that the model fits (:meth:`ModelSpec.fits`), in the paper's order."""
    if not len(paper):
        return []
    own = list(dict.fromkeys(paper.loc[paper["dataset"] == dataset, "row"]))
    if own:
        return own
    return [m for m in dict.fromkeys(paper["row"]) if m in MODEL_REGISTRY and MODEL_REGISTRY[m].fits(dataset)]


def eval_view(p: dict, dataset: Optional[str]) -> dict:
    """``p`` with each per-dataset setting reduced to ``dataset``'s value, so that selecting another dataset (or
    registering one) leaves this dataset's evaluation key as it was."""
    if dataset is None:
        return dict(p)
    return {k: (per_dataset(p, k, dataset) if k in PER_DATASET else v) for k, v in p.items()}


__all__ = ["ANY", "PER_DATASET", "RegisteredDatasets", "sizes", "per_dataset", "required", "preset_entry",
           "fill_sizes", "check_datasets", "rows_for", "eval_view"]
