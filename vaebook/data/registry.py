"""The dataset registry: one :class:`DatasetSpec` per dataset, registered once.

A spec says everything the experiments need to know about a dataset: how to load a split, the
network architecture (:mod:`vaebook.nets`), the paper's optimiser setting, a label for tables, the
training/test sizes at each named preset (:meth:`DatasetSpec.size`: a preset without one is an error, never
the whole split), and (optionally) generated stand-in images for smoke runs when the real images are not
installed. The experiment runtime (:mod:`vaebook.lab`) looks datasets up here by name and knows none of them.
Every module of :mod:`vaebook.data` is imported when the package is (``vaebook.data.discover``), so a dataset
is one new file that calls :func:`register_dataset`.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from vaebook.nets import ARCHITECTURES

from .errors import InvalidArgumentError, unknown

#: the optimiser settings a spec's ``train`` must give (the paper's schedule for the dataset)
TRAIN_KEYS = ("epochs", "lr", "batch_size")


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

    def size(self, preset: str) -> tuple:
        """``(n_train, n_test)`` at ``preset`` (``None`` = the whole split). A preset the spec gives no size for is
        an error naming the preset, the dataset and the fix: never a silent run on the whole split."""
        if preset not in self.sizes:
            raise InvalidArgumentError(
                f"preset {preset!r} has no size for dataset {self.name!r} (its DatasetSpec.sizes names "
                f"{sorted(self.sizes) or 'no preset'}). Fix: add {preset!r}: (n_train, n_test) to the sizes of "
                f"{self.name!r} where it is registered (None = the whole split), or pass n_train and n_test.")
        return self.sizes[preset]

    def __call__(self, split, root=None, **kw):  # the older load_dataset interface
        from . import Dataset

        x, y = self.load(split, root, **kw)
        meta = {"shape": self.x_shape, **kw, **(self.describe(root, **kw) if self.describe else {})}
        return Dataset(x, y, self.name, split, meta)


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register ``spec`` under ``spec.name`` (once: a second registration of a name is an error), after checking
    it (:func:`check_spec`)."""
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} registered twice; give the new DatasetSpec another name")
    check_spec(spec)
    DATASETS[spec.name] = spec
    return spec


def check_spec(spec: DatasetSpec) -> None:
    """Refuse a spec the experiments could not use; each message names the field, what was expected and the fix."""
    where = f"DatasetSpec {spec.name!r}"
    if not isinstance(spec.name, str) or not spec.name or not all(c.isalnum() or c in "-_" for c in spec.name) \
            or "--" in spec.name:
        raise InvalidArgumentError(f"DatasetSpec name {spec.name!r}: expected letters, digits, '-' and '_' (no '--': "
                                   "it separates dataset and model in unit ids). Fix: e.g. 'mnist-inverted'.")
    if spec.arch not in ARCHITECTURES:
        raise InvalidArgumentError(f"{where}: arch {spec.arch!r} is not registered; expected one of "
                                   f"{sorted(ARCHITECTURES)}. Fix: use one, or register a net for this image size "
                                   "with vaebook.nets.register_arch.")
    if tuple(spec.x_shape) != tuple(ARCHITECTURES[spec.arch].image_shape):
        raise InvalidArgumentError(f"{where}: x_shape {tuple(spec.x_shape)} but architecture {spec.arch!r} takes "
                                   f"{ARCHITECTURES[spec.arch].image_shape}. Fix: give the images' C×H×W and an "
                                   "architecture for that shape.")
    missing = [k for k in TRAIN_KEYS if k not in spec.train]
    if missing:
        raise InvalidArgumentError(f"{where}: train lacks {missing}; expected the paper's schedule, e.g. "
                                   "dict(epochs=100, lr=1e-3, batch_size=64). Fix: add them.")
    for preset, size in spec.sizes.items():
        ok = isinstance(size, tuple) and len(size) == 2 and all(
            n is None or (isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 2) for n in size)
        if not ok:
            raise InvalidArgumentError(f"{where}: sizes[{preset!r}] = {size!r}; expected (n_train, n_test), each an "
                                       "integer >= 2 or None (the whole split). Fix: e.g. (256, 64).")


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


__all__ = ["DatasetSpec", "DATASETS", "register_dataset", "unregister_dataset", "dataset_spec", "check_spec",
           "smooth_colour_fields", "TRAIN_KEYS"]
