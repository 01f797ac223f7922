"""Argument checks of the library's entry points (``build_model``, ``fit``, the Σx classes), run before any work.

Each check raises :class:`InputError` (a ``ValueError``) whose message names the argument, what was expected
and the fix; a call that passes costs a few comparisons (and one pass over the images for finiteness in
:func:`check_fit`). The functions take the registries they check against as arguments, so this module imports
nothing from :mod:`vaebook` and the packages that call it (models, nets, variance, train) import it freely.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable, Mapping, Optional

import torch


class InputError(ValueError):
    """A library entry point was called with an argument it cannot use; the message names it and the fix."""


def _names(registered: Iterable) -> list:
    return sorted(registered)


def check_name(where: str, arg: str, value, registered: Iterable, fix: str) -> None:
    """Refuse ``value`` unless it is one of ``registered``; the message lists them."""
    names = _names(registered)
    if not isinstance(value, str) or value not in names:
        raise InputError(f"{where}: argument {arg!r} = {value!r} is not registered; expected one of {names}. {fix}")


def check_arch(where: str, arch, architectures: Iterable, datasets: Optional[Mapping] = None) -> None:
    """``arch`` must be a registered architecture (``vaebook.nets.ARCHITECTURES``). ``datasets`` (name → spec with
    ``.arch``) turns a dataset name given by mistake into a hint at its architecture."""
    hint = ""
    if datasets is not None and isinstance(arch, str) and arch in datasets and arch not in architectures:
        hint = f" {arch!r} is a dataset; its architecture is {getattr(datasets[arch], 'arch', '?')!r}."
    check_name(where, "arch", arch, architectures,
               "Fix: pass one of these (a dataset's architecture is vaebook.data.dataset_spec(name).arch), or "
               "register one with vaebook.nets.register_arch." + hint)


def check_build_model(name, arch, models: Iterable, architectures: Iterable, datasets: Optional[Mapping] = None):
    """Both names of ``build_model(name, arch)``: a registered model and a registered architecture."""
    check_name("build_model", "name", name, models,
               "Fix: pass one of these, or register a model with vaebook.models.register_model.")
    check_arch("build_model", arch, architectures, datasets)


def _shape(s) -> str:
    return "×".join(str(int(d)) for d in s)


def check_finite_number(where: str, arg: str, value, low: float = 0.0, strict: bool = True, fix: str = "") -> None:
    """``value`` must be a real, finite number ``> low`` (``>= low`` unless ``strict``)."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
          and (value > low if strict else value >= low))
    if not ok:
        raise InputError(f"{where}: argument {arg!r} = {value!r}; expected a finite number "
                         f"{'>' if strict else '>='} {low:g}. {fix}".rstrip())


def check_images(where: str, arg: str, x, x_shape: Optional[tuple] = None) -> None:
    """``x`` must be a non-empty ``N×C×H×W`` tensor (``C×H×W`` = ``x_shape`` when given), uint8 or floating,
    with no NaN or infinity."""
    want = f"N×{_shape(x_shape)}" if x_shape is not None else "N×C×H×W"
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{where}: argument {arg!r} is a {type(x).__name__}; expected a torch.Tensor of shape {want}. "
                         "Fix: pass the images as one tensor (e.g. vaebook.data.load_dataset(...).images).")
    if x.dim() != 4 or x.shape[0] == 0 or (x_shape is not None and tuple(x.shape[1:]) != tuple(x_shape)):
        raise InputError(
            f"{where}: argument {arg!r} has shape {_shape(x.shape) or '()'}; expected {want} (N ≥ 1)"
            + (" for this model's architecture" if x_shape is not None else "") + ". Fix: pass images of the "
            "model's dataset, or build the model for the architecture of these images (build_model(name, arch)).")
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise InputError(f"{where}: argument {arg!r} has dtype {x.dtype}; expected uint8 (0–255) or a float dtype "
                         "(0–1). Fix: convert it, e.g. x.float().div(255).")
    if x.is_floating_point():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            first = int(bad.reshape(x.shape[0], -1).any(1).nonzero()[0, 0])
            raise InputError(
                f"{where}: argument {arg!r} holds {int(bad.sum()):,} NaN/infinite value(s) (first in image {first}); "
                "expected finite pixel values. Fix: repair or drop those images (torch.isfinite(x) finds them).")


