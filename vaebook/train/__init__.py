"""Training: :class:`Trainer` / :func:`fit` (one model), :func:`train_many` (several, batched through vmap)."""
from vaebook.train.trainer import History, NonFiniteLossError, TrainConfig, Trainer, fit, resolve_device
from vaebook.train.batched import fit_many, train_many

__all__ = ["History", "NonFiniteLossError", "TrainConfig", "Trainer", "fit", "resolve_device", "fit_many",
           "train_many"]
