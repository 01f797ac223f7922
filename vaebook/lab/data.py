"""Experiment data: the training and test images of a registered dataset at a scale."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterator, Optional

import torch

from vaebook.lab.params import ParameterError


def tensor_hash(t: torch.Tensor) -> str:
    """BLAKE2b of a tensor's shape, dtype and bytes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


def float_batches(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, x.shape[0], batch_size):
        yield to_float(x[i:i + batch_size])


@dataclass
class ExperimentData:
    """Training images (uint8 or float, CPU), test images (float in [0, 1], CPU), optional labels.
    ``source`` is ``"real"`` or a description of generated stand-in images (smoke only)."""

    dataset: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: Optional[torch.Tensor] = None
    test_labels: Optional[torch.Tensor] = None
    source: str = "real"
    variant: dict = field(default_factory=dict)
    train_hash: str = ""
    test_hash: str = ""

    @property
    def generated(self) -> bool:
        return self.source != "real"

    @property
    def spec(self):
        from vaebook.data import dataset_spec

        return dataset_spec(self.dataset)

    def describe(self) -> str:
        what = self.spec.label + ("" if not self.generated else f" ({self.source})")
        var = "".join(f", {k}={v}" for k, v in self.variant.items())
        return f"{what}{var}: {len(self.train):,} training / {len(self.test):,} test images"


_CACHE: dict = {}


def _take(x, n):
    """The first ``n`` items as their own storage (a view would keep the whole split in memory)."""
    return x if (x is None or n is None or n >= len(x)) else x[:n].clone()


def load_data(dataset: str, n_train: Optional[int], n_test: Optional[int], root=None, stand_in_seed: int = 0,
              allow_stand_in: bool = False, **variant) -> ExperimentData:
    """The first ``n_train``/``n_test`` images (file order; ``None`` = all) of a registered dataset.

    ``variant``: extra loader arguments (e.g. a noise pattern). ``allow_stand_in`` (smoke only): when the
    images are not installed and the dataset has stand-in images, use those and say so in ``source``.
    """
    from vaebook.data import EmptyImageFolderError, MissingDataError, dataset_spec

    spec = dataset_spec(dataset)
    key = (dataset, n_train, n_test, str(root), stand_in_seed, allow_stand_in, tuple(sorted(variant.items())))
    if key in _CACHE:
        return _CACHE[key]
    source = "real"
    try:
        xtr, ytr = spec.load("train", root, **variant)
        xte, yte = spec.load("test", root, **variant)
    except (MissingDataError, EmptyImageFolderError) as e:
        if not (allow_stand_in and spec.stand_in):
            raise
        nt, ne = n_train or 16, n_test or 4
        x = spec.stand_in(nt + ne, stand_in_seed)
        xtr, xte, ytr, yte = x[:nt], x[nt:], None, None
        source = f"generated stand-in images, not {spec.label} ({type(e).__name__})"
    if n_train is not None and n_train > len(xtr):
        raise ParameterError(f"parameter 'n_train' = {n_train} but {spec.label} has {len(xtr):,} training images; "
                             f"choose n_train <= {len(xtr):,} or None (all).")
    if n_test is not None and n_test > len(xte):
        raise ParameterError(f"parameter 'n_test' = {n_test} but {spec.label} has {len(xte):,} test images; "
                             f"choose n_test <= {len(xte):,} or None (all).")
    xtr, ytr, xte, yte = _take(xtr, n_train), _take(ytr, n_train), _take(xte, n_test), _take(yte, n_test)
    data = ExperimentData(dataset, xtr, to_float(xte), ytr, yte, source, dict(variant))
    data.train_hash, data.test_hash = tensor_hash(xtr), tensor_hash(data.test)
    _CACHE[key] = data
    return data


def clear_cache() -> None:
    _CACHE.clear()


__all__ = ["ExperimentData", "load_data", "tensor_hash", "to_float", "float_batches", "clear_cache"]
