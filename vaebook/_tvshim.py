"""Make ``import torchvision`` work when its compiled ops cannot be loaded.

The pinned torchvision 0.28.0 wheel in some environments is a CUDA build whose ``_C``
extension does not load next to the CPU build of torch 2.13.0.  torchvision then
still runs ``torch.library.register_fake("torchvision::nms")`` at import time, which
fails with ``operator torchvision::nms does not exist``.

This module runs before the first torchvision import (``vaebook/__init__.py`` imports
it first).  It tries to load torchvision's own extension; only when that fails does it
declare the two schemas that torchvision's fake registrations need (``nms`` and
``qnms``).  Where the real extension loads, nothing is defined, so this is a no-op.
vaebook uses torchvision only for pure-Python utilities (``utils.make_grid``,
``transforms``, ``datasets.MNIST`` download); calling the declared ops raises a clear
error instead of running.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

import torch

_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIB = None  # keep the Library alive: torch deregisters its ops when it is collected
SHIM_ACTIVE = False  # True when the schemas were declared here


def _op_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def _try_load_real_extension() -> bool:
    """Load torchvision's ``_C`` without importing the torchvision package."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    finder = importlib.machinery.FileFinder(
        os.path.dirname(spec.origin),
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
    )
    ext = finder.find_spec("_C")
    if ext is None or ext.origin is None:
        return False
    try:
        torch.ops.load_library(ext.origin)
    except (OSError, ImportError, RuntimeError):
        return False
    return _op_exists("nms")


def _unavailable(name: str):
    def kernel(*args, **kwargs):
        raise NotImplementedError(
            f"torchvision::{name} has no kernel: torchvision's compiled extension could not be "
            "loaded with this torch build (vaebook declared only its schema so that "
            "`import torchvision` works). Install a torchvision build matching torch "
            f"{torch.__version__} to use detection ops."
        )

    return kernel


def install() -> bool:
    """Declare the missing schemas if needed; return True when the shim is active."""
    global _LIB, SHIM_ACTIVE
    if SHIM_ACTIVE or "torchvision" in sys.modules:
        return SHIM_ACTIVE
    if all(_op_exists(n) for n in _OPS) or _try_load_real_extension():
        return False
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _OPS.items():
        if not _op_exists(name):
            lib.define(schema)
            lib.impl(name, _unavailable(name), "CompositeExplicitAutograd")
    _LIB, SHIM_ACTIVE = lib, True
    return True


install()
