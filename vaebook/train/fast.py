"""Single-model fast path: :class:`~vaebook.train.Trainer` plus switchable speed options.

:class:`~vaebook.train.Trainer` already keeps the data resident on the device, draws minibatches
as index tensors (no per-item Python) and reads device tensors only at logging/epoch ends on
CUDA. :class:`FastTrainer` adds, each switchable through :class:`FastTrainConfig`:

==================  ======================  =====================================================
flag                default                 effect (measured on the App. I.1 MNIST net, batch 64, 1 CPU thread)
==================  ======================  =====================================================
``fused_adam``      on (as ``Trainer``)     same Adam update in one fused kernel, no temporaries:
                                            Adam over the 13.3 M parameters 0.2 s → 0.025 s CPU per
                                            step, a step 255 → 181 ms CPU. Metrics: float rounding only.
                                            ``False`` restores PyTorch's per-tensor Adam
``compile``         off on CPU, on on CUDA  ``torch.compile`` of the encoder/decoder (fp32 kept). CPU:
                                            181 vs 179–191 ms per step — the step is convolutions and
                                            matmuls already in oneDNN/MKL — plus a cold compile of
                                            ~3 s (more with 2 shared cores), hence off. CUDA: fuses the
                                            batch-norm/ReLU/loss elementwise kernels (not measured
                                            here: no GPU was available to this task)
``channels_last``   off                     NHWC convolutions; no gain measured on CPU (182 ms)
``tf32``            off                     CUDA matmul/conv inputs rounded to a 10-bit mantissa
``autocast``        off (``None``)          ``"bf16"``: 115 ms per step on this AVX512-BF16 CPU, but
                                            the loss trajectory moves (mean loss of 8 steps 220.5 vs
                                            224.1, last step 180 vs 195), so off; ``"fp16"``: CUDA
==================  ======================  =====================================================

Precision-reducing options (``tf32``, ``autocast``) stay off by default: they change the
metrics beyond float rounding, and the MLE variance (Eq. 9a) — a mean of squared residuals
that reaches ~1e-3 late in training — has not been validated with them on a GPU.

CPU memory: set ``THP_MEM_ALLOC_ENABLE=1`` in the environment *before the first tensor is
allocated* (PyTorch's CPU allocator reads it once): tensors of ≥ 2 MB then get transparent huge
pages, which removes most page faults of the per-step gradient/activation allocations (a step:
11,600 → 2,400 faults, 198 → 180 ms CPU). It changes no numbers.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch

from vaebook.train.trainer import History, TrainConfig, Trainer
from vaebook.variance import DecoderVariance

_AUTOCAST = {None: None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
             "float16": torch.float16}


@dataclass
class FastTrainConfig(TrainConfig):
    """:class:`TrainConfig` plus the fast-path switches (see the module table). ``None`` = device default."""

    fused_adam: Optional[bool] = None
    compile: Optional[bool] = None
    compile_mode: Optional[str] = None  # torch.compile mode: None | "reduce-overhead" | "max-autotune"
    channels_last: bool = False
    tf32: bool = False
    autocast: Optional[str] = None  # None | "bf16" | "fp16"

    def validate(self) -> "FastTrainConfig":
        super().validate()
        if self.autocast not in _AUTOCAST:
            raise ValueError(f"FastTrainConfig.autocast must be one of {sorted(k for k in _AUTOCAST if k)} or None, "
                             f"got {self.autocast!r}")
        return self

    def resolved(self, device: torch.device) -> dict:
        """The switches after applying the device defaults."""
        cuda = device.type == "cuda"
        return {"fused_adam": True if self.fused_adam is None else bool(self.fused_adam),
                "compile": cuda if self.compile is None else bool(self.compile),
                "channels_last": bool(self.channels_last), "tf32": bool(self.tf32) and cuda,
                "autocast": _AUTOCAST[self.autocast]}


def compile_nets(model: torch.nn.Module, mode: Optional[str] = None) -> list[str]:
    """``torch.compile`` each child network of ``model`` in place (not the Σx module, whose MLE running
    estimate is updated in place); returns the names compiled. The state dict is unchanged."""
    names = []
    for name, child in model.named_children():
        if isinstance(child, DecoderVariance) or not any(True for _ in child.parameters()):
            continue
        child.compile(mode=mode)
        names.append(name)
    return names


class FastTrainer(Trainer):
    """:class:`Trainer` with the switches of :class:`FastTrainConfig` (any :class:`TrainConfig` works:
    then every switch takes its device default)."""

    def __init__(self, model, train_images, config: TrainConfig, val_images=None, on_epoch_end=None):
        if not isinstance(config, FastTrainConfig):
            config = FastTrainConfig(**{k: getattr(config, k) for k in TrainConfig.__dataclass_fields__})
        super().__init__(model, train_images, config, val_images, on_epoch_end)
        self.options = config.resolved(self.device)
        for g in self.opt.param_groups:  # same update rule; fused: one kernel per tensor list
            g["fused"], g["foreach"] = (True, False) if self.options["fused_adam"] else (None, None)
        if self.options["channels_last"]:
            self.model.to(memory_format=torch.channels_last)
        self.compiled = compile_nets(self.model, config.compile_mode) if self.options["compile"] else []

    @contextlib.contextmanager
    def _precision(self):
        dev = self.device.type
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) if dev == "cuda" else None
        if old is not None:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.options["tf32"]
        try:
            yield
        finally:
            if old is not None:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old

    def _batch(self, idx: torch.Tensor) -> torch.Tensor:
        x = super()._batch(idx)
        return x.contiguous(memory_format=torch.channels_last) if self.options["channels_last"] else x

    def _loss(self, x: torch.Tensor):
        dtype = self.options["autocast"]
        if dtype is None:
            return super()._loss(x)
        with torch.autocast(self.device.type, dtype=dtype):  # only the forward pass runs in low precision
            return super()._loss(x)

    def fit(self) -> History:
        with self._precision():
            return super().fit()


def fast_fit(model, train_images: torch.Tensor, config: TrainConfig, val_images=None) -> History:
    """Train ``model`` with :class:`FastTrainer`; returns the :class:`History` ``fit`` would."""
    return FastTrainer(model, train_images, config, val_images).fit()


__all__ = ["FastTrainConfig", "FastTrainer", "compile_nets", "fast_fit"]
