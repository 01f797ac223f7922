"""A model's training loss curve as a page's results keep it: ``[[step, loss], …]`` rounded so that metrics.json stays
small (see :func:`vaebook.train.loss_curve` for the points the trainer logs, and :mod:`vaebook.lab.curve_figure`
for drawing them with the plateau rule's verdict). Kept apart from the figure so that an experiment which records
curves does not depend on how they are drawn."""
from __future__ import annotations

import math
from typing import Optional

from vaebook.train.curve import loss_curve

#: significant digits kept of each logged loss: enough to draw the curve and to re-judge its plateau (a 4-digit loss of
#: ~740 nats would move in steps of 0.1, the size of a late window's change)
DIGITS = 5


def curve_points(history, key: str = "loss", digits: int = DIGITS) -> Optional[list]:
    """``[[step, value], …]`` of ``key`` from a :class:`~vaebook.train.History` or its epoch records, each value
    rounded to ``digits`` significant digits (a non-finite value is kept as None, which JSON can hold); None when
    the history has no curve (trained before the trainer logged one)."""
    if not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive integer, got {digits!r}")
    pts = loss_curve(history, key)
    if pts is None:
        return None
    return [[int(s), float(f"{v:.{digits}g}") if math.isfinite(v) else None] for s, v in pts]



def final_value(history: list, key: str) -> Optional[float]:
    """``key`` of a run's last epoch record (e.g. its last ``step`` or ``loss``); None when absent or not finite."""
    v = history[-1].get(key) if history else None
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


__all__ = ["DIGITS", "curve_points", "final_value"]
