"""Seeded, resumable minibatch indices over a dataset held as one tensor on the device.

Training code keeps the whole dataset as one tensor on the training device and indexes it
with the index tensors yielded here (``x[idx]``): no ``DataLoader``, no per-item Python.
The permutation of epoch ``e`` is ``torch.randperm(n, generator=Generator().manual_seed(
mix_seed(seed, e)))`` drawn on CPU, so it is the same on every device and after a resume.
"""
from __future__ import annotations

import hashlib

import torch


def mix_seed(*parts) -> int:
    """A stable 63-bit seed from any sequence of ints/strings (unlike ``hash``, not salted per process)."""
    blob = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") & ((1 << 63) - 1)


class BatchIterator:
    """Shuffled minibatch index tensors, reproducible from ``seed`` and resumable mid-epoch.

    ``for idx in it`` yields the remaining batches of the current epoch and then moves to the
    next epoch; :meth:`next_batch` rolls over epochs automatically (for step-based loops).
    ``state_dict()`` records (epoch, position); loading it into a fresh iterator with the same
    (n, batch_size, seed, drop_last) continues with exactly the same batches.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, drop_last: bool = True, device="cpu"):
        if int(n) <= 0 or int(batch_size) <= 0:
            raise ValueError(f"BatchIterator needs n > 0 and batch_size > 0, got n={n}, batch_size={batch_size}.")
        if drop_last and batch_size > n:
            raise ValueError(f"batch_size={batch_size} exceeds n={n} with drop_last=True: an epoch would be empty; "
                             "lower batch_size or pass drop_last=False.")
        self.n, self.batch_size, self.seed, self.drop_last = int(n), int(batch_size), int(seed), bool(drop_last)
        self.device = torch.device(device)
        self.epoch, self.position = 0, 0
        self._perm_epoch, self._perm = None, None

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def permutation(self, epoch: int) -> torch.Tensor:
        """The full permutation of ``epoch`` (on ``self.device``)."""
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            self._perm = torch.randperm(self.n, generator=g).to(self.device)
            self._perm_epoch = epoch
        return self._perm

    def next_batch(self) -> torch.Tensor:
        if self.position >= self.steps_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        start = self.position * self.batch_size
        idx = self.permutation(self.epoch)[start:start + self.batch_size]
        self.position += 1
        return idx

    def __iter__(self):
        if self.position >= self.steps_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        epoch = self.epoch
        while self.epoch == epoch and self.position < self.steps_per_epoch:
            yield self.next_batch()
        if self.epoch == epoch:
            self.epoch, self.position = epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "n": self.n,
                "batch_size": self.batch_size, "seed": self.seed, "drop_last": self.drop_last}

    def load_state_dict(self, state: dict) -> None:
        for k in ("n", "batch_size", "seed", "drop_last"):
            if k in state and state[k] != getattr(self, k):
                raise ValueError(f"BatchIterator state has {k}={state[k]!r} but this iterator has "
                                 f"{k}={getattr(self, k)!r}; build the iterator with the saved settings.")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def to_device_dataset(images: torch.Tensor, device="cpu", as_float: bool = True) -> torch.Tensor:
    """Move a dataset tensor to ``device`` once; uint8 → float32 in [0, 1] is done on the device."""
    x = images.to(device, non_blocking=True)
    if as_float and not x.is_floating_point():
        x = x.float().div_(255.0)
    return x
