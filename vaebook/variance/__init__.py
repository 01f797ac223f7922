"""Decoder variance Σx: four shapes (Table 2) × three ways to set it (fixed / trainable / MLE).

One protocol, :class:`DecoderVariance`; each shape is a small subclass registered once in
:data:`VARIANCES` under its paper name::

    iso-i   Σx = σx²·I              (one scalar)
    diag-i  Σx = diag(σx²)          (one variance per pixel, shared by all x)
    iso-d   Σx = σx²(x)·I           (one scalar per example)
    diag-d  Σx = diag(σx²(x))       (one variance per pixel per example)

Modes:

* ``fixed``: a constant value (σx² = 1 is the conventional VAE; Table 1 sweeps it).
* ``trainable``: learned by gradient like any other parameter (Dai & Wipf): a log-variance
  parameter for the -I shapes; for the -D shapes a decoder output head (``head_channels``
  extra decoder channels: 1 for Iso-D, averaged over pixels; C for Diag-D).
* ``mle``: Σx replaced by its maximum-likelihood estimate on the current minibatch (Eq. 9a /
  G.4, G.7, G.11, G.15), giving the reconstruction objectives G.5, G.9, G.13, G.17 (Eq. 10);
  gradients flow through the estimate. ``eps`` (1e-6) is added to the estimated variance
  inside the logarithm for every shape except Iso-I, as Section 5.2 suggests.

Units: ``forward`` returns the reconstruction objective Eq. (7b) *including* its constant
``(d_x/2)·ln 2π``, i.e. a Gaussian negative log-likelihood in nats per example (summed over
pixels, averaged over the minibatch and the z samples). For the MLE shapes the constant
``d_x/2`` of G.5–G.17 is included too, so the value is Eq. (7b) evaluated at Σ̂x.

Residual tensors: ``x`` is ``B×C×H×W``; ``mu`` is ``S×B×C×H×W`` for S samples z ~ q(z|x)
(expectations over q(z|x) use those samples, over p̃_data the minibatch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from torch import nn

MODES = ("fixed", "trainable", "mle")
LOG_2PI = math.log(2 * math.pi)


@dataclass
class VarianceOutput:
    """Reconstruction objective (scalar, nats/example) and the Σx it implies (detached).

    ``sigma2`` shapes: iso-i ``()``, diag-i ``C×H×W``, iso-d ``B``, diag-d ``B×C×H×W``.
    """

    rec: torch.Tensor
    sigma2: torch.Tensor


def gaussian_nll(r2: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """½ Σ_pixels [r²/σ² + ln σ² + ln 2π] per leading index (r2 is ``...×C×H×W``)."""
    sigma2 = sigma2.expand_as(r2)
    return 0.5 * (r2 / sigma2 + sigma2.log() + LOG_2PI).flatten(-3).sum(-1)


class DecoderVariance(nn.Module):
    """Protocol for a Σx parameterisation. Subclasses define ``name``, ``dependent`` and
    :meth:`mle` (the MLE value Σ̂x from squared residuals) and :meth:`expand` (per-pixel form)."""

    name: ClassVar[str] = ""
    dependent: ClassVar[bool] = False  # depends on x (the -D shapes)
    uses_eps: ClassVar[bool] = True  # ε inside the log (all but Iso-I)

    def __init__(self, x_shape: tuple[int, int, int], mode: str = "mle", value: float = 1.0, eps: float = 1e-6,
                 ema: float = 0.02):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown variance mode {mode!r}; choose one of {MODES}")
        if not value > 0:
            raise ValueError(f"the decoder variance must be positive, got value={value}")
        self.x_shape = tuple(int(s) for s in x_shape)
        self.mode = mode
        self.eps = float(eps) if self.uses_eps else 0.0
        self.ema = float(ema)
        self.d_x = math.prod(self.x_shape)
        if mode == "trainable" and not self.dependent:
            self.log_sigma2 = nn.Parameter(torch.full(self._param_shape(), math.log(value)))
        else:
            self.register_buffer("fixed_sigma2", torch.full(self._param_shape(), float(value)))
        # running estimate (EMA over training steps) of the -I variances, used at evaluation
        # time when the MLE shape has no minibatch to estimate from (e.g. the IWAE NLL)
        self.register_buffer("running_sigma2", torch.full(self._param_shape(), float(value)))
        self.register_buffer("running_count", torch.zeros((), dtype=torch.long))

    # -- shape-specific ---------------------------------------------------------------
    def _param_shape(self) -> tuple[int, ...]:
        return ()

    def mle(self, r2: torch.Tensor) -> torch.Tensor:
        """Σ̂x from squared residuals ``S×B×C×H×W`` (Eq. 9a restricted to this shape)."""
        raise NotImplementedError

    def expand(self, sigma2: torch.Tensor, batch: int) -> torch.Tensor:
        """Broadcast ``sigma2`` (this shape's form) to ``B×C×H×W`` (or ``S×B×...``)."""
        raise NotImplementedError

    def from_head(self, head: torch.Tensor) -> torch.Tensor:
        """Variance from the decoder's extra channels (``...×h×H×W``, pre-activation log σ²)."""
        raise NotImplementedError

    def head_channels(self) -> int:
        """Extra decoder output channels this variance needs (trainable -D shapes only)."""
        return 0

    # -- the protocol -------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mu: torch.Tensor, head: Optional[torch.Tensor] = None) -> VarianceOutput:
        if mu.dim() == x.dim():
            mu = mu.unsqueeze(0)
            head = None if head is None else head.unsqueeze(0)
        r2 = (x.unsqueeze(0) - mu) ** 2
        if self.mode == "mle":
            s2 = self.mle(r2)
            rec = self.mle_objective(s2)
            if self.training and not self.dependent:
                with torch.no_grad():  # EMA of the minibatch estimates, started at the first one
                    # no host sync (and vmap-friendly): weight 1 at the first estimate, then the EMA rate
                    w = torch.where(self.running_count == 0, torch.ones_like(self.running_sigma2),
                                    torch.full_like(self.running_sigma2, self.ema))
                    self.running_sigma2.lerp_(s2.detach().to(self.running_sigma2.dtype), w)
                    self.running_count += 1
            return VarianceOutput(rec, s2.detach())
        s2 = self.current(head)
        rec = gaussian_nll(r2, self._broadcast(s2, r2)).mean()
        return VarianceOutput(rec, s2.detach().squeeze(0) if self.dependent else s2.detach())

    def mle_objective(self, s2: torch.Tensor) -> torch.Tensor:
        """Eq. (7b) at Σ̂x, i.e. G.5 / G.9 / G.13 / G.17 plus (d_x/2)·ln 2π: ½ Σ_pixels (1 + ln 2π + ln(σ̂² + ε)),
        averaged over examples for the -D shapes."""
        per_pixel = self.expand(s2, 1) if not self.dependent else self.expand(s2, s2.shape[0])
        logs = torch.log(per_pixel + self.eps)
        return 0.5 * (self.d_x * (1.0 + LOG_2PI) + logs.flatten(1).sum(-1).mean())

    def current(self, head: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The fixed or trainable Σx (its own shape; ``S×B...`` for the -D heads)."""
        if self.mode == "trainable":
            if self.dependent:
                if head is None:
                    raise ValueError(f"{self.name} with mode='trainable' needs the decoder's variance head")
                return self.from_head(head)
            return self.log_sigma2.exp()
        if self.mode == "fixed":
            return self.fixed_sigma2
        return self.running_sigma2

    def _broadcast(self, s2: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        """``s2`` in this shape's form → broadcastable against ``r2`` (``S×B×C×H×W``)."""
        if self.dependent and self.mode == "trainable":
            return s2 if s2.dim() == r2.dim() else s2.reshape(*s2.shape, 1, 1, 1)
        return s2.reshape(*s2.shape, *([1] * (3 - s2.dim()))) if s2.dim() < 3 else s2

    def log_prob(self, x: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
        """log N(x; mu, Σx) summed over pixels for ``mu`` of shape ``K×B×C×H×W``; ``sigma2`` broadcastable."""
        r2 = (x.unsqueeze(0) - mu) ** 2
        return -gaussian_nll(r2, sigma2.expand_as(r2) if sigma2.dim() == r2.dim() else sigma2)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, x_shape={self.x_shape}, eps={self.eps}"


VARIANCES: dict[str, type[DecoderVariance]] = {}


def register_variance(cls: type[DecoderVariance]) -> type[DecoderVariance]:
    VARIANCES[cls.name] = cls
    return cls


@register_variance
class IsoI(DecoderVariance):
    """Σx = σx²·I. MLE (G.4): σ̂x² = E‖x − μθ(z)‖²/d_x over batch and samples; objective G.5 (no ε)."""

    name = "iso-i"
    uses_eps = False

    def mle(self, r2):
        return r2.mean()

    def expand(self, sigma2, batch):
        return sigma2.reshape(1, 1, 1, 1).expand(batch, *self.x_shape)


@register_variance
class DiagI(DecoderVariance):
    """Σx = diag(σx²) shared by all x. MLE (G.11): σ̂²_i = E(x_i − μθ,i(z))² over batch and samples; objective G.13."""

    name = "diag-i"

    def _param_shape(self):
        return self.x_shape

    def mle(self, r2):
        return r2.mean(dim=(0, 1))

    def expand(self, sigma2, batch):
        return sigma2.unsqueeze(0).expand(batch, *self.x_shape)


@register_variance
class IsoD(DecoderVariance):
    """Σx = σx²(x)·I. MLE (G.7): σ̂²(x) = E_q ‖x − μθ(z)‖²/d_x per example; objective G.9.

    Trainable: one extra decoder channel, averaged over pixels, is log σ²(z).
    """

    name = "iso-d"
    dependent = True

    def mle(self, r2):
        return r2.mean(dim=0).flatten(1).mean(-1)

    def expand(self, sigma2, batch):
        return sigma2.reshape(-1, 1, 1, 1).expand(sigma2.shape[0], *self.x_shape)

    def head_channels(self):
        return 1 if self.mode == "trainable" else 0

    def from_head(self, head):
        return head.flatten(-3).mean(-1).exp()


@register_variance
class DiagD(DecoderVariance):
    """Σx = diag(σx²(x)). MLE (G.15): σ̂²_i(x) = E_q (x_i − μθ,i(z))² per example and pixel; objective G.17.

    Trainable: C extra decoder channels are the per-pixel log σ²(z).
    """

    name = "diag-d"
    dependent = True

    def mle(self, r2):
        return r2.mean(dim=0)

    def expand(self, sigma2, batch):
        return sigma2

    def head_channels(self):
        return self.x_shape[0] if self.mode == "trainable" else 0

    def from_head(self, head):
        return head.exp()


def build_variance(name: str, x_shape, mode: str = "mle", value: float = 1.0, eps: float = 1e-6) -> DecoderVariance:
    """Construct a registered Σx parameterisation by its paper name (``iso-i``, ``diag-i``, ``iso-d``, ``diag-d``)."""
    key = name.lower().replace("_", "-")
    if key not in VARIANCES:
        raise ValueError(f"unknown decoder variance {name!r}; choose one of {sorted(VARIANCES)}")
    return VARIANCES[key](x_shape, mode=mode, value=value, eps=eps)


__all__ = ["VARIANCES", "MODES", "DecoderVariance", "VarianceOutput", "build_variance", "gaussian_nll",
           "IsoI", "DiagI", "IsoD", "DiagD", "register_variance"]
