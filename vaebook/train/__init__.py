"""Training: :class:`Trainer` / :func:`fit` (one model), :func:`train_many` (several, batched through vmap),
:func:`plateau` (is the logged loss curve flat at its end?)."""
from vaebook.train.trainer import History, NonFiniteLossError, TrainConfig, Trainer, fit, resolve_device
from vaebook.train.batched import fit_many, train_many
from vaebook.train.curve import loss_curve, plateau

__all__ = ["History", "NonFiniteLossError", "TrainConfig", "Trainer", "fit", "resolve_device", "fit_many",
           "train_many", "loss_curve", "plateau"]
