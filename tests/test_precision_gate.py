"""``vaebook.train.fast.bf16_is_fast``: bf16 only where the hardware does it natively (every branch, patched)."""
from __future__ import annotations

import pytest
import torch

from vaebook.train import fast


@pytest.fixture
def cpu(monkeypatch):
    """Patch the three CPU signals: capability string, PyTorch's probes, /proc/cpuinfo flags."""

    def set_(capability="AVX2", flags=(), probes=()):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(fast, "_cpu_flags", lambda: set(flags) | {"sse2", "avx2", "fma"})
        for name, what in (("_is_avx512_bf16_supported", "avx512_bf16"), ("_is_amx_tile_supported", "amx_tile")):
            monkeypatch.setattr(torch.cpu, name, (lambda w=what: w in probes), raising=False)

    return set_


def test_avx2_cpu_is_not_fast(cpu):
    cpu("AVX2")
    ok, why = fast.bf16_is_fast("cpu")
    assert not ok
    assert "AVX2" in why and "19x slower" in why


def test_avx512_without_bf16_is_not_fast(cpu):
    """AVX512 alone (e.g. Skylake-X) has no bf16 units: the capability string must not be enough."""
    cpu("AVX512")
    ok, why = fast.bf16_is_fast(torch.device("cpu"))
    assert not ok and "AVX512" in why


@pytest.mark.parametrize("flags,probes", [(("avx512_bf16",), ()), (("amx_bf16",), ()), ((), ("avx512_bf16",)),
                                          ((), ("amx_tile",))])
def test_native_bf16_cpu_is_fast(cpu, flags, probes):
    cpu("AVX512", flags=flags, probes=probes)
    ok, why = fast.bf16_is_fast("cpu")
    assert ok
    assert (flags or probes)[0] in why


@pytest.mark.parametrize("capability", ["AVX512_BF16", "AMX"])
def test_capability_naming_bf16_is_fast(cpu, capability):
    cpu(capability)
    ok, why = fast.bf16_is_fast("cpu")
    assert ok and capability in why


def test_cpuinfo_parsing(tmp_path, monkeypatch):
    import builtins

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: real_open(info if f == "/proc/cpuinfo" else f, *a, **k))
    assert {"avx512_bf16", "amx_tile", "avx2"} <= fast._cpu_flags()
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (_ for _ in ()).throw(OSError("no /proc")))
    assert fast._cpu_flags() == set()


class _FakeCuda:
    def __init__(self, available=True, native=True, old_signature=False):
        self.available, self.native, self.old = available, native, old_signature

    def is_available(self):
        return self.available

    def get_device_name(self, dev=None):
        return "NVIDIA H200" if self.native else "Tesla V100"

    def get_device_capability(self, dev=None):
        return (9, 0) if self.native else (7, 0)

    def is_bf16_supported(self, *args, **kwargs):
        if self.old and kwargs:
            raise TypeError("unexpected keyword argument 'including_emulation'")
        if kwargs.get("including_emulation", True):
            return True  # emulation counts as "supported" by default: must not be trusted
        return self.native


@pytest.mark.parametrize("native,old", [(True, False), (False, False), (True, True)])
def test_cuda_branch(monkeypatch, native, old):
    monkeypatch.setattr(torch, "cuda", _FakeCuda(native=native, old_signature=old))
    ok, why = fast.bf16_is_fast(torch.device("cuda"))
    if old:  # no emulation argument: the old function answers for native support
        assert ok
    else:
        assert ok is native
        assert ("native bf16" in why) and (("no native" in why) is (not native))


def test_cuda_unavailable_and_other_devices(monkeypatch):
    monkeypatch.setattr(torch, "cuda", _FakeCuda(available=False))
    assert fast.bf16_is_fast(torch.device("cuda")) == (False, "CUDA is not available")
    ok, why = fast.bf16_is_fast(torch.device("mps"))
    assert not ok and "not measured" in why


def test_defaults_stay_fp32():
    """The gate is information only: no default uses bf16."""
    cfg = fast.FastTrainConfig()
    assert cfg.autocast is None and cfg.resolved(torch.device("cpu"))["autocast"] is None
