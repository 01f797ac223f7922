"""Presets: ``smoke`` (CI, seconds on CPU), ``medium`` (CPU, minutes, trends visible), ``full``
(the paper's settings, GPU).

The paper's optimisation settings (Appendix D.1 and I): Adam, batch 64; Section 4 / Appendix E:
lr 1e-3, 200 epochs; MNIST (Section 6): lr 1e-3, 100 epochs; CelebA / CelebA-HQ: lr 2e-4, 70 epochs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from vaebook.train.trainer import TrainConfig

PAPER_SETTINGS = {
    "section4": dict(epochs=200, lr=1e-3, batch_size=64),
    "mnist": dict(epochs=100, lr=1e-3, batch_size=64),
    "celeba64": dict(epochs=70, lr=2e-4, batch_size=64),
    "celebahq128": dict(epochs=70, lr=2e-4, batch_size=64),
}


@dataclass(frozen=True)
class Preset:
    """How much data and optimisation a preset uses. ``None`` means the paper's value / all data."""

    name: str
    n_train: Optional[int]
    n_test: Optional[int]
    epochs: Optional[int]
    max_steps: Optional[int] = None
    eval_batch: int = 10_000  # Section 4 criteria use batches of 10,000


PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", n_train=256, n_test=128, epochs=1, max_steps=6, eval_batch=128),
    "medium": Preset("medium", n_train=6_000, n_test=2_000, epochs=8, eval_batch=2_000),
    "full": Preset("full", n_train=None, n_test=None, epochs=None),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def preset_config(preset: str, setting: str, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` for ``setting`` (``section4``, ``mnist``, ``celeba64``, ``celebahq128``) at ``preset``.

    ``overrides`` (e.g. ``epochs=3``, ``seed=1``, ``device="cuda"``) win over both.
    """
    if setting not in PAPER_SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose one of {sorted(PAPER_SETTINGS)}")
    p = get_preset(preset)
    base = dict(PAPER_SETTINGS[setting])
    if p.epochs is not None:
        base["epochs"] = p.epochs
    if p.max_steps is not None:
        base["max_steps"] = p.max_steps
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**base).validate()


__all__ = ["PAPER_SETTINGS", "PRESETS", "Preset", "get_preset", "preset_config", "replace"]
