"""Figures of the rescue page (:mod:`vaebook.experiments.rescue`): what each rescued Diag-D draws."""
from __future__ import annotations

from vaebook.lab.display import grid_figure


def strips(images: dict, rows: list, seed: int, labels: dict):
    """Per row (model seed ``seed``): eight test reconstructions, then eight samples from the prior.
    ``images``: ``(row, seed) → {"recon": B×C×H×W, "samples": B×C×H×W}``; ``labels``: row → words."""
    blocks = []
    for row in rows:
        im = images.get((row, seed))
        if not im:
            continue
        label = labels.get(row, row)
        if im.get("recon") is not None:
            blocks.append((f"{label}: reconstructions", im["recon"]))
        if im.get("samples") is not None:
            blocks.append((f"{label}: prior samples", im["samples"]))
    return grid_figure(blocks, title=f"Reconstructions of the first test images and prior samples (model seed {seed})")
