"""The record every theory check returns: claim — left side — right side — verdict.

A :class:`ClaimResult` holds one numerical check of one statement of the paper. ``relation``
says how ``lhs`` and ``rhs`` are compared (``"=="`` within ``rtol``/``atol``, ``"<="`` with a
slack ``atol``, ``">"`` for a confirmed counterexample, ``"slope"`` for a fitted log-log rate
within ``atol`` of the predicted one). ``holds`` is that comparison's verdict; ``details`` holds
the supporting numbers (sweeps, per-case values) for the notebook.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

RELATIONS = ("==", "<=", ">", "slope")
#: how a check relates to the paper: ``confirmed`` (holds as printed), ``corrected`` (holds once a typo or
#: missing factor is fixed; the printed variant is in ``details``/``notes`` and fails), ``counterexample``
#: (the printed statement fails; ``holds`` confirms the counterexample), ``extension`` (a rate, constant or
#: closed form the paper does not state)
STATUSES = ("confirmed", "corrected", "counterexample", "extension")


def _arr(a) -> np.ndarray:
    try:
        import torch

        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(a, dtype=float)


def compare(lhs, rhs, relation: str = "==", rtol: float = 0.0, atol: float = 0.0) -> bool:
    """The verdict of ``lhs relation rhs`` (element-wise, all elements), with the given tolerances.

    ``==``: ``|lhs − rhs| ≤ atol + rtol·|rhs|``; ``<=``: ``lhs ≤ rhs + atol + rtol·|rhs|``;
    ``>``: ``lhs > rhs + atol + rtol·|rhs|`` (a strict, tolerance-proof violation); ``slope``: as ``==``.
    """
    a, b = _arr(lhs), _arr(rhs)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False
    slack = atol + rtol * np.abs(b)
    if relation in ("==", "slope"):
        return bool(np.all(np.abs(a - b) <= slack))
    if relation == "<=":
        return bool(np.all(a <= b + slack))
    if relation == ">":
        return bool(np.all(a > b + slack))
    raise ValueError(f"unknown relation {relation!r}; choose one of {RELATIONS}")


@dataclass
class ClaimResult:
    """One checked statement. ``claim``: one line in our words; ``ref``: the paper's equation(s)."""

    name: str
    claim: str
    ref: str
    lhs: Any
    rhs: Any
    relation: str = "=="
    rtol: float = 0.0
    atol: float = 0.0
    holds: bool = False
    notes: str = ""
    details: dict = field(default_factory=dict)
    status: str = "confirmed"

    def __post_init__(self):
        if self.relation not in RELATIONS:
            raise ValueError(f"{self.name}: unknown relation {self.relation!r}; choose one of {RELATIONS}")
        if self.status not in STATUSES:
            raise ValueError(f"{self.name}: unknown status {self.status!r}; choose one of {STATUSES}")
        self.lhs = _tolist(self.lhs)
        self.rhs = _tolist(self.rhs)
        self.holds = compare(self.lhs, self.rhs, self.relation, self.rtol, self.atol)

    def check(self, lhs=None, rhs=None) -> bool:
        """Re-run this claim's comparison on other values (e.g. a deliberately wrong right side)."""
        return compare(self.lhs if lhs is None else lhs, self.rhs if rhs is None else rhs, self.relation,
                       self.rtol, self.atol)

    @property
    def tolerance(self) -> str:
        return f"rtol={self.rtol:g}, atol={self.atol:g}"

    def row(self) -> dict:
        """A flat dict for a table: claim — lhs — relation — rhs — verdict (tolerance)."""
        return {"name": self.name, "ref": self.ref, "claim": self.claim, "lhs": _short(self.lhs),
                "relation": self.relation, "rhs": _short(self.rhs), "holds": self.holds, "status": self.status,
                "tolerance": self.tolerance, "notes": self.notes}

    def as_dict(self) -> dict:
        return asdict(self)


def _tolist(v):
    try:
        import torch

        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, np.ndarray):
        return v.item() if v.ndim == 0 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _short(v) -> str:
    a = np.asarray(v, dtype=float)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    flat = a.ravel()
    body = ", ".join(f"{x:.4g}" for x in flat[:6])
    return f"[{body}{', …' if flat.size > 6 else ''}]"
