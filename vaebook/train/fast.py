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


#: /proc/cpuinfo flags of native bf16 arithmetic on x86 (AVX512-BF16 dot products, AMX tiles)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags() -> set:
    """The x86 feature flags of the first CPU in /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _torch_cpu_bf16() -> list:
    """What PyTorch's own CPU probes say (private functions, absent in some builds: then nothing)."""
    out = []
    for name, what in (("_is_avx512_bf16_supported", "avx512_bf16"), ("_is_amx_tile_supported", "amx_tile")):
        fn = getattr(torch.cpu, name, None)
        try:
            if fn is not None and fn():
                out.append(what)
        except Exception:  # noqa: BLE001 - a probe that fails says nothing
            pass
    return out


def bf16_is_fast(device="cpu") -> tuple[bool, str]:
    """Whether bf16 autocast can be expected to make training and evaluation *faster* on ``device``, and why.

    * CUDA: True when the GPU does bf16 natively (``torch.cuda.is_bf16_supported(including_emulation=False)``,
      Ampere and later).
    * CPU: True only when the CPU has native bf16 arithmetic: AVX512-BF16 or AMX, read from
      ``torch.backends.cpu.get_cpu_capability()`` (a build that names a BF16/AMX level), PyTorch's CPU probes
      and the ``avx512_bf16`` / ``amx_bf16`` flags of /proc/cpuinfo. The capability string alone is not enough:
      "AVX512" is also reported by CPUs without bf16. Measured on this project's machines: with AVX512-BF16 a
      training step of the App. I.1 MNIST net took 39 ms in bf16 against 88 ms in fp32 (2.3x) and Inception
      features were 3.5x faster; on an AVX2 CPU (no bf16 units, PyTorch emulates) the same step took 3.8 s
      against 0.2 s (~19x slower) and Inception 5x slower.
    * anything else (MPS, ...): False, not measured.

    This is a speed test only. Every default stays fp32 (``FastTrainConfig.autocast=None``): bf16 moved the
    loss trajectory of an 8-step check (module table above), and the numerics over a real run (2 epochs, then
    the metrics against fp32) have not been checked, so a True here is not a reason to switch a default.
    """
    from vaebook.train.trainer import resolve_device

    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        name = torch.cuda.get_device_name(dev)
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older signature: no emulation argument
            native = torch.cuda.is_bf16_supported()
        cc = ".".join(map(str, torch.cuda.get_device_capability(dev)))
        if native:
            return True, f"{name} (compute capability {cc}) has native bf16"
        return False, f"{name} (compute capability {cc}) has no native bf16 (emulated: slower, not faster)"
    if dev.type != "cpu":
        return False, f"device {dev.type!r}: bf16 speed not measured, fp32 kept"
    cap = str(torch.backends.cpu.get_cpu_capability())
    found = sorted(set([f for f in BF16_CPU_FLAGS if f in _cpu_flags()] + _torch_cpu_bf16()))
    if "BF16" in cap.upper() or "AMX" in cap.upper():
        found.insert(0, f"capability {cap}")
    if found:
        return True, (f"CPU capability {cap} with native bf16 ({', '.join(found)}): bf16 measured 2.3x faster for a "
                      "training step and 3.5x for Inception on such a CPU")
    return False, (f"CPU capability {cap}: no native bf16 (no avx512_bf16/amx_bf16 flag), so bf16 is emulated: autocast "
                   "was ~19x slower for a training step on such a CPU (AVX2: 3.8 s vs 0.2 s) and Inception 5x slower")


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


__all__ = ["FastTrainConfig", "FastTrainer", "bf16_is_fast", "compile_nets", "fast_fit"]
