"""Training: :class:`Trainer` / :func:`fit` and the presets (``smoke`` / ``medium`` / ``full``)."""
from vaebook.train.trainer import History, NonFiniteLossError, TrainConfig, Trainer, fit, resolve_device
from vaebook.train.presets import PRESETS, preset_config
from vaebook.train.batched import fit_many, train_many

__all__ = ["History", "NonFiniteLossError", "TrainConfig", "Trainer", "fit", "resolve_device", "PRESETS",
           "preset_config", "fit_many", "train_many"]
