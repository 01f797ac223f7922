"""The trainer shared by every model (Algorithm 1 for the MLE models; plain Adam otherwise).

* Data live as one tensor on the training device; minibatches are index tensors from a
  seeded per-epoch permutation (:class:`vaebook.data.BatchIterator`), so there is no per-item Python.
* Randomness of the loss (z ~ q(z|x)) comes from one ``torch.Generator`` owned by the trainer.
* Checkpoints (model, optimizer, scheduler, generator, iterator position, partial-epoch sums)
  every ``checkpoint_every`` steps and at the end; ``resume=True`` continues exactly — on CPU the
  resumed run ends with bit-identical parameters. Files load with ``torch.load(weights_only=True)``.
  A resume refuses a changed setup (:data:`RESUME_MUST_MATCH` or the training data's content hash);
  ``epochs`` / ``max_steps`` may grow (with a cosine schedule ``epochs`` is its period, so it must match).
* A run cut by ``max_steps`` mid-epoch records that partial epoch in the history but leaves the epoch
  open (no scheduler step, early stopping or best-model update), so a longer resume continues it.
* Temp files left by a killed checkpoint save are deleted when a trainer starts on that folder.
* A non-finite loss stops the run with :class:`NonFiniteLossError` naming the step, the loss
  terms and the last good checkpoint.
* Logging reads device tensors only every ``log_every`` steps (no host sync per step on GPU).
* The loss curve: every ``log_every`` steps (counted from the first step of the run) the mean of each loss
  term over those steps becomes a point ``{"step": s, "loss": …, …}``; each epoch record keeps, under
  ``"curve"``, the points whose window ended in that epoch (windows may straddle epochs; steps after the last
  full window make no point). Checkpoints carry the open window, so a resumed run's curve equals an
  uninterrupted one's. :func:`vaebook.train.plateau` judges whether the curve is flat.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from vaebook.data.batching import BatchIterator
from vaebook.checks import check_fit
from vaebook.io import atomic_write_text, atomic_torch_save, load_torch_file, remove_stale_tmp

RESUME_MUST_MATCH = ("lr", "batch_size", "weight_decay", "lr_schedule", "seed")
_CKPT_FILES = ("checkpoint.pt", "best_model.pt", "model.pt", "history.json", "history.csv")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the message names the step, the terms and the last good checkpoint."""


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


@dataclass
class TrainConfig:
    """Optimisation settings (Appendix I: Adam, batch 64; lr 1e-3 / 100 epochs MNIST, 2e-4 / 70 CelebA;
    Section 4: 200 epochs). ``max_steps`` caps the run (smoke presets)."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    max_steps: Optional[int] = None
    weight_decay: float = 0.0
    lr_schedule: Optional[str] = None  # None | "plateau" (on val loss, else train loss) | "cosine"
    early_stopping_patience: Optional[int] = None  # epochs without val improvement (needs val data)
    checkpoint_dir: Optional[str] = None
    checkpoint_every: int = 0  # steps; 0 = only at epoch ends
    resume: bool = False
    log_every: int = 50
    nan_check_every: Optional[int] = None  # default: every step on CPU, = log_every on CUDA
    progress: bool = False

    def validate(self) -> "TrainConfig":
        for name in ("epochs", "batch_size", "log_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be positive, got {self.lr!r}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"TrainConfig.max_steps must be positive or None, got {self.max_steps!r}")
        if self.lr_schedule not in (None, "plateau", "cosine"):
            raise ValueError(f"TrainConfig.lr_schedule must be None, 'plateau' or 'cosine', got {self.lr_schedule!r}")
        return self


@dataclass
class History:
    """Per-epoch records (loss terms, σ̂x² summary, σz², lr, wall time, the epoch's loss-curve points under
    ``"curve"``) — saved as JSON, and as CSV without the curve."""

    epochs: list = field(default_factory=list)

    @property
    def curve(self) -> list:
        """The loss curve of the whole run: every epoch's ``"curve"`` points, in step order."""
        return [pt for rec in self.epochs for pt in rec.get("curve", ())]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in rec.items() if k != "curve"} for rec in self.epochs])

    def save(self, directory: str | os.PathLike) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "history.json", json.dumps(self.epochs, indent=1))
        atomic_write_text(d / "history.csv", self.to_frame().to_csv(index=False))


