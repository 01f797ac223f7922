"""Datasets of the paper: MNIST, noisy MNIST (Sec. 5.3), CelebA-64 (App. I.2), CelebA-HQ-128 (App. I.3).

``load_dataset(name, split, root=None, **kw)`` returns a :class:`Dataset` whose ``images`` is one
tensor (uint8, or float32 in [0, 1]); move it to the device once and index it with
:class:`BatchIterator` batches.  Data root: ``root`` argument, else ``$VAEBOOK_DATA``, else ``./data``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .batching import BatchIterator, mix_seed, to_device_dataset
from .celeba import celeba_split_counts, center_crop_box, load_celeba
from .celebahq import celebahq_split_names, celebahq_split_sizes, load_celebahq
from .errors import (ChecksumError, CorruptFileError, DataError, EmptyImageFolderError, MissingDataError,
                     UnknownNameError, unknown)
from .mnist import load_mnist
from .noisy import NOISE_PATTERNS, make_noisy_mnist, noise_mask, noisy_pattern_partitions, partition_masks
from .root import ENV_VAR, resolve_data_root


@dataclass
class Dataset:
    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    split: str
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]


def _mnist(split, root=None, as_float=False, download=None):
    x, y = load_mnist(split, root, as_float=as_float, download=download)
    return Dataset(x, y, "mnist", split, {"shape": (1, 28, 28)})


def _noisy_mnist(split, root=None, pattern="uniform", s2=0.01, seed=0, download=None):
    noisy_pattern_partitions(pattern)  # validate before loading
    x, y = load_mnist(split, root, as_float=True, download=download)
    split_seed = mix_seed("noisy-mnist", seed, split)  # train and test get independent noise
    xn = make_noisy_mnist(x, y, pattern, s2, split_seed)
    meta = {"shape": (1, 28, 28), "pattern": pattern, "s2": float(s2), "seed": seed,
            "noisy_partitions": NOISE_PATTERNS[pattern], "noise_seed": split_seed}
    return Dataset(xn, y, "noisy-mnist", split, meta)


def _celeba64(split, root=None, as_float=False, **kw):
    x = load_celeba(split, root, size=64, as_float=as_float, **kw)
    meta = {"shape": (3, 64, 64), "counts": celeba_split_counts(root), "crop": 140,
            "resample": kw.get("resample", "lanczos")}
    return Dataset(x, None, "celeba64", split, meta)


def _celebahq128(split, root=None, as_float=False, **kw):
    x = load_celebahq(split, root, size=128, as_float=as_float, **kw)
    parts = celebahq_split_names(root)
    meta = {"shape": (3, 128, 128), "counts": {k: len(v) for k, v in parts.items()},
            "resample": kw.get("resample", "lanczos")}
    return Dataset(x, None, "celebahq128", split, meta)


DATASETS = {"mnist": _mnist, "noisy-mnist": _noisy_mnist, "celeba64": _celeba64, "celebahq128": _celebahq128}


def load_dataset(name: str, split: str = "train", root=None, **kw) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`); ``kw`` go to the loader
    (noisy-mnist: ``pattern``, ``s2``, ``seed``; all: ``as_float`` except noisy-mnist, which is float)."""
    if name not in DATASETS:
        raise unknown("dataset", name, DATASETS)
    return DATASETS[name](split, root, **kw)


__all__ = [
    "Dataset", "DATASETS", "load_dataset", "load_mnist", "load_celeba", "load_celebahq", "celeba_split_counts",
    "celebahq_split_names", "celebahq_split_sizes", "center_crop_box", "make_noisy_mnist", "partition_masks", "noisy_pattern_partitions",
    "noise_mask", "NOISE_PATTERNS", "BatchIterator", "to_device_dataset", "mix_seed", "resolve_data_root", "ENV_VAR",
    "DataError", "MissingDataError", "ChecksumError", "CorruptFileError", "EmptyImageFolderError", "UnknownNameError",
]
