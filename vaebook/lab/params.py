"""Parameters of an experiment: one spec type (:class:`ParamSpec`), one validator.

Everything is checked before anything is written: a bad value raises :class:`ParameterError` naming
the parameter, what was expected and how to fix it.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

_MISSING = object()
SEED_MAX = 2**31 - 1
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


class ParameterError(ValueError):
    """A parameter is unknown or out of range; the message names it and what is allowed."""


@dataclass(frozen=True)
class ParamSpec:
    """What one parameter may be.

    ``kind``: ``int`` / ``float`` / ``str`` / ``bool`` / ``list`` (items checked as ``item_kind`` against
    ``choices``/``min``/``max``; empty lists are refused unless ``allow_empty``) / ``path`` (a string;
    ``~`` expanded; ``must_write``: a folder that can be created/written, not a file).
    ``default``: used when absent (absent without default is an error).
    """

    kind: str = "str"
    choices: Optional[tuple] = None
    min: Optional[float] = None
    max: Optional[float] = None
    min_exclusive: bool = False
    allow_none: bool = False
    allow_empty: bool = False
    pattern: Optional[str] = None
    item_kind: Optional[str] = None
    must_write: bool = False
    default: Any = _MISSING
    doc: str = ""

    def allowed(self) -> str:
        """Human description of the allowed values."""
        if self.choices is not None:
            s = ("a non-empty list of values from " if self.kind == "list" else "one of ") + ", ".join(
                repr(c) for c in self.choices)
        else:
            kind = {"int": "an integer", "float": "a finite number", "str": "a string", "bool": "True or False",
                    "path": "a non-empty path", "list": f"a non-empty list of {self.item_kind or 'values'}"
                    }.get(self.kind, self.kind)
            bits = []
            if self.min is not None:
                bits.append(f"{'>' if self.min_exclusive else '>='} {self.min:g}")
            if self.max is not None:
                bits.append(f"<= {self.max:g}")
            if self.pattern:
                bits.append(f"matching {self.pattern}")
            s = kind + (" " + " and ".join(bits) if bits else "")
        return s + (" (or None)" if self.allow_none else "")


def _fail(name, value, spec: ParamSpec, why: str = ""):
    raise ParameterError(f"parameter {name!r} = {value!r} is not allowed{why}; expected {spec.allowed()}"
                         + (f" ({spec.doc})" if spec.doc else "") + ".")


def _check_path(name: str, value, spec: ParamSpec) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        _fail(name, value, spec, " (an empty path)")
    p = Path(os.path.expanduser(str(value)))
    if spec.must_write:
        if p.exists() and not p.is_dir():
            _fail(name, value, spec, " (it is a file, not a folder: choose another path or remove the file)")
        probe = p
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            _fail(name, value, spec, f" (cannot write into {str(probe)!r}: choose a writable folder)")
    return str(p)


def _check_scalar(name: str, value, spec: ParamSpec, kind: str):
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                _fail(name, value, spec)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            _fail(name, value, spec)
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            _fail(name, value, spec)
    elif kind == "str":
        if not isinstance(value, str):
            _fail(name, value, spec)
    elif kind == "path":
        return _check_path(name, value, spec)
    if spec.choices is not None and value not in spec.choices:
        _fail(name, value, spec)
    if spec.min is not None and (value < spec.min or (spec.min_exclusive and value == spec.min)):
        _fail(name, value, spec)
    if spec.max is not None and value > spec.max:
        _fail(name, value, spec)
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        _fail(name, value, spec)
    return value


def validate_params(params: dict, spec: dict) -> dict:
    """Check ``params`` against ``spec`` (name → :class:`ParamSpec`); return a clean copy with defaults.
    Unknown names raise, listing the known ones (a typo such as ``epoch`` is never ignored)."""
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; the known parameters are {sorted(spec)}.")
    out = {}
    for name, s in spec.items():
        if name in params:
            value = params[name]
        elif s.default is not _MISSING:
            value = s.default
        else:
            raise ParameterError(f"parameter {name!r} is required; expected {s.allowed()}.")
        if value is None:
            if not s.allow_none:
                raise ParameterError(f"parameter {name!r} may not be None; expected {s.allowed()}.")
            out[name] = None
            continue
        if s.kind == "list":
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ParameterError(f"parameter {name!r} = {value!r} is not a list; expected {s.allowed()}.")
            if not value and not s.allow_empty:
                raise ParameterError(f"parameter {name!r} is an empty list; expected {s.allowed()}"
                                     + (" — use None for the default" if s.allow_none else "") + ".")
            out[name] = [_check_scalar(f"{name}[{i}]", v, s, s.item_kind or "str") for i, v in enumerate(value)]
        else:
            out[name] = _check_scalar(name, value, s, s.kind)
    return out


def check_device(device: str) -> str:
    """The device string, refused (before anything is written) when this machine has no such device."""
    import torch

    if not _DEVICE_RE.match(str(device)):
        raise ParameterError(f"parameter 'device' = {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ParameterError(f"parameter 'device' = {device!r}, but CUDA is not available on this machine; "
                                 "use 'cpu' or 'auto'.")
        if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
            raise ParameterError(f"parameter 'device' = {device!r}, but only {torch.cuda.device_count()} CUDA "
                                 "device(s) exist; use 'cuda:0' or 'auto'.")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ParameterError("parameter 'device' = 'mps', but MPS is not available on this machine; use 'cpu' or "
                             "'auto'.")
    return device


def common_params(presets) -> dict[str, ParamSpec]:
    """The parameters every experiment takes; ``presets``: the experiment's scale names."""
    return {
        "preset": ParamSpec("str", choices=tuple(presets), default="smoke",
                            doc="the scale: smoke = seconds on CPU (a code test, not a result); larger = results"),
        "mode": ParamSpec("str", choices=("report", "compute"), default="report",
                          doc="report = read results/, compute = train and evaluate"),
        "device": ParamSpec("str", pattern=_DEVICE_RE.pattern, default="auto", doc="torch device"),
        "seed": ParamSpec("int", min=0, max=SEED_MAX, default=0),
        "data_root": ParamSpec("path", allow_none=True, default=None,
                               doc="data folder; None = $VAEBOOK_DATA or ./data"),
        "results_dir": ParamSpec("path", must_write=True, default="results", doc="where results are written"),
        "epochs": ParamSpec("int", min=1, max=100_000, allow_none=True, default=None,
                            doc="override the preset's epochs"),
    }


__all__ = ["ParameterError", "ParamSpec", "validate_params", "check_device", "common_params", "SEED_MAX"]
