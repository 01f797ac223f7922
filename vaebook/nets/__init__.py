"""Encoder/decoder networks of the paper's appendices, one builder per architecture.

=================  ==============================================  ========  ======
name               paper                                           input     d_z
=================  ==============================================  ========  ======
``d1``             App. D.1 (Section 4/E, no BN, 4×4 kernels)      1×28×28   8
``mnist``          App. I.1 (InfoGAN-style, BN, 5×5 kernels)       1×28×28   16
``celeba64``       App. I.2                                        3×64×64   64
``celebahq128``    App. I.3                                        3×128×128 256
=================  ==============================================  ========  ======

Every builder returns ``(encoder, decoder)``: the encoder maps ``B×C×H×W`` to ``B×enc_out``
(``enc_out = 2·d_z`` for a diagonal Gaussian encoder: mean and log-variance), the decoder
maps ``B×d_z`` to *pre-activation* ``B×dec_channels×H×W``; the model applies the output
activation (a sigmoid for Gaussian means, none for logits or mixture parameters) and may
ask for extra channels (a variance head, mixture parameters).

Paddings are not printed in the paper; the ones below reproduce every listed shape
(``tests/test_nets.py`` walks each net and compares with the shapes printed in the paper).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    name: str
    image_shape: tuple[int, int, int]
    default_d_z: int
    builder: Callable[..., tuple[nn.Module, nn.Module]]
    paper_ref: str


ARCHITECTURES: dict[str, ArchSpec] = {}


def register_arch(name: str, image_shape: tuple[int, int, int], default_d_z: int, paper_ref: str):
    def deco(fn):
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} registered twice; give the new one another name")
        ARCHITECTURES[name] = ArchSpec(name, image_shape, default_d_z, fn, paper_ref)
        return fn

    return deco


def build_nets(arch: str, d_z: int | None = None, enc_out: int | None = None, dec_channels: int | None = None):
    """Build ``(encoder, decoder)`` for ``arch`` (see module table).

    ``enc_out`` defaults to ``2·d_z``; ``dec_channels`` defaults to the image channels.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    d_z = spec.default_d_z if d_z is None else int(d_z)
    enc_out = 2 * d_z if enc_out is None else int(enc_out)
    dec_channels = spec.image_shape[0] if dec_channels is None else int(dec_channels)
    if d_z <= 0 or enc_out <= 0 or dec_channels <= 0:
        raise ValueError(f"d_z, enc_out and dec_channels must be positive, got {d_z}, {enc_out}, {dec_channels}")
    return spec.builder(d_z=d_z, enc_out=enc_out, dec_channels=dec_channels)


class Reshape(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def _down(cin: int, cout: int, k: int, bn: bool) -> list[nn.Module]:
    """Stride-2 conv that halves H and W: padding (k-1)//2 gives ⌈H/2⌉ for k ∈ {4, 5}."""
    pad = 1 if k == 4 else 2
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride=2, padding=pad)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU())
    return layers


def _up(cin: int, cout: int, k: int, bn: bool, act: bool = True) -> list[nn.Module]:
    """Stride-2 transposed conv that doubles H and W (k=4: pad 1; k=5: pad 2, output_padding 1)."""
    if k == 4:
        conv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
    else:
        conv = nn.ConvTranspose2d(cin, cout, k, stride=2, padding=2, output_padding=1)
    layers: list[nn.Module] = [conv]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if act:
        layers.append(nn.ReLU())
    return layers


@register_arch("d1", (1, 28, 28), 8, "Appendix D.1")
def d1_nets(d_z: int, enc_out: int, dec_channels: int):
    """Section 4 / Appendix E nets: no batch-norm, 4×4 kernels, stride 2.

    The paper's text says d_z = 8 but draws the encoder head as FC_16 and the decoder input as
    z ∈ R^16; the printed numbers (Table E.8 KL at σz² = 10, gap ≈ 2·8·s²·ELS) fit d_z = 8, so
    ``d_z`` defaults to 8. The Section-4 encoder has one scalar σz², so it needs only the mean:
    pass ``enc_out=d_z``.
    """
    enc = nn.Sequential(
        *_down(1, 64, 4, bn=False),  # 64×14×14
        *_down(64, 128, 4, bn=False),  # 128×7×7
        nn.Flatten(),
        nn.Linear(128 * 7 * 7, 1024),
        nn.ReLU(),
        nn.Linear(1024, enc_out),
    )
    dec = nn.Sequential(
        nn.Linear(d_z, 1024),
        nn.ReLU(),
        nn.Linear(1024, 128 * 7 * 7),
        nn.ReLU(),
        Reshape(128, 7, 7),
        *_up(128, 64, 4, bn=False),  # 64×14×14
        *_up(64, dec_channels, 4, bn=False, act=False),  # C×28×28
    )
    return enc, dec


