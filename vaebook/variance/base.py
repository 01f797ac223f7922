"""The Σx protocol: :class:`DecoderVariance` (the hooks a shape implements), its registry :data:`VARIANCES`,
:func:`register_variance` and :func:`build_variance`. The shapes themselves live in :mod:`vaebook.variance`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from torch import nn

from vaebook.checks import check_variance_args, check_variance_inputs
from vaebook.variance.rescue import build_rescue

MODES = ("fixed", "trainable", "mle")
LOG_2PI = math.log(2 * math.pi)
#: hooks a non-diagonal Σx (``diagonal = False``) must override (and ``estimate`` where it supports ``mle``): their
#: defaults read Σx as per-pixel variances
SHAPE_HOOKS = ("param_shape", "initial", "add_eps", "marginal", "logdet", "mahalanobis")


@dataclass
class VarianceOutput:
    """Reconstruction objective (scalar, nats/example) and the per-pixel σx² it implies (detached): :meth:`marginal`
    of Σx. Shapes: iso-i ``()``, diag-i ``C×H×W``, iso-d ``B``, diag-d ``B×C×H×W``; non-diagonal ``C×H×W`` (-I)."""

    rec: torch.Tensor
    sigma2: torch.Tensor


def gaussian_nll(r2: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """½ Σ_pixels [r²/σ² + ln σ² + ln 2π] per leading index (r2 is ``...×C×H×W``)."""
    sigma2 = sigma2.expand_as(r2)
    return 0.5 * (r2 / sigma2 + sigma2.log() + LOG_2PI).flatten(-3).sum(-1)


class DecoderVariance(nn.Module):
    """Protocol for a Σx parameterisation p(x|z) = N(μθ(z), Σx) (Eq. 2; Table 2's shapes and ours).

    Models and evaluations use only :meth:`forward` (training objective Eq. 7b, for MLE Eq. 10), :meth:`eval_sigma2`
    and :meth:`log_prob` (evaluation), :meth:`current` (the per-pixel σx² pages report). Each shape stores Σx in its
    own *form* (``param_shape``: a scalar, per-pixel variances, 4×4 blocks, a low-rank factor, ...), and the
    protocol reaches that form only through the hooks below, which all take residuals ``r = x − μθ(z)``
    (``S×B×C×H×W``, or any leading dims broadcasting with the form's).

    Class attributes: ``name`` (registry key), ``dependent`` (Σx depends on x: the -D shapes), ``uses_eps``
    (ε inside the logarithm, Sec. 5.2; all paper shapes but Iso-I), ``diagonal`` (the form is per-pixel variances),
    ``modes`` (``None``: all three for a diagonal Σx, ``("fixed", "mle")`` otherwise), ``auto_rescue``.

    **Hooks a non-diagonal Σx must override** (``diagonal = False``; the defaults read the form as per-pixel
    variances, and a subclass missing one is refused when the class is defined):

    * :meth:`param_shape` — shape of the stored form (fixed value, running MLE);
    * :meth:`estimate` ``(r) → Σ̂x`` — Eq. (9a), i.e. G.1's Σ̂x = E[r rᵀ] restricted to the shape (``mle`` mode);
    * :meth:`initial` ``(value) → value·I`` in the form — the Σx before any data (fixed mode; the running MLE's
      start, used by an evaluation before training); positive definite from the first step;
    * :meth:`add_eps` ``(Σx, ε) → Σx + εI`` — Sec. 5.2's ε on the *diagonal* (inside G.5–G.17's logarithm);
    * :meth:`marginal` ``(Σx) → diag Σx`` per pixel (``C×H×W``, ``B×C×H×W`` for -D): what pages report as σx²;
    * :meth:`logdet` ``(Σx) → ln det Σx`` per leading index (Eq. 7b's ½ ln det Σx term);
    * :meth:`mahalanobis` ``(r, Σx) → rᵀΣx⁻¹r`` per leading index of ``r`` (Eq. 7b's quadratic term).

    **Optional overrides**: :meth:`nll` (default ½[rᵀΣx⁻¹r + ln det Σx + d_x ln 2π] from the two hooks above;
    the diagonal shapes keep the fused :func:`gaussian_nll`); :meth:`mle_objective` (default: Eq. 10's closed
    form ½[d_x(1 + ln 2π) + ln det(Σ̂x + εI)], G.5/G.9/G.13/G.17, which holds when :meth:`estimate` is the
    exact minibatch MLE of a shape closed under scaling, so that E[rᵀΣ̂x⁻¹r] = d_x; a running or approximate estimate
    returns ``self.nll(r, Σ̂x).mean()``); :meth:`broadcast` (default: identity for a non-diagonal form);
    :meth:`from_head` / :meth:`head_channels` (a trainable -D shape). The diagonal shapes implement only :meth:`mle`
    ``(r²)`` and :meth:`expand` (their form → ``B×C×H×W``) and inherit the rest.

    :func:`vaebook.variance.conformance.check_variance` checks every hook of a shape against
    ``torch.distributions.MultivariateNormal`` on a small image (``tests/test_variance_conformance.py`` runs it on
    every registered shape in every mode) and names the hook that is wrong.
    """

    name: ClassVar[str] = ""
    dependent: ClassVar[bool] = False  # depends on x (the -D shapes)
    uses_eps: ClassVar[bool] = True  # ε inside the log (all but Iso-I)
    diagonal: ClassVar[bool] = True  # per-pixel variances (the rescues that weight or floor them need it)
    modes: ClassVar[Optional[tuple]] = None  # None: MODES if diagonal, else ("fixed", "mle")
    auto_rescue: ClassVar[bool] = False  # GaussianVAE(rescue="auto") gives it DEFAULT_RESCUE (per-pixel and -D)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.diagonal:
            return
        need = SHAPE_HOOKS + (("estimate",) if "mle" in cls.supported_modes() else ())
        missing = [h for h in need if getattr(cls, h) is getattr(DecoderVariance, h)]
        if missing:
            raise TypeError(f"{cls.__name__} sets diagonal = False, so it must override the hooks {missing} (their "
                            "defaults read Σx as per-pixel variances). Fix: implement them as DecoderVariance's "
                            "docstring says (examples: vaebook/variance/lowrank.py, the README's block-diagonal Σx).")

    @classmethod
    def supported_modes(cls) -> tuple:
        """The modes this shape can be built in (``modes``, or its default)."""
        return tuple(cls.modes) if cls.modes is not None else (MODES if cls.diagonal else ("fixed", "mle"))

    def __init__(self, x_shape: tuple[int, int, int], mode: str = "mle", value: float = 1.0, eps: float = 1e-6,
                 ema: float = 0.02, rescue=None):
        super().__init__()
        check_variance_args(type(self).__name__, x_shape, mode, value, eps, ema, self.supported_modes())
        self.x_shape = tuple(int(s) for s in x_shape)
        self.mode = mode
        self.eps = float(eps) if self.uses_eps else 0.0
        self.ema = float(ema)
        self.d_x = math.prod(self.x_shape)
        if self.diagonal and tuple(self.param_shape()) not in ((), self.x_shape):
            raise TypeError(f"{type(self).__name__}.param_shape() = {tuple(self.param_shape())}; a diagonal Σx "
                            f"stores () or x_shape = {self.x_shape}. Fix: a Σx that is not per-pixel variances sets "
                            f"diagonal = False and overrides the hooks {list(SHAPE_HOOKS) + ['estimate']}.")
        init = self.initial(float(value))
        if mode == "trainable" and not self.dependent:
            self.log_sigma2 = nn.Parameter(torch.full(self.param_shape(), math.log(value)))
        else:
            self.register_buffer("fixed_sigma2", init.clone())
        # running estimate (EMA over training steps) of the -I variances, used at evaluation
        # time when the MLE shape has no minibatch to estimate from (e.g. the IWAE NLL)
        self.register_buffer("running_sigma2", init.clone())
        self.register_buffer("running_count", torch.zeros((), dtype=torch.long))
        self.set_rescue(rescue)

    def set_rescue(self, rescue=None) -> None:
        """Attach a rescue (:func:`vaebook.variance.rescue.build_rescue`: a name, ``"name:key=value"`` or an instance;
        ``None`` = ``"none"``), validated once; :attr:`rescue_spec` records it."""
        r = build_rescue(rescue)
        r.attach(self)
        self.rescue = r

    @property
    def rescue_spec(self) -> str:
        """The rescue this Σx trains with, as a canonical spec string (e.g. ``"none"``, ``"beta-nll:beta=1.0"``)."""
        return self.rescue.spec()

    # -- shape hooks (defaults: a diagonal Σx whose form is per-pixel variances) -------------------------------
    def param_shape(self) -> tuple[int, ...]:
        """Shape of the stored Σx (fixed value, running MLE, trainable log-variance)."""
        return ()

    def initial(self, value: float) -> torch.Tensor:
        """Σx = value·I in this shape's form (``param_shape``): the fixed Σx and the running MLE's start."""
        return torch.full(self.param_shape(), float(value))

    def estimate(self, r: torch.Tensor) -> torch.Tensor:
        """Σ̂x from residuals ``r = x − μθ(z)`` (``S×B×C×H×W``): Eq. (9a), i.e. G.1 Σ̂x = E[r rᵀ] restricted
        to this shape. Default: the diagonal shortcut ``mle(r²)``; a non-diagonal Σx overrides this."""
        return self.mle(r ** 2)

    def mle(self, r2: torch.Tensor) -> torch.Tensor:
        """Diagonal shapes: Σ̂x from *squared* residuals ``S×B×C×H×W`` (G.4, G.7, G.11, G.15)."""
        raise NotImplementedError(f"{type(self).__name__} implements estimate(r), not the diagonal mle(r²)")

    def add_eps(self, sigma2: torch.Tensor, eps: float) -> torch.Tensor:
        """Σx + εI in this shape's form (ε on the diagonal only; Sec. 5.2, the ε of G.9/G.13/G.17)."""
        return sigma2 + eps

    def marginal(self, sigma2: torch.Tensor) -> torch.Tensor:
        """diag Σx, the per-pixel marginal variance (what pages report as σx²): ``C×H×W`` (``B×C×H×W`` for -D);
        a diagonal shape returns its form itself (``()``, ``B``: one σx² for every pixel)."""
        return sigma2

    def logdet(self, sigma2: torch.Tensor) -> torch.Tensor:
        """ln det Σx per leading index of the form (``sigma2`` as :meth:`broadcast` gives it): Eq. (7b)'s term."""
        p = self._pixels(sigma2)
        return torch.log(p).expand(*p.shape[:-3], *self.x_shape).flatten(-3).sum(-1)

    def mahalanobis(self, r: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
        """rᵀΣx⁻¹r per leading index of ``r`` (``...×C×H×W`` → ``...``; ``sigma2`` as from :meth:`broadcast`)."""
        return (r ** 2 / self._pixels(sigma2)).flatten(-3).sum(-1)

    def expand(self, sigma2: torch.Tensor, batch: int) -> torch.Tensor:
        """Broadcast ``sigma2`` (this shape's form) to per-pixel ``B×C×H×W`` (diagonal shapes)."""
        raise NotImplementedError

    def broadcast(self, sigma2: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``sigma2`` in this shape's form → the form :meth:`nll` takes; for the diagonal shapes per-pixel
        variances broadcastable against residuals ``like`` (``S×B×C×H×W``); a non-diagonal form as it is."""
        return self._pixels(sigma2) if self.diagonal else sigma2

    def nll(self, r: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
        """−log N(r; 0, Σx) per leading index of ``r`` (``...×C×H×W`` → ``...``), ``sigma2`` as from
        :meth:`broadcast`: the integrand of Eq. (7b), ½[rᵀΣx⁻¹r + ln det Σx + d_x ln 2π]."""
        if self.diagonal:
            return gaussian_nll(r ** 2, sigma2)  # the same sum, fused (bit-identical to earlier revisions)
        return 0.5 * (self.mahalanobis(r, sigma2) + self.logdet(sigma2) + self.d_x * LOG_2PI)

    def mle_objective(self, s2: torch.Tensor, r: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Eq. (7b) at Σ̂x (Eq. 10), i.e. G.5 / G.9 / G.13 / G.17 plus (d_x/2)·ln 2π: ½[d_x(1 + ln 2π) +
        ln det(Σ̂x + εI)], averaged over examples for the -D shapes. The closed forms ignore ``r`` (the residuals
        ``S×B×C×H×W``); a shape whose Σ̂x is not the minibatch's exact MLE returns ``self.nll(r, Σ̂x).mean()``."""
        if not self.diagonal:
            return 0.5 * (self.d_x * (1.0 + LOG_2PI) + self.logdet(self.add_eps(s2, self.eps)).mean())
        per_pixel = self.expand(s2, 1) if not self.dependent else self.expand(s2, s2.shape[0])
        logs = torch.log(per_pixel + self.eps)
        return 0.5 * (self.d_x * (1.0 + LOG_2PI) + logs.flatten(1).sum(-1).mean())

    def from_head(self, head: torch.Tensor) -> torch.Tensor:
        """Variance from the decoder's extra channels (``...×h×H×W``, pre-activation log σ²)."""
        raise NotImplementedError

    def head_channels(self) -> int:
        """Extra decoder output channels this variance needs (trainable -D shapes only)."""
        return 0

    def _pixels(self, s: torch.Tensor) -> torch.Tensor:
        """Per-pixel variances in a diagonal form, broadcastable against ``...×C×H×W`` (per-example scalars get
        three trailing singleton dims)."""
        if s.dim() >= 3 and all(a in (1, b) for a, b in zip(s.shape[-3:], self.x_shape)):
            return s
        return s.reshape(*s.shape, 1, 1, 1)

    def pixel_variance(self, sigma2: torch.Tensor) -> torch.Tensor:
        """:meth:`marginal` of any form of Σx, broadcastable against ``...×C×H×W`` (the σx² a page reports)."""
        return self._pixels(self.marginal(sigma2))

    # -- the protocol -------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mu: torch.Tensor, head: Optional[torch.Tensor] = None) -> VarianceOutput:
        """Training objective Eq. (7b) for ``x`` (``B×C×H×W``) and decoder means ``mu`` (``S×B×C×H×W``).

        MLE: Σ̂x = :meth:`estimate` (r) (Eq. 9a), objective :meth:`mle_objective` (Eq. 10), gradients through
        the estimate; the -I shapes also update their running (EMA) Σ̂x in training mode. Otherwise
        :meth:`nll` at :meth:`sigma_x` (Eq. 7b). The rescue (:attr:`rescue_spec`) then turns this into the training
        objective (identity for ``"none"``). The output's ``sigma2`` is :meth:`marginal` of Σx."""
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
            return VarianceOutput(self.rescue.objective(self, x, mu, r, s2, rec), self.marginal(s2.detach()))
        s2 = self.sigma_x(head)
        rec = self.nll(r, self.broadcast(self.rescue.variance(self, s2), r)).mean()
        rec = self.rescue.objective(self, x, mu, r, s2, rec)
        return VarianceOutput(rec, self.marginal(s2.detach().squeeze(0) if self.dependent else s2.detach()))

    def variance_for_objective(self, s2: torch.Tensor) -> torch.Tensor:
        """Σx (this shape's form) as the objective and evaluation use it: the rescue's floor / ε applied."""
        return self.rescue.variance(self, s2)

    def sigma_x(self, head: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Σx in this shape's form: the fixed or trainable value (``S×B...`` for the -D heads); for MLE the running
        Σ̂x (the -I shapes' EMA of training estimates)."""
        if self.mode == "trainable":
            if self.dependent:
                if head is None:
                    raise ValueError(f"{self.name} with mode='trainable' needs the decoder's variance head")
                return self.from_head(head)
            return self.log_sigma2.exp()
        if self.mode == "fixed":
            return self.fixed_sigma2
        return self.running_sigma2

    def current(self, head: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The per-pixel σx² (:meth:`marginal`) of :meth:`sigma_x`: what pages report."""
        return self.marginal(self.sigma_x(head))

    @property
    def needs_recon(self) -> bool:
        """Whether :meth:`eval_sigma2` needs the reconstruction μθ(μφ(x)) (MLE -D shapes)."""
        return self.mode == "mle" and self.dependent

    def eval_sigma2(self, x: torch.Tensor, mu: torch.Tensor, head: Optional[torch.Tensor] = None,
                    recon: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The Σx used to evaluate p(x|z) outside training (IWAE NLL), in the form :meth:`log_prob` takes
        (diagonal shapes: per-pixel variances broadcastable to ``S×B×C×H×W``; :meth:`pixel_variance` of it is σx²).

        fixed / trainable: :meth:`sigma_x` (the -D heads from ``head``). MLE -I shapes: the running (EMA)
        training estimate + εI. MLE -D shapes: the per-example estimate (G.7 / G.15) from the residual of the
        reconstruction ``recon`` = μθ(μφ(x)) of x itself, + εI (the reading Table 7's negative NLLs imply).
        """
        like = mu if mu.dim() == x.dim() + 1 else mu.unsqueeze(0)
        g = self.rescue.variance
        if self.mode != "mle":
            return self.broadcast(g(self, self.sigma_x(head)), like)
        if not self.dependent:
            return self.broadcast(g(self, self.add_eps(self.running_sigma2, self.eps)), like)
        if recon is None:
            raise ValueError(f"{self.name} with mode='mle' needs recon = μθ(μφ(x)) to evaluate Σx (see needs_recon)")
        with torch.no_grad():
            s2 = g(self, self.add_eps(self.estimate((x - recon).unsqueeze(0)), self.eps))
        s2 = self.expand(s2, x.shape[0]) if self.diagonal else s2
        return self.broadcast(s2.unsqueeze(0), like)

    def log_prob(self, x: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
        """log N(x; mu, Σx) for ``mu`` of shape ``K×B×C×H×W`` → ``K×B``; ``sigma2`` as from :meth:`eval_sigma2`."""
        return -self.nll(x.unsqueeze(0) - mu, sigma2)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, x_shape={self.x_shape}, eps={self.eps}, rescue={self.rescue_spec}"


VARIANCES: dict[str, type[DecoderVariance]] = {}
#: the paper's four shapes (Table 2), in name order; VARIANCES also holds ours (e.g. ``lowrank``)
PAPER_SHAPES = ("diag-d", "diag-i", "iso-d", "iso-i")


def register_variance(cls: type[DecoderVariance]) -> type[DecoderVariance]:
    """Class decorator: ``build_variance(cls.name, ...)`` then builds ``cls`` (``VARIANCES.pop(name)`` undoes it).
    Refuses a name already taken by another class."""
    if not (isinstance(cls, type) and issubclass(cls, DecoderVariance)):
        raise TypeError(f"register_variance: argument {cls!r}; expected a DecoderVariance subclass. "
                        "Fix: decorate the Σx class itself.")
    name = cls.name
    if not name or name != name.lower().replace("_", "-"):
        raise ValueError(f"register_variance: {cls.__name__}.name = {name!r}; expected a non-empty lower-case name "
                         "with '-' for '_' (build_variance looks names up that way). Fix: e.g. name = 'block2x2'.")
    old = VARIANCES.get(name)
    if old is not None and old is not cls:
        raise ValueError(f"register_variance: Σx name {name!r} registered twice: it is already taken by {old.__module__}."
                         f"{old.__qualname__}; expected a new name for {cls.__module__}.{cls.__qualname__}. "
                         f"Fix: choose another name, or VARIANCES.pop({name!r}) first to replace it on purpose.")
    VARIANCES[name] = cls
    return cls


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


__all__ = ["MODES", "LOG_2PI", "SHAPE_HOOKS", "VarianceOutput", "gaussian_nll", "DecoderVariance", "VARIANCES",
           "PAPER_SHAPES", "register_variance", "build_variance"]
