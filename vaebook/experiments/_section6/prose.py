"""The run lines of a Section-6 page: how its models were trained (:func:`training_line`) and the run as a
fraction of the paper's (:func:`run_scale`, for the status page)."""
from __future__ import annotations

import math
from typing import Sequence

from vaebook.data import dataset_spec
from vaebook.experiments._datasets6 import per_dataset
from vaebook.experiments._section6.jobs import job
from vaebook.experiments._section6.presets import PAPER_TRAIN_IMAGES, PRESETS
from vaebook.lab.display import fmt
from vaebook.lab.status import pct


def dataset_label(d: str) -> str:
    try:
        return dataset_spec(d).label
    except Exception:  # noqa: BLE001 - an unregistered name: show it as it is
        return d


def _trained(p: dict, d: str):
    """``(images, epochs, batch size, steps)`` of a dataset's models under run parameters ``p`` (``steps`` capped
    by ``max_steps``; ``None`` where the image count is unknown)."""
    train = job("mle-iso-i", d, p).train_dict
    n = per_dataset(p, "n_train", d) or PAPER_TRAIN_IMAGES.get(d)
    bs, ep = int(train.get("batch_size", 64)), int(train.get("epochs", 1))
    steps = ep * math.ceil(int(n) / bs) if n else None
    if steps is not None and train.get("max_steps"):
        steps = min(steps, int(train["max_steps"]))
    return n, ep, bs, steps


def run_scale(res, datasets: Sequence[str] = (), evals: Sequence[tuple] = ()) -> str:
    """Our run as a fraction of the paper's, for the status page: per dataset the optimisation steps and training
    images (App. I epochs and batch sizes on the whole split), then ``evals`` (``(label, ours, paper)``, e.g. FID
    samples), then the seeds (one run per model)."""
    if res is None:
        return "–"
    p = dict(res.provenance.get("parameters") or {})
    if p.get("preset") not in PRESETS:
        return "unknown preset"
    parts = []
    for d in datasets or p.get("datasets") or []:
        spec = dataset_spec(d)
        paper = spec.train
        n_full = PAPER_TRAIN_IMAGES.get(d)
        try:
            n, _, _, steps = _trained(p, d)
        except Exception:  # noqa: BLE001 - a provenance without the settings: say so
            parts.append(f"{spec.label}: ?")
            continue
        paper_steps = int(paper.get("epochs", 1)) * math.ceil(n_full / int(paper.get("batch_size", 64))) if n_full else 0
        parts.append(f"{spec.label}: {pct(steps, paper_steps)} of the steps, {pct(n, n_full)} of the images")
    for label, ours, paper in evals:
        parts.append(f"{label} {pct(ours, paper)}")
    seed = p.get("seed", 0)
    parts.append(f"1 seed ({seed}) per model")
    return "; ".join(parts)


def training_line(res, datasets: Sequence[str] = ()) -> str:
    """Markdown: how the run's models were trained (images, epochs, steps per dataset) and that every number is
    one training run (one seed)."""
    if res is None:
        return ""
    p = dict(res.provenance.get("parameters") or {})
    if p.get("preset") not in PRESETS:
        return ""
    parts = []
    for d in datasets or p.get("datasets") or []:
        try:
            n, ep, bs, steps = _trained(p, d)
        except Exception:  # noqa: BLE001 - a provenance without the settings
            continue
        full = ep * math.ceil(int(n) / bs) if n else None
        if steps and full and steps < full:  # capped by max_steps: say the fraction of an epoch
            parts.append(f"{dataset_label(d)} on {fmt(n, ',.0f', '?')} training images, {fmt(steps, ',.0f')} steps of "
                         f"batch {bs} ({steps / math.ceil(int(n) / bs):.2g} epoch)")
            continue
        parts.append(f"{dataset_label(d)} on {fmt(n, ',.0f', '?')} training images, {ep} epoch{'s' * (ep != 1)} "
                     f"of batch {bs}" + (f" ({fmt(steps, ',.0f')} step{'s' * (steps != 1)})" if steps else ""))
    if not parts:
        return ""
    return ("Trained: " + "; ".join(parts) + f". One seed per model (seed {p.get('seed', 0)}): every number below "
            "is a single training run.")


__all__ = ["dataset_label", "run_scale", "training_line"]
