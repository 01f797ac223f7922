"""Decoder variance Σx: four shapes (Table 2) × three ways to set it (fixed / trainable / MLE).

One protocol, :class:`DecoderVariance`; each shape is a small subclass registered once in
:data:`VARIANCES` under its paper name::

    iso-i   Σx = σx²·I              (one scalar)
    diag-i  Σx = diag(σx²)          (one variance per pixel, shared by all x)
    iso-d   Σx = σx²(x)·I           (one scalar per example)
    diag-d  Σx = diag(σx²(x))       (one variance per pixel per example)

and, beyond the paper, ``lowrank`` (:mod:`vaebook.variance.lowrank`): Σx = σ²I + UUᵀ with U ∈ ℝ^{d×r}
shared by all x, its PPCA maximum-likelihood estimate (``lowrank-r<k>`` builds rank k).

Modes:

* ``fixed``: a constant value (σx² = 1 is the conventional VAE; Table 1 sweeps it).
* ``trainable``: learned by gradient like any other parameter (Dai & Wipf): a log-variance
  parameter for the -I shapes; for the -D shapes a decoder output head (``head_channels``
  extra decoder channels: 1 for Iso-D, averaged over pixels; C for Diag-D).
* ``mle``: Σx replaced by its maximum-likelihood estimate on the current minibatch (Eq. 9a /
  G.4, G.7, G.11, G.15), giving the reconstruction objectives G.5, G.9, G.13, G.17 (Eq. 10);
  gradients flow through the estimate. ``eps`` (1e-6) is added to the estimated variance
  inside the logarithm for every shape except Iso-I, as Section 5.2 suggests.

Rescues (:mod:`vaebook.variance.rescue`, ours): ``rescue=`` changes how the objective trains (β-NLL, the faithful
split, an Iso-I warm-up) or floors Σx (a soft floor, a larger ε) against the heteroscedastic pitfall (a per-pixel Σx
trained by its own NLL can turn the output all black); the default here is ``"none"``, the paper's objective.

Units: ``forward`` returns the reconstruction objective Eq. (7b) *including* its constant
``(d_x/2)·ln 2π``, i.e. a Gaussian negative log-likelihood in nats per example (summed over
pixels, averaged over the minibatch and the z samples). For the MLE shapes the constant
``d_x/2`` of G.5–G.17 is included too, so the value is Eq. (7b) evaluated at Σ̂x.

Residual tensors: ``x`` is ``B×C×H×W``; ``mu`` is ``S×B×C×H×W`` for S samples z ~ q(z|x)
(expectations over q(z|x) use those samples, over p̃_data the minibatch). The shape hooks receive the
residuals r = x − μθ(z) themselves (not only r²), so a non-diagonal Σx is one more subclass overriding
``estimate`` / ``nll`` / ``mle_objective`` / ``broadcast`` (see :class:`DecoderVariance`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from torch import nn

from vaebook.checks import check_variance_args, check_variance_inputs

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
    """Protocol for a Σx parameterisation.

    Everything a model or an evaluation needs goes through the public methods :meth:`forward` (training
    objective), :meth:`eval_sigma2` and :meth:`log_prob` (evaluation), :meth:`current` (the fixed /
    trainable value). A shape subclass sets ``name``, ``dependent``, ``uses_eps`` and implements hooks
    that all receive **residuals** ``r = x − μθ(z)`` (``S×B×C×H×W``), so a non-diagonal Σx (e.g. a low-rank
    σ²I + UUᵀ, or a full covariance) is one subclass too:

    * :meth:`estimate` ``(r) → Σ̂x`` (Eq. 9a / G.1 restricted to the shape). The four diagonal shapes
      only implement the shortcut :meth:`mle` ``(r²)``, which the default :meth:`estimate` calls;
    * :meth:`param_shape` (shape of the stored fixed / running / trainable Σx),
      :meth:`expand` (per-pixel ``B×C×H×W`` form; diagonal shapes),
      :meth:`broadcast` (Σx → the form :meth:`nll` takes, broadcastable against ``r``);
    * :meth:`nll` ``(r, Σx)`` = −log N(r; 0, Σx) per example (Eq. 7b's integrand; default: diagonal);
    * :meth:`mle_objective` ``(Σ̂x, r)`` = Eq. (7b) at Σ̂x (default: the closed forms G.5/G.9/G.13/G.17);
    * :meth:`from_head` / :meth:`head_channels` for a trainable -D shape.
    """

    name: ClassVar[str] = ""
    dependent: ClassVar[bool] = False  # depends on x (the -D shapes)
    uses_eps: ClassVar[bool] = True  # ε inside the log (all but Iso-I)
    diagonal: ClassVar[bool] = True  # per-pixel variances (the rescues that weight or floor them need it)
    auto_rescue: ClassVar[bool] = False  # GaussianVAE(rescue="auto") gives it DEFAULT_RESCUE (per-pixel and -D)

    def __init__(self, x_shape: tuple[int, int, int], mode: str = "mle", value: float = 1.0, eps: float = 1e-6,
                 ema: float = 0.02, rescue=None):
        super().__init__()
        check_variance_args(type(self).__name__, x_shape, mode, value, eps, ema, MODES)
        self.x_shape = tuple(int(s) for s in x_shape)
        self.mode = mode
        self.eps = float(eps) if self.uses_eps else 0.0
        self.ema = float(ema)
        self.d_x = math.prod(self.x_shape)
        if mode == "trainable" and not self.dependent:
            self.log_sigma2 = nn.Parameter(torch.full(self.param_shape(), math.log(value)))
        else:
            self.register_buffer("fixed_sigma2", torch.full(self.param_shape(), float(value)))
        # running estimate (EMA over training steps) of the -I variances, used at evaluation
        # time when the MLE shape has no minibatch to estimate from (e.g. the IWAE NLL)
        self.register_buffer("running_sigma2", torch.full(self.param_shape(), float(value)))
        self.register_buffer("running_count", torch.zeros((), dtype=torch.long))
        self.set_rescue(rescue)

    def set_rescue(self, rescue=None) -> None:
        """Attach a rescue (:func:`vaebook.variance.rescue.build_rescue`: a name, ``"name:key=value"`` or an instance;
        ``None`` = ``"none"``), validated once; :attr:`rescue_spec` records it."""
        from vaebook.variance.rescue import build_rescue

        r = build_rescue(rescue)
        r.attach(self)
        self.rescue = r

    @property
    def rescue_spec(self) -> str:
        """The rescue this Σx trains with, as a canonical spec string (e.g. ``"none"``, ``"beta-nll:beta=1.0"``)."""
        return self.rescue.spec()

    # -- shape hooks ----------------------------------------------------------------------
    def param_shape(self) -> tuple[int, ...]:
        """Shape of the stored Σx (fixed value, running MLE, trainable log-variance)."""
        return ()

    def estimate(self, r: torch.Tensor) -> torch.Tensor:
        """Σ̂x from residuals ``r = x − μθ(z)`` (``S×B×C×H×W``): Eq. (9a), i.e. G.1 Σ̂x = E[r rᵀ] restricted
        to this shape. Default: the diagonal shortcut ``mle(r²)``; a non-diagonal Σx overrides this."""
        return self.mle(r ** 2)

    def mle(self, r2: torch.Tensor) -> torch.Tensor:
        """Diagonal shapes: Σ̂x from *squared* residuals ``S×B×C×H×W`` (G.4, G.7, G.11, G.15)."""
        raise NotImplementedError(f"{type(self).__name__} implements estimate(r), not the diagonal mle(r²)")

    def expand(self, sigma2: torch.Tensor, batch: int) -> torch.Tensor:
        """Broadcast ``sigma2`` (this shape's form) to per-pixel ``B×C×H×W`` (diagonal shapes)."""
        raise NotImplementedError

    def broadcast(self, sigma2: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``sigma2`` in this shape's form → the form :meth:`nll` takes; for the diagonal shapes per-pixel
        variances broadcastable against residuals ``like`` (``S×B×C×H×W``)."""
        if self.dependent and self.mode == "trainable":
            return sigma2 if sigma2.dim() == like.dim() else sigma2.reshape(*sigma2.shape, 1, 1, 1)
        return sigma2.reshape(*sigma2.shape, *([1] * (3 - sigma2.dim()))) if sigma2.dim() < 3 else sigma2

    def nll(self, r: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
        """−log N(r; 0, Σx) per leading index of ``r`` (``...×C×H×W`` → ``...``), ``sigma2`` as from
        :meth:`broadcast`: the integrand of Eq. (7b), ½[rᵀΣx⁻¹r + ln det Σx + d_x ln 2π]. Default: diagonal Σx."""
        return gaussian_nll(r ** 2, sigma2)

    def mle_objective(self, s2: torch.Tensor, r: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Eq. (7b) at Σ̂x (Eq. 10), i.e. G.5 / G.9 / G.13 / G.17 plus (d_x/2)·ln 2π: ½ Σ_pixels (1 + ln 2π +
        ln(σ̂² + ε)), averaged over examples for the -D shapes. The diagonal closed forms ignore ``r`` (the
        residuals ``S×B×C×H×W``); a shape without a closed form may evaluate ``self.nll(r, ·).mean()``."""
        per_pixel = self.expand(s2, 1) if not self.dependent else self.expand(s2, s2.shape[0])
        logs = torch.log(per_pixel + self.eps)
        return 0.5 * (self.d_x * (1.0 + LOG_2PI) + logs.flatten(1).sum(-1).mean())

    def from_head(self, head: torch.Tensor) -> torch.Tensor:
        """Variance from the decoder's extra channels (``...×h×H×W``, pre-activation log σ²)."""
        raise NotImplementedError

    def head_channels(self) -> int:
        """Extra decoder output channels this variance needs (trainable -D shapes only)."""
        return 0

    # -- the protocol -------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mu: torch.Tensor, head: Optional[torch.Tensor] = None) -> VarianceOutput:
        """Training objective Eq. (7b) for ``x`` (``B×C×H×W``) and decoder means ``mu`` (``S×B×C×H×W``).

        MLE: Σ̂x = :meth:`estimate` (r) (Eq. 9a), objective :meth:`mle_objective` (Eq. 10), gradients through
        the estimate; the -I shapes also update their running (EMA) Σ̂x in training mode. Otherwise
        :meth:`nll` at :meth:`current` (Eq. 7b). The rescue (:attr:`rescue_spec`) then turns this into the training
        objective (identity for ``"none"``)."""
        check_variance_inputs(type(self).__name__, self.x_shape, x, mu)
        if mu.dim() == x.dim():
            mu = mu.unsqueeze(0)
            head = None if head is None else head.unsqueeze(0)
        r = x.unsqueeze(0) - mu
        if self.mode == "mle":
            s2 = self.estimate(r)
            rec = self.mle_objective(s2, r)
            if self.training and not self.dependent:
                with torch.no_grad():  # EMA of the minibatch estimates, started at the first one
                    # no host sync (and vmap-friendly): weight 1 at the first estimate, then the EMA rate
                    w = torch.where(self.running_count == 0, torch.ones_like(self.running_sigma2),
                                    torch.full_like(self.running_sigma2, self.ema))
                    self.running_sigma2.lerp_(s2.detach().to(self.running_sigma2.dtype), w)
                    self.running_count += 1
            return VarianceOutput(self.rescue.objective(self, x, mu, r, s2, rec), s2.detach())
        s2 = self.current(head)
        rec = self.nll(r, self.broadcast(self.rescue.variance(self, s2), r)).mean()
        rec = self.rescue.objective(self, x, mu, r, s2, rec)
        return VarianceOutput(rec, s2.detach().squeeze(0) if self.dependent else s2.detach())

    def variance_for_objective(self, s2: torch.Tensor) -> torch.Tensor:
        """Σx (this shape's form) as the objective and evaluation use it: the rescue's floor / ε applied."""
        return self.rescue.variance(self, s2)

    def current(self, head: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The fixed or trainable Σx (its own shape; ``S×B...`` for the -D heads); for MLE the running Σ̂x."""
        if self.mode == "trainable":
            if self.dependent:
                if head is None:
                    raise ValueError(f"{self.name} with mode='trainable' needs the decoder's variance head")
                return self.from_head(head)
            return self.log_sigma2.exp()
        if self.mode == "fixed":
            return self.fixed_sigma2
        return self.running_sigma2

    @property
    def needs_recon(self) -> bool:
        """Whether :meth:`eval_sigma2` needs the reconstruction μθ(μφ(x)) (MLE -D shapes)."""
        return self.mode == "mle" and self.dependent

    def eval_sigma2(self, x: torch.Tensor, mu: torch.Tensor, head: Optional[torch.Tensor] = None,
                    recon: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The Σx used to evaluate p(x|z) outside training (IWAE NLL), in the form :meth:`log_prob` takes
        (diagonal shapes: per-pixel variances broadcastable to ``S×B×C×H×W``).

        fixed / trainable: :meth:`current` (the -D heads from ``head``). MLE -I shapes: the running (EMA)
        training estimate + ε. MLE -D shapes: the per-example estimate (G.7 / G.15) from the residual of the
        reconstruction ``recon`` = μθ(μφ(x)) of x itself, + ε (the reading Table 7's negative NLLs imply).
        """
        like = mu if mu.dim() == x.dim() + 1 else mu.unsqueeze(0)
        g = self.rescue.variance
        if self.mode != "mle":
            return self.broadcast(g(self, self.current(head)), like)
        if not self.dependent:
            return self.broadcast(g(self, self.running_sigma2 + self.eps), like)
        if recon is None:
            raise ValueError(f"{self.name} with mode='mle' needs recon = μθ(μφ(x)) to evaluate Σx (see needs_recon)")
        with torch.no_grad():
            s2 = g(self, self.estimate((x - recon).unsqueeze(0)) + self.eps)
        return self.broadcast(self.expand(s2, x.shape[0]).unsqueeze(0), like)

    def log_prob(self, x: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
        """log N(x; mu, Σx) for ``mu`` of shape ``K×B×C×H×W`` → ``K×B``; ``sigma2`` as from :meth:`eval_sigma2`."""
        return -self.nll(x.unsqueeze(0) - mu, sigma2)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, x_shape={self.x_shape}, eps={self.eps}, rescue={self.rescue_spec}"


VARIANCES: dict[str, type[DecoderVariance]] = {}
#: the paper's four shapes (Table 2), in name order; VARIANCES also holds ours (e.g. ``lowrank``)
PAPER_SHAPES = ("diag-d", "diag-i", "iso-d", "iso-i")


def register_variance(cls: type[DecoderVariance]) -> type[DecoderVariance]:
    """Class decorator: ``build_variance(cls.name, ...)`` then builds ``cls`` (``VARIANCES.pop(name)`` undoes it)."""
    if cls.name in VARIANCES and VARIANCES[cls.name] is not cls:
        raise ValueError(f"Σx name {cls.name!r} registered twice ({VARIANCES[cls.name].__qualname__}, "
                         f"{cls.__qualname__}); give the new class another `name`")
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

    def param_shape(self):
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
    auto_rescue = True  # per pixel and per example: the black trap (vaebook.variance.rescue); Iso-D shares one σ²(x)

    def mle(self, r2):
        return r2.mean(dim=0)

    def expand(self, sigma2, batch):
        return sigma2

    def head_channels(self):
        return self.x_shape[0] if self.mode == "trainable" else 0

    def from_head(self, head):
        return head.exp()


def build_variance(name: str, x_shape, mode: str = "mle", value: float = 1.0, eps: float = 1e-6,
                   rescue=None) -> DecoderVariance:
    """Construct a registered Σx parameterisation by its paper name (``iso-i``, ``diag-i``, ``iso-d``, ``diag-d``),
    or one of ours; a shape with a rank (``has_rank``) also takes ``<name>-r<k>`` (e.g. ``lowrank-r16``).
    ``rescue``: :mod:`vaebook.variance.rescue` (``None`` = ``"none"``, the paper's objective)."""
    key, kw = name.lower().replace("_", "-"), {}
    if key not in VARIANCES:
        base, sep, k = key.rpartition("-r")
        if sep and k.isdigit() and getattr(VARIANCES.get(base), "has_rank", False):
            key, kw = base, {"rank": int(k)}
    if key not in VARIANCES:
        ranked = [f"{n}-r<k>" for n, c in sorted(VARIANCES.items()) if getattr(c, "has_rank", False)]
        raise ValueError(f"unknown decoder variance {name!r}; choose one of {sorted(VARIANCES) + ranked}")
    return VARIANCES[key](x_shape, mode=mode, value=value, eps=eps, rescue=rescue, **kw)


from vaebook.variance.lowrank import LowRankI  # noqa: E402  (registers "lowrank": beyond the paper)
from vaebook.variance.rescue import DEFAULT_RESCUE, RESCUES, Rescue, build_rescue  # noqa: E402

__all__ = ["VARIANCES", "PAPER_SHAPES", "MODES", "DecoderVariance", "VarianceOutput", "build_variance", "gaussian_nll",
           "IsoI", "DiagI", "IsoD", "DiagD", "LowRankI", "register_variance",
           "RESCUES", "DEFAULT_RESCUE", "Rescue", "build_rescue"]
