"""The dataset registry: one :class:`DatasetSpec` per dataset, registered once.

A spec says everything the experiments need to know about a dataset: how to load a split, the
network architecture (:mod:`vaebook.nets`), the paper's optimiser setting, a label for tables, the
training/test sizes at each named scale, and (optionally) generated stand-in images for smoke runs
when the real images are not installed. The experiment runtime (:mod:`vaebook.lab`) looks datasets
up here by name and knows none of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from .errors import unknown


@dataclass(frozen=True)
class DatasetSpec:
    """``load(split, root, **variant) -> (images, labels or None)``: uint8 or float images ``N×C×H×W``.

    ``train``: the paper's optimiser setting (``epochs``, ``lr``, ``batch_size``). ``sizes``: scale →
    ``(n_train, n_test)`` (``None`` = the whole split). ``stand_in(n, seed)``: uint8 images that run the
    code path at smoke when the real images are missing (never used at any other scale).
    """

    name: str
    label: str
    arch: str
    x_shape: tuple
    load: Callable
    train: dict
    sizes: dict = field(default_factory=dict)
    stand_in: Optional[Callable] = None
    model_defaults: dict = field(default_factory=dict)  # model name -> kwargs (per-dataset hyperparameters)
    describe: Optional[Callable] = None  # (root, **variant) -> dict of facts about the files (split counts, ...)

    def __call__(self, split, root=None, **kw):  # the older load_dataset interface
        from . import Dataset

        x, y = self.load(split, root, **kw)
        meta = {"shape": self.x_shape, **kw, **(self.describe(root, **kw) if self.describe else {})}
        return Dataset(x, y, self.name, split, meta)


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register ``spec`` under ``spec.name`` (once: a second registration of a name is an error)."""
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} registered twice")
    DATASETS[spec.name] = spec
    return spec


def unregister_dataset(name: str) -> None:
    DATASETS.pop(name, None)


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise unknown("dataset", name, DATASETS)
    return DATASETS[name]


def smooth_colour_fields(shape):
    """Stand-in images: bicubic upsampling of 8×8 colour noise (learnable by nothing; code path only)."""

    def make(n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(seed))
        low = torch.rand(n, shape[0], 8, 8, generator=g)
        img = torch.nn.functional.interpolate(low, size=tuple(shape[1:]), mode="bicubic", align_corners=False)
        return (img.clamp(0, 1) * 255).round().to(torch.uint8)

    return make


__all__ = ["DatasetSpec", "DATASETS", "register_dataset", "unregister_dataset", "dataset_spec",
           "smooth_colour_fields"]
