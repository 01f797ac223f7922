"""The shared helpers under their old name: they live in :mod:`vaebook._util` (below both :mod:`vaebook.metrics` and
:mod:`vaebook.posterior`, so neither imports the other for them)."""
from __future__ import annotations

from vaebook._util import (ImagesLike, as_tensor, encode_means, eval_mode, flat_sum, iter_batches, model_device,
                           model_dtype, resolve_generator, to_float_images)

__all__ = ["ImagesLike", "as_tensor", "encode_means", "eval_mode", "flat_sum", "iter_batches", "model_device",
           "model_dtype", "resolve_generator", "to_float_images"]