def check_fit(model, train_images, config, val_images=None, where: str = "fit") -> None:
    """Everything ``fit(model, train_images, config, val_images)`` needs before its first step: a finite
    ``config.lr > 0`` and ``weight_decay >= 0``, and images of the model's shape (``model.x_shape`` when the
    model has one), finite. A loss that becomes non-finite *during* training is not this check's business."""
    check_finite_number(where, "config.lr", getattr(config, "lr", None),
                        fix="Fix: use the paper's 1e-3 (MNIST) or 2e-4 (CelebA), or another positive rate.")
    check_finite_number(where, "config.weight_decay", getattr(config, "weight_decay", 0.0), strict=False,
                        fix="Fix: use 0 (the paper's setting) or a small positive value.")
    x_shape = getattr(model, "x_shape", None)
    check_images(where, "train_images", train_images, x_shape)
    if val_images is not None:
        check_images(where, "val_images", val_images, x_shape)


def check_variance_args(cls_name: str, x_shape, mode, value, eps, ema, modes: Iterable) -> None:
    """The constructor arguments of a Σx class (``DecoderVariance(x_shape, mode, value, eps, ema)``)."""
    where = f"{cls_name}()"
    if not (isinstance(x_shape, (tuple, list, torch.Size)) and len(x_shape) == 3
            and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in x_shape)):
        raise InputError(f"{where}: argument 'x_shape' = {x_shape!r}; expected three positive integers C, H, W "
                         "(e.g. (1, 28, 28)). Fix: pass the image shape without the batch dimension.")
    check_name(where, "mode", mode, modes, "Fix: pass one of these ('mle' is the paper's proposal).")
    check_finite_number(where, "value", value, fix="Fix: the decoder variance σx² must be positive, e.g. 1.0.")
    check_finite_number(where, "eps", eps, strict=False, fix="Fix: use the default 1e-6 (Section 5.2) or 0.")
    check_finite_number(where, "ema", ema, fix="Fix: use a rate in (0, 1], e.g. the default 0.02.")
    if ema > 1:
        raise InputError(f"{where}: argument 'ema' = {ema!r}; expected a rate in (0, 1]. Fix: e.g. the default 0.02.")


def check_variance_inputs(cls_name: str, x_shape: tuple, x, mu) -> None:
    """``forward(x, mu)`` of a Σx class: ``x`` is ``B×C×H×W`` and ``mu`` ``B×C×H×W`` or ``S×B×C×H×W`` (C, H, W =
    ``x_shape``). Shapes only: cheap enough for every step."""
    where = f"{cls_name}.forward"
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != tuple(x_shape):
        got = _shape(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{where}: argument 'x' has shape {got}; expected B×{_shape(x_shape)} (this Σx's x_shape). "
                         "Fix: pass images of the shape the variance was built for.")
    lead = (x.shape[0],)
    if not isinstance(mu, torch.Tensor) or tuple(mu.shape[-4:]) != (*lead, *x_shape) or mu.dim() not in (4, 5):
        got = _shape(mu.shape) if isinstance(mu, torch.Tensor) else type(mu).__name__
        raise InputError(f"{where}: argument 'mu' has shape {got}; expected {_shape((*lead, *x_shape))} or "
                         f"S×{_shape((*lead, *x_shape))} (decoder means for the batch x). Fix: decode the latents "
                         "of this batch.")


__all__ = ["InputError", "check_name", "check_arch", "check_build_model", "check_finite_number", "check_images",
           "check_fit", "check_variance_args", "check_variance_inputs"]