@register_arch("mnist", (1, 28, 28), 16, "Appendix I.1")
def mnist_nets(d_z: int, enc_out: int, dec_channels: int):
    """Appendix I.1 (InfoGAN-style, ReLU encoder, batch-norm, 5×5 stride-2 kernels).

    The last ConvT's kernel is not printed; it must double 14→28, so it is the same 5×5
    stride-2 layer as the others. As printed, the encoder has no BN after Conv_128.
    """
    enc = nn.Sequential(
        *_down(1, 64, 5, bn=False),  # 64×14×14
        *_down(64, 128, 5, bn=False),  # 128×7×7
        nn.Flatten(),
        nn.Linear(128 * 7 * 7, 1024),
        nn.BatchNorm1d(1024),
        nn.ReLU(),
        nn.Linear(1024, enc_out),
    )
    dec = nn.Sequential(
        nn.Linear(d_z, 1024),
        nn.BatchNorm1d(1024),
        nn.ReLU(),
        nn.Linear(1024, 128 * 7 * 7),
        nn.BatchNorm1d(128 * 7 * 7),
        nn.ReLU(),
        Reshape(128, 7, 7),
        *_up(128, 64, 5, bn=True),  # 64×14×14
        *_up(64, dec_channels, 5, bn=False, act=False),  # C×28×28
    )
    return enc, dec


def _celeba_like(size: int, d_z: int, enc_out: int, dec_channels: int):
    """Appendix I.2/I.3: four 5×5 stride-2 convs (128→1024 channels, BN after all but the first),
    FC head; decoder FC → three 5×5 stride-2 ConvTs (BN after the 2nd and 3rd) → a stride-1 ConvT.

    The final ConvT keeps the resolution (64→64 / 128→128), so it has stride 1; its kernel is
    not printed and we use 5×5 with padding 2. The FC layer after z has no BN or activation, as printed.
    """
    s = size // 16  # spatial size after four halvings: 4 (64) or 8 (128)
    enc = nn.Sequential(
        *_down(3, 128, 5, bn=False),
        *_down(128, 256, 5, bn=True),
        *_down(256, 512, 5, bn=True),
        *_down(512, 1024, 5, bn=True),
        nn.Flatten(),
        nn.Linear(1024 * s * s, enc_out),
    )
    dec = nn.Sequential(
        nn.Linear(d_z, 1024 * (2 * s) ** 2),
        Reshape(1024, 2 * s, 2 * s),
        *_up(1024, 512, 5, bn=False),
        *_up(512, 256, 5, bn=True),
        *_up(256, 128, 5, bn=True),
        nn.ConvTranspose2d(128, dec_channels, 5, stride=1, padding=2),
    )
    return enc, dec


@register_arch("celeba64", (3, 64, 64), 64, "Appendix I.2")
def celeba64_nets(d_z: int, enc_out: int, dec_channels: int):
    return _celeba_like(64, d_z, enc_out, dec_channels)


@register_arch("celebahq128", (3, 128, 128), 256, "Appendix I.3")
def celebahq128_nets(d_z: int, enc_out: int, dec_channels: int):
    """Appendix I.3. Its encoder header says x ∈ R^{64×64}, but the listed shapes (first conv output
    64×64) and the text (128×128 images) mean 128×128 input; we build for 128×128."""
    return _celeba_like(128, d_z, enc_out, dec_channels)


def layer_output_shapes(net: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """Run ``x`` through a ``nn.Sequential`` and list ``(layer class name, output shape without batch)``."""
    out = []
    h = x
    for layer in net:
        h = layer(h)
        out.append((type(layer).__name__, tuple(h.shape[1:])))
    return out
