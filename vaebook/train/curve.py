"""Is a training run on a plateau? A scale-free test of the loss curve the trainer logs.

:class:`~vaebook.train.Trainer` and the batched trainer record, every ``log_every`` steps, the mean loss over
those steps (``"curve"`` in each epoch record; :attr:`History.curve <vaebook.train.History.curve>`).
:func:`plateau` judges from those points whether the last part of training still improved the loss;
:func:`plateau_line` and :func:`plateau_cell` put the verdicts on a page.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Optional, Sequence

import numpy as np

#: defaults of :func:`plateau`: the share of the logged points in each compared window, the share of the
#: run's improvement the last window may still add, the fewest points judged, and the noise allowance (in
#: standard errors of the difference of two window means)
WINDOW, BAND, MIN_POINTS, NOISE_Z = 0.2, 0.05, 10, 2.0
NO_CURVE = "no loss curve recorded (the model was trained before the trainer logged one)"


def loss_curve(obj, key: str = "loss") -> Optional[list]:
    """``[(step, value), …]`` of ``key`` from a :class:`~vaebook.train.History`, a list of epoch records (as
    the zoo stores ``history.json``), a list of curve points ``{"step": s, key: v}``, or plain numbers (steps
    1, 2, …). None when there is nothing, or the epoch records carry no ``"curve"`` (trained before curves
    were logged)."""
    recs = list(getattr(obj, "epochs", obj) if obj is not None else ())
    if not recs:
        return None
    if isinstance(recs[0], Real):
        return [(i + 1, float(v)) for i, v in enumerate(recs)]
    if "epoch" in recs[0]:  # epoch records
        if not all("curve" in r for r in recs):
            return None
        recs = [pt for r in recs for pt in r["curve"]]
    return [(int(pt["step"]), float(pt[key])) for pt in recs]


def plateau(curve_or_history, window: float = WINDOW, band: float = BAND, key: str = "loss",
            min_points: int = MIN_POINTS) -> dict:
    """Whether the loss curve is flat at its end, judged scale-free (losses may be negative: MLE Σx models).

    With ``m = round(window · n)`` of the ``n`` logged points, L_first the *median* loss over the first ``m``
    points (a first logged loss thousands of times the rest — an MLE σx² fitted to an untrained decoder — must not
    make every later change look small) and L_prev, L_last the mean loss over the second-to-last ``m`` and the
    last ``m`` points:

    * ``improvement_last = L_prev − L_last`` (what the last ``window`` of training still gained),
      ``total = L_first − L_last`` (what the run gained);
    * **flat** when ``|improvement_last| ≤ band · |total|`` — the last 20 % of the logged steps changed the
      loss by under 5 % of the whole run's change (defaults) — **or** when ``|improvement_last| ≤ 2 · se``,
      a change within two standard errors of the noise: ``se = σ̂ · √(2/m)`` with σ̂² = mean of the squared
      second differences of the last ``2m`` points / 6 (unbiased for independent noise and blind to a
      linear trend), so a curve that is flat but noisy is not called moving by chance;
    * ``too short`` with fewer than ``min_points`` points, ``n/a`` without a curve (:func:`loss_curve` None).

    Returns the verdict (``flat``, ``not flat``, ``too short``, ``n/a``), ``flat`` (bool, None when not
    judged), a one-line ``reason``, the numbers above, ``ratio = improvement_last / |total|`` (None when
    total = 0), ``noise_se``, ``points``, ``last_step``, ``window_points`` and the settings.
    """
    if not 0.0 < window <= 0.5:
        raise ValueError(f"window must be in (0, 0.5] (two windows at the end must fit), got {window!r}")
    pts = loss_curve(curve_or_history, key)
    out = {"verdict": "n/a", "flat": None, "reason": NO_CURVE, "points": 0, "last_step": None, "window": window,
           "band": band}
    if pts is None:
        return out
    n = len(pts)
    out.update(points=n, last_step=pts[-1][0] if pts else None)
    if n < min_points:
        out.update(verdict="too short", reason=f"{n} logged loss point(s), fewer than the {min_points} judged")
        return out
    y = np.array([v for _, v in pts], dtype=np.float64)
    m = min(max(1, int(round(window * n))), n // 2)
    first, prev, last = float(np.median(y[:m])), y[n - 2 * m:n - m].mean(), y[n - m:].mean()
    imp, total = float(prev - last), float(first - last)
    dd = np.diff(y[n - 2 * m:], 2)
    se = math.sqrt(float(np.mean(dd ** 2)) / 6.0 * 2.0 / m) if len(dd) else 0.0
    by_band, by_noise = abs(imp) <= band * abs(total), abs(imp) <= NOISE_Z * se
    flat = by_band or by_noise
    ratio = imp / abs(total) if total != 0 else None
    share = f"{100 * ratio:.2g} %" if ratio is not None else "all"
    why = (f"the last {100 * window:g} % of {n} logged points changed the mean loss by {imp:+.4g} ({share} of the "
           f"run's {total:+.4g}; band {100 * band:g} %, noise 2·se = {NOISE_Z * se:.2g})")
    if flat and not by_band:
        why += ": within the noise"
    out.update(verdict="flat" if flat else "not flat", flat=bool(flat), reason=why, window_points=m,
               L_first=float(first), L_prev=float(prev), L_last=float(last), improvement_last=imp, total=total,
               ratio=ratio, noise_se=se)
    return out


def plateau_cell(p: Optional[dict]) -> str:
    """A table cell: ``flat (1.2 %)`` / ``not flat (31 %)`` (the last window's share of the run's improvement),
    ``too short``, or ``n/a`` (no curve, or no verdict recorded)."""
    if not p:
        return "n/a"
    r = p.get("ratio")
    return p["verdict"] + (f" ({100 * r:.2g} %)" if r is not None and p["verdict"] in ("flat", "not flat") else "")


def plateau_line(plateaus: Sequence[Optional[dict]]) -> str:
    """``k of n models flat (…the rule…); j not flat; …`` over the :func:`plateau` dicts of a run's models
    (None: a result recorded without one)."""
    verdicts = [(p or {}).get("verdict", "n/a") for p in plateaus]
    n = len(verdicts)
    if not n:
        return "no trained models"
    counts = {v: verdicts.count(v) for v in ("not flat", "too short", "n/a")}
    if counts["n/a"] == n:
        return "no loss curves recorded (models trained before the trainer logged them)"
    line = (f"{verdicts.count('flat')} of {n} models flat (the last {100 * WINDOW:g} % of logged steps gave "
            f"< {100 * BAND:g} % of the run's loss improvement, or a change within {NOISE_Z:g} standard errors of "
            "the noise)")
    extra = {"not flat": "not flat", "too short": f"too short to judge (< {MIN_POINTS} logged points)",
             "n/a": "without a loss curve"}
    return "; ".join([line] + [f"{counts[v]} {extra[v]}" for v in extra if counts[v]])


__all__ = ["BAND", "MIN_POINTS", "NOISE_Z", "WINDOW", "loss_curve", "plateau", "plateau_cell", "plateau_line"]