def tensor_digest(t: torch.Tensor) -> str:
    """Content hash of a tensor: blake2b over shape, dtype and the raw bytes (read in 64 MiB pieces)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
    flat = t.detach().reshape(-1)
    if flat.numel():
        raw = flat.contiguous().view(torch.uint8)
        piece = 1 << 26
        for i in range(0, raw.numel(), piece):
            h.update(raw[i:i + piece].cpu().numpy())
    return f"blake2b:{h.hexdigest()} shape {tuple(t.shape)} {str(t.dtype).replace('torch.', '')}"


def curve_point(step: int, sums: dict, n: int) -> dict:
    """``{"step": step, term: sum / n, …}`` from device sums of the loss terms: one host read for all terms."""
    vals = torch.stack([v.reshape(()) for v in sums.values()]).tolist() if sums else []
    return {"step": step, **{k: v / max(1, n) for k, v in zip(sums, vals)}}


def _to_float_batch(images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    x = images.index_select(0, idx)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


class Trainer:
    """Train ``model`` (a :class:`~vaebook.models.base.GenerativeModel`) on ``train_images``."""

    def __init__(self, model, train_images: torch.Tensor, config: TrainConfig, val_images: Optional[torch.Tensor] = None,
                 on_epoch_end: Optional[Callable[[dict], None]] = None):
        self.cfg = config.validate()
        check_fit(model, train_images, config, val_images)
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.model = model.to(self.device)
        self.images = train_images.to(self.device)
        self.val_images = None if val_images is None else val_images.to(self.device)
        if len(self.images) < config.batch_size:
            raise ValueError(f"{len(self.images)} training images but batch_size={config.batch_size}")
        groups = model.param_groups(config.lr, config.weight_decay) if hasattr(model, "param_groups") else None
        # fused Adam: one kernel for all parameters (≈25% of a CPU step for the 13M-parameter MNIST nets)
        self.opt = torch.optim.Adam(groups or model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                    fused=True)
        self.batches = BatchIterator(len(self.images), config.batch_size, seed=config.seed, drop_last=True,
                                     device=self.device)
        total = config.epochs * self.batches.steps_per_epoch
        self.total_steps = total if config.max_steps is None else min(total, config.max_steps)
        self.sched = None
        if config.lr_schedule == "cosine":
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, config.epochs))
        elif config.lr_schedule == "plateau":
            self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, factor=0.5, patience=2)
        self.gen = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.step = 0
        self.epoch = 0
        self.accum: dict = {}
        self.accum_n = 0
        self.win: dict = {}  # loss sums of the open loss-curve window (on the device)
        self.win_n = 0
        self.curve_open: list = []  # curve points of the open epoch
        self.epoch_t0 = time.perf_counter()
        self.history = History()
        self.best_val = math.inf
        self.bad_epochs = 0
        self.on_epoch_end = on_epoch_end
        self.ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
        self.last_checkpoint: Optional[Path] = None
        self.partial_open = False  # the last history record is an epoch cut short by max_steps
        self.data_digest = None
        if self.ckpt_dir is not None:
            remove_stale_tmp(self.ckpt_dir, _CKPT_FILES)
            self.data_digest = tensor_digest(train_images)
        self.nan_every = config.nan_check_every or (1 if self.device.type == "cpu" else config.log_every)
        if config.resume:
            self._try_resume()

    # -- checkpoints ------------------------------------------------------------------------
    def _ckpt_path(self) -> Optional[Path]:
        return None if self.ckpt_dir is None else self.ckpt_dir / "checkpoint.pt"

    def save_checkpoint(self) -> Optional[Path]:
        path = self._ckpt_path()
        if path is None:
            return None
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": None if self.sched is None else self.sched.state_dict(),
            "generator": self.gen.get_state(),
            "cpu_rng": torch.get_rng_state(),
            "batches": self.batches.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "accum": {k: v.detach().clone() for k, v in self.accum.items()},
            "accum_n": self.accum_n,
            "win": {k: v.detach().clone() for k, v in self.win.items()},
            "win_n": self.win_n,
            "curve_open": json.dumps(self.curve_open),
            "history": json.dumps(self.history.epochs),
            "best_val": self.best_val,
            "bad_epochs": self.bad_epochs,
            "config": json.dumps(asdict(self.cfg)),
            "data_digest": self.data_digest,
            "partial_open": self.partial_open,
            "epoch_elapsed_s": time.perf_counter() - self.epoch_t0,
        }
        atomic_torch_save(state, path)
        self.history.save(path.parent)
        self.last_checkpoint = path
        return path

    def _try_resume(self) -> None:
        path = self._ckpt_path()
        if path is None:
            raise ValueError("resume=True needs checkpoint_dir")
        if not path.exists():
            return  # nothing to resume: start fresh
        state = load_torch_file(path, "re-run with resume=False to start afresh", map_location=self.device)
        self._check_resumable(state, path)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None and state["scheduler"] is not None:
            self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"].cpu() if self.device.type == "cpu" else state["generator"])
        torch.set_rng_state(state["cpu_rng"].cpu())
        self.batches.load_state_dict(state["batches"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.accum = {k: v.to(self.device) for k, v in state["accum"].items()}
        self.accum_n = int(state["accum_n"])
        self.win = {k: v.to(self.device) for k, v in state.get("win", {}).items()}
        self.win_n = int(state.get("win_n", 0))
        self.curve_open = json.loads(state.get("curve_open", "[]"))
        self.history.epochs = json.loads(state["history"])
        self.best_val, self.bad_epochs = float(state["best_val"]), int(state["bad_epochs"])
        self.partial_open = bool(state.get("partial_open", False))
        self.epoch_t0 = time.perf_counter() - float(state.get("epoch_elapsed_s", 0.0))
        self.last_checkpoint = path

    def _check_resumable(self, state: dict, path: Path) -> None:
        """Raise ``ValueError`` naming every setting (and the training data) that differs from the checkpoint's."""
        old, new = json.loads(state["config"]), asdict(self.cfg)
        fields = list(RESUME_MUST_MATCH) + (["epochs"] if self.cfg.lr_schedule == "cosine" else [])
        diffs = [f"{k}: {old[k]!r} -> {new[k]!r}" for k in fields if k in old and old[k] != new[k]]
        saved = state.get("data_digest")  # absent in checkpoints written before it was recorded
        if saved is not None and saved != self.data_digest:
            diffs.append(f"training data: {saved} -> {self.data_digest}")
        if diffs:
            raise ValueError(f"cannot resume from {path}: the run differs from the checkpoint's "
                             f"({'; '.join(diffs)}). Delete {path} to start afresh, or restore the original "
                             "setting(s).")

    # -- the loop -------------------------------------------------------------------------
    def _nonfinite(self, out) -> None:
        terms = {k: float(v) for k, v in out.terms.items()}
        where = self.last_checkpoint or "none (set checkpoint_dir / checkpoint_every to keep one)"
        raise NonFiniteLossError(
            f"non-finite loss at step {self.step} (epoch {self.epoch}) of {self.model.label}: terms {terms}. "
            f"Last good checkpoint: {where}. Try a smaller lr, gradient clipping, or a larger eps for the MLE variance.")

    def _batch(self, idx: torch.Tensor) -> torch.Tensor:
        """The minibatch as float images (subclasses may change its memory layout)."""
        return _to_float_batch(self.images, idx)

    def _loss(self, x: torch.Tensor):
        """The forward pass (subclasses may wrap it, e.g. in autocast)."""
        return self.model.loss(x, generator=self.gen)

    def _train_step(self, idx: torch.Tensor):
        out = self._loss(self._batch(idx))
        if self.step % self.nan_every == 0 and not bool(torch.isfinite(out.total)):
            self._nonfinite(out)
        self.opt.zero_grad(set_to_none=True)
        out.total.backward()
        self.opt.step()
        for k, v in out.terms.items():
            v = v.detach().float()
            self.accum[k] = self.accum[k] + v if k in self.accum else v.clone()
            self.win[k] = self.win[k] + v if k in self.win else v.clone()
        self.accum_n += 1
        self.win_n += 1
        self.step += 1
        if self.step % self.cfg.log_every == 0:
            self.curve_open.append(curve_point(self.step, self.win, self.win_n))
            self.win, self.win_n = {}, 0
        return out

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor, batch_size: int = 500) -> dict:
        """Mean loss terms over ``images`` in eval mode (fixed generator: the same z draws every call)."""
        self.model.eval()
        gen = torch.Generator(device=self.device).manual_seed(12345)
        sums: dict = {}
        n = 0
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size]
            x = x.float().div(255.0) if x.dtype == torch.uint8 else x
            out = self.model.loss(x, generator=gen)
            for k, v in out.terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(x)
            n += len(x)
        self.model.train()
        return {k: v / n for k, v in sums.items()}

    def _epoch_record(self, last_out) -> dict:
        rec = {"epoch": self.epoch + 1, "step": self.step, "time_s": time.perf_counter() - self.epoch_t0,
               "lr": self.opt.param_groups[0]["lr"]}
        rec.update({k: float(v) / max(1, self.accum_n) for k, v in self.accum.items()})
        if last_out is not None and last_out.sigma2 is not None:
            s2 = last_out.sigma2.float()
            rec.update({"sigma2_min": float(s2.min()), "sigma2_max": float(s2.max())})
        if self.val_images is not None:
            rec.update({f"val_{k}": v for k, v in self.evaluate(self.val_images).items()})
        rec["curve"] = list(self.curve_open)
        return rec

    def _record_partial_epoch(self, last_out) -> None:
        """Record an epoch cut short by ``max_steps`` without closing it (a longer resume continues it)."""
        rec = self._epoch_record(last_out)
        self.history.epochs.append(rec)
        self.partial_open = True
        if self.on_epoch_end is not None:
            self.on_epoch_end(rec)

    def _end_epoch(self, last_out) -> bool:
        """Record the epoch; returns True when early stopping says stop."""
        rec = self._epoch_record(last_out)
        stop = False
        if self.val_images is not None:
            if rec["val_loss"] < self.best_val - 1e-9:
                self.best_val, self.bad_epochs = rec["val_loss"], 0
                if self.ckpt_dir is not None:
                    atomic_torch_save(self.model.state_dict(), self.ckpt_dir / "best_model.pt")
            else:
                self.bad_epochs += 1
                stop = self.cfg.early_stopping_patience is not None and self.bad_epochs >= self.cfg.early_stopping_patience
        if self.sched is not None:
            if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.sched.step(rec.get("val_loss", rec.get("loss", 0.0)))
            else:
                self.sched.step()
        self.history.epochs.append(rec)
        if self.on_epoch_end is not None:
            self.on_epoch_end(rec)
        self.epoch += 1
        self.accum, self.accum_n, self.curve_open = {}, 0, []
        self.epoch_t0 = time.perf_counter()
        return stop

    def fit(self) -> History:
        cfg = self.cfg
        self.model.train()
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc=self.model.label, leave=False)
        spe = self.batches.steps_per_epoch
        last_out = None
        stopped = False
        while self.step < self.total_steps and self.epoch < cfg.epochs and not stopped:
            if self.partial_open:  # training goes on: the record of the cut-short epoch is replaced
                self.history.epochs.pop()
                self.partial_open = False
            for idx in self.batches:  # the rest of the current epoch
                last_out = self._train_step(idx)
                if bar is not None:
                    bar.update(1)
                    if self.step % cfg.log_every == 0:
                        bar.set_postfix({k: f"{float(v):.4g}" for k, v in last_out.terms.items()})
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.batches.position < spe:
                    self.save_checkpoint()
                if self.step >= self.total_steps:
                    break
            epoch_complete = self.batches.position == 0 or self.batches.position >= spe
            if epoch_complete:
                stopped = self._end_epoch(last_out)
            elif self.step >= self.total_steps:
                self._record_partial_epoch(last_out)
            if (epoch_complete or self.step >= self.total_steps) and self.ckpt_dir is not None:
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        if self.ckpt_dir is not None:
            atomic_torch_save(self.model.state_dict(), self.ckpt_dir / "model.pt")
        return self.history


def fit(model, train_images: torch.Tensor, config: TrainConfig, val_images: Optional[torch.Tensor] = None) -> History:
    """Train ``model`` with :class:`Trainer` and return its :class:`History`."""
    return Trainer(model, train_images, config, val_images).fit()
