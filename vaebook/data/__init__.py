"""Datasets: the paper's (MNIST, noisy MNIST of Sec. 5.3, CelebA-64 of App. I.2, CelebA-HQ-128 of App. I.3;
registered in :mod:`vaebook.data.paper_datasets`) and any other: every module of this package is imported by
:func:`discover` when the package is, so a new dataset is one file here that calls :func:`register_dataset`
(README, "Extending").

``load_dataset(name, split, root=None, **kw)`` returns a :class:`Dataset` whose ``images`` is one
tensor (uint8, or float32 in [0, 1]); move it to the device once and index it with
:class:`BatchIterator` batches.  Data root: ``root`` argument, else ``$VAEBOOK_DATA``, else ``./data``.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field

import torch

from .batching import BatchIterator, mix_seed, to_device_dataset
from .celeba import celeba_split_counts, center_crop_box, load_celeba
from .celebahq import celebahq_split_names, celebahq_split_sizes, load_celebahq
from .errors import (ChecksumError, CorruptFileError, DataError, EmptyImageFolderError, InvalidArgumentError,
                     MissingDataError, UnknownNameError, unknown)
from .mnist import load_mnist
from .noisy import NOISE_PATTERNS, make_noisy_mnist, noise_mask, noisy_pattern_partitions, partition_masks
from .root import ENV_VAR, resolve_data_root
from .registry import (DATASETS, DatasetSpec, check_spec, dataset_spec, register_dataset, smooth_colour_fields,
                       unregister_dataset)


@dataclass
class Dataset:
    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    split: str
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]


def discover() -> list:
    """Import every public module of this package (the paper's datasets and any file added here), once, in name
    order; returns the module names. A module registers its datasets when imported."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


def load_dataset(name: str, split: str = "train", root=None, **kw) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`); ``kw`` go to the loader
    (noisy-mnist: ``pattern``, ``s2``, ``seed``; all: ``as_float`` except noisy-mnist, which is float)."""
    if name not in DATASETS:
        raise unknown("dataset", name, DATASETS)
    params = inspect.signature(DATASETS[name].load).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        extra = sorted(set(kw) - set(params))
        if extra:
            takes = [p for p in params if p not in ("split", "root")]
            raise InvalidArgumentError(f"load_dataset({name!r}): unknown argument(s) {extra}; this dataset's loader "
                                       f"takes {takes}. Fix: drop or rename them.")
    return DATASETS[name](split, root, **kw)


__all__ = [
    "Dataset", "DATASETS", "DatasetSpec", "dataset_spec", "check_spec", "discover", "register_dataset", "unregister_dataset", "load_dataset", "load_mnist", "load_celeba", "load_celebahq", "celeba_split_counts",
    "celebahq_split_names", "celebahq_split_sizes", "center_crop_box", "make_noisy_mnist", "partition_masks", "noisy_pattern_partitions",
    "noise_mask", "NOISE_PATTERNS", "BatchIterator", "to_device_dataset", "mix_seed", "resolve_data_root", "ENV_VAR",
    "DataError", "InvalidArgumentError", "MissingDataError", "ChecksumError", "CorruptFileError", "EmptyImageFolderError", "UnknownNameError",
]

discover()  # last: a dataset module may import any name above from vaebook.data
