"""Rescues: options of the Σx protocol against the heteroscedastic-Gaussian pitfall (ours; the paper has none).

The pitfall. Trained by its own objective, a per-pixel, input-dependent Σx (Diag-D, G.17: ½ Σ_pixels ln(σ̂² + ε)
per example, σ̂² = r² for one z sample) pulls each pixel's mean with force |∂/∂μ| = |r|/(r² + ε): the *smaller* the
residual the harder, up to 1/(2√ε) = 500 at |r| = √ε. MNIST's background pixels are exact zeros, so from random
initialisation the fastest win is an all-black output (every background pixel earns ½ ln ε); the saturated sigmoid
then has no gradient left and the output stays black (``tests/test_variance_rescue_trap.py`` measures it). The same
1/σ² weighting lets the mean give up wherever the variance can grow. The heteroscedastic-regression literature
measured this and proposed the fixes below; each is one :class:`Rescue`, registered in :data:`RESCUES` under its
name, passed as ``rescue=`` to :func:`~vaebook.variance.build_variance` or to
:class:`~vaebook.models.vae.GaussianVAE` (``build_model(..., rescue=...)``), and usable with every paper shape in
every mode (``beta-nll``, ``floor`` and ``eps`` need a diagonal Σx):

==========  =====================================================================  ==================================
name        what changes                                                           source
==========  =====================================================================  ==================================
none        nothing: Eq. (7b), for MLE Eq. (10) / G.5–G.17 (the paper)             Takida et al. 2022
warmup      the first ``steps`` training steps use Iso-I's MLE objective (G.5)      ours; mean first as in Detlefsen
                                                                                   et al. 2019
beta-nll    each pixel's term weighted by stop-grad(σ²)^β: gradient = NLL's ×σ^{2β}  Seitzer et al. 2022 (ICLR)
faithful    mean by the unit-variance objective ½‖r‖² (or G.5: ``mean=iso-i``, the    Stirn et al. 2023 (AISTATS);
            default for Diag-D); variance by its NLL at stop-grad(μ)              ``iso-i`` ours
floor       σ → σ + σ_min, i.e. ln σ → softclip(ln σ, ln σ_min)                      Rybkin et al. 2021 (σ-VAE)
eps         ε replaced (MLE: inside the log; trainable/fixed: σ² → σ² + ε)          Sec. 5.2's ε, larger
==========  =====================================================================  ==================================

``beta-nll`` and ``faithful`` change only the gradient: the value they return is the plain objective (so the
logged ``rec`` stays Eq. 7b in nats and is comparable across rescues). ``floor`` and ``eps`` change Σx itself
(training objective *and* the Σx used at evaluation). ``warmup`` returns the Iso-I value during its steps.

ε and 8-bit data: pixels are multiples of 1/255, so the paper's ε = 1e-6 is a standard deviation of 1e-3 ≈ 0.26 of
one quantisation step; it is close to (1/255)²/12 = 1.28e-6, the variance of uniform dequantisation noise over one
step. A Gaussian of variance ε on an exact pixel has density 1/√(2πε) ≈ 399, above the 255 a density of 8-bit data
spread over its bins can reach: ε = 1e-6 lets a pixel claim more than its quantisation allows. ``eps`` defaults to
(1/255)² ≈ 1.54e-5 (one step as a standard deviation; ½ ln(2πε) = −4.6 nats per pixel at best instead of −6.0).

Spec strings (what configs, zoo keys and ``model.rescue`` record): ``"name"`` or ``"name:key=value,..."``,
e.g. ``"beta-nll:beta=0.5"``, ``"warmup:steps=200"``; :func:`build_rescue` parses them, :meth:`Rescue.spec`
writes the canonical form (every parameter, sorted).
"""
from __future__ import annotations

import math
from typing import ClassVar, Optional

import torch
from torch import nn

#: The rescue a model with a per-pixel, input-dependent Σx (Diag-D, MLE or trainable; a shape with ``auto_rescue``)
#: gets unless it asks for another (``GaussianVAE(rescue="auto")``, the default). Chosen by measurement (#29): MNIST,
#: App. I.1 nets, Diag-D by MLE, 300 steps of batch 64 on the first 4,000 training images, test MSE on 1,000 test
#: images, seeds 0 and 1: warmup 26.7 / 28.9, beta-nll β=1 24.6 / 23.8 (= faithful with mean="unit" here: the same
#: gradient −r), β=0.5 16.8 / 17.3, faithful mean="iso-i" 10.8 / 10.7, all input-dependent (Iso-D with no rescue,
#: seed 0: 11.8). Black (test MSE = mean ‖x‖²; 256 images, batch 32, 100 steps): none (80.8–81.5, seeds 0–2), eps
#: (1.54e-5 and 1e-3) and floor (σ-VAE's e^-6), seed 0. With it the mean of Diag-D by MLE trains exactly as Iso-I by MLE (G.5) and Σ̂x (G.15) is the plug-in
#: per-pixel estimate of that mean's residuals, used at evaluation (Table 7's NLL); ``rescue="none"`` is the paper's.
DEFAULT_RESCUE = "faithful:mean=iso-i"
RESCUES: dict[str, type["Rescue"]] = {}


def register_rescue(cls):
    RESCUES[cls.name] = cls
    return cls


def grad_only(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in value, ``surrogate``'s gradient alone: sg(value) + (s − sg(s)) (s − sg(s) is exactly 0)."""
    return value.detach() + (surrogate - surrogate.detach())


class Rescue(nn.Module):
    """One way to train a :class:`~vaebook.variance.DecoderVariance`. ``params``: name → (default, check, expected),
    validated once in ``__init__``. Hooks (all identity / pass-through here, i.e. the paper's objective):

    * :meth:`attach` ``(var)``: once, when the variance is built (refuse an unsupported shape; set ``var.eps``);
    * :meth:`variance` ``(var, s2)``: the Σx that enters the objective and evaluation (``floor``, ``eps``);
    * :meth:`objective` ``(var, x, mu, r, s2, rec)``: the training objective from the residuals ``r`` (``S×B×C×H×W``),
      the variance ``s2`` in the shape's form (with its graph) and ``rec``, the plain objective at that variance.
    """

    name: ClassVar[str] = ""
    params: ClassVar[dict] = {}
    needs_diagonal: ClassVar[bool] = False

    def __init__(self, **kw):
        super().__init__()
        unknown = sorted(set(kw) - set(self.params))
        if unknown:
            raise ValueError(f"rescue {self.name!r}: unknown parameter(s) {unknown}; it takes {sorted(self.params)}. "
                             f"Fix: drop or rename them.")
        for key, (default, check, expected) in self.params.items():
            value = kw.get(key, default)
            try:
                ok = check(value)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"rescue {self.name!r}: parameter {key!r} = {value!r}; expected {expected}. "
                                 f"Fix: pass e.g. rescue=\"{self.name}:{key}={default}\".")
            setattr(self, key, type(default)(value))

    def spec(self) -> str:
        """Canonical spec string, e.g. ``"beta-nll:beta=0.5"`` (``"none"`` has no parameters)."""
        args = ",".join(f"{k}={getattr(self, k)}" for k in sorted(self.params))
        return f"{self.name}:{args}" if args else self.name

    def attach(self, var) -> None:
        if self.needs_diagonal and not var.diagonal:
            raise ValueError(f"rescue {self.name!r} weights or floors per-pixel variances and needs a diagonal Σx; "
                             f"{var.name!r} is not. Fix: use rescue='none', 'warmup' or 'faithful' with it.")

    def variance(self, var, s2: torch.Tensor) -> torch.Tensor:
        return s2

    def objective(self, var, x, mu, r, s2, rec) -> torch.Tensor:
        return rec

    def extra_repr(self) -> str:
        return self.spec()


def _positive(v) -> bool:
    return math.isfinite(float(v)) and float(v) > 0


@register_rescue
class NoRescue(Rescue):
    """The paper's objective: Eq. (7b), for MLE Eq. (10) (G.5, G.9, G.13, G.17). Takida et al. 2022."""

    name = "none"


@register_rescue
class Warmup(Rescue):
    """The first ``steps`` training steps (calls in training mode) use the MLE Iso-I objective G.5 on the same
    residuals, its *value* included; then the shape's own. Ours (this project's fix before #29), in the spirit of
    Detlefsen et al. 2019 (NeurIPS, "Reliable training and estimation of variance networks": fit the mean first,
    then the variance). Bit-for-bit the former ``GaussianVAE(warmup_steps=steps)``: both objectives are computed
    and ``torch.where`` selects (no host sync; vmap-friendly). Any shape and mode."""

    name = "warmup"
    params = {"steps": (200, lambda v: int(v) == float(v) and int(v) >= 1, "an integer >= 1 (training steps)")}

    def attach(self, var) -> None:
        from vaebook.variance import build_variance

        self.warm = build_variance("iso-i", var.x_shape, mode="mle")
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))

    def objective(self, var, x, mu, r, s2, rec):
        if not self.training:
            return rec
        warm = self.warm(x, mu).rec
        rec = torch.where(self.steps_seen < self.steps, warm, rec)
        with torch.no_grad():
            self.steps_seen += 1
        return rec


def _per_pixel(var, s2: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The variance per pixel, broadcastable against ``r`` (``S×B×C×H×W``), as the objective uses it
    (MLE: σ̂² + ε, the argument of G.5–G.17's logarithm)."""
    if var.mode == "mle":
        return var.broadcast(var.expand(s2, 1) if not var.dependent else var.expand(s2, s2.shape[0]), r) + var.eps
    return var.broadcast(var.variance_for_objective(s2), r)


@register_rescue
class BetaNLL(Rescue):
    """β-NLL (Seitzer et al. 2022, ICLR, "On the pitfalls of heteroscedastic uncertainty estimation with
    probabilistic neural networks", their L_β-NLL): each pixel's NLL term weighted by ⌊σ_i^{2β}⌋ (stop-gradient), so
    ∇ = ∇NLL · sg(σ²)^β per pixel. β = 0 is the NLL, β = 1 gives the mean the MSE gradient −(x − μ).

    MLE mode: the per-pixel terms are G.5–G.17's ½ ln(σ̂² + ε) with the plug-in σ̂², weighted by sg(σ̂² + ε)^β; for
    Diag-D with one z sample ∂/∂μ = −r/(r² + ε)·(r² + ε)^β: β = 1 is exactly the MSE gradient −r (the black trap's
    1/r pull is gone), β = ½ the L1-like −r/√(r² + ε). Trainable/fixed: the terms ½(r²/σ² + ln σ²), weighted.
    Returns the plain objective's value (:func:`grad_only`). Diagonal shapes.

    In a VAE the weight also rescales the reconstruction term against the KL (by σ^{2β} < 1): β = 1 with Diag-D by MLE
    is the σx² = 1 VAE's gradient (Table 1's over-smoothing).
    """

    name = "beta-nll"
    params = {"beta": (0.5, lambda v: 0.0 <= float(v) <= 1.0, "a number in [0, 1] (Seitzer et al. use 0.5 and 1)")}
    needs_diagonal = True

    def objective(self, var, x, mu, r, s2, rec):
        v = _per_pixel(var, s2, r)
        # MLE: ½ ln v per pixel (G.5–G.17 without constants); otherwise ½(r²/v + ln v); each × sg(v)^β
        terms = 0.5 * torch.log(v) if var.mode == "mle" else 0.5 * (r ** 2 / v + torch.log(v))
        surrogate = (terms * v.detach().expand_as(terms) ** self.beta).flatten(-3).sum(-1).mean()
        return grad_only(rec, surrogate)


@register_rescue
class Faithful(Rescue):
    """The faithful split (Stirn et al. 2023, AISTATS, "Faithful heteroscedastic regression with neural networks"):
    the mean is trained by the unit-variance objective ½‖x − μ‖² (``mean="unit"``: N(μ, I)'s NLL, as theirs) or by
    Iso-I's MLE objective G.5 (``mean="iso-i"``, ours: the homoscedastic objective whose σ̂² still adapts the KL
    balance, Sec. 5); the variance by its own NLL at stop-grad(μ), so its gradient has no path into μ. Stirn et al.
    also stop the variance loss at the shared representation; here the variance head shares the decoder's trunk.

    MLE mode: Σ̂x is a function of μ only (G.4–G.15), so with μ's gradient stopped it has nothing left to train: the
    model trains by the mean objective alone and Σ̂x = sg(estimate) is only evaluated. Returns the plain objective's
    value (:func:`grad_only`). Any shape and mode.
    """

    name = "faithful"
    params = {"mean": ("unit", lambda v: v in ("unit", "iso-i"), "'unit' (½‖r‖², Stirn et al.) or 'iso-i' (G.5)")}

    def objective(self, var, x, mu, r, s2, rec):
        r2 = r ** 2
        if self.mean == "unit":
            surrogate = 0.5 * r2.flatten(-3).sum(-1).mean()
        else:
            surrogate = 0.5 * var.d_x * torch.log(r2.mean())
        if var.mode == "trainable":
            s2v = var.variance_for_objective(s2)
            surrogate = surrogate + var.nll(r.detach(), var.broadcast(s2v, r)).mean()
        return grad_only(rec, surrogate)


@register_rescue
class Floor(Rescue):
    """A soft floor on the standard deviation (Rybkin et al. 2021, ICML, "Simple and effective VAE training with
    calibrated decoders", σ-VAE, whose code sets ln σ ← softclip(ln σ, ln σ_min) = ln σ_min + softplus(ln σ − ln σ_min),
    ln σ_min = −6): exp of that is exactly σ + σ_min, so Σx → (σ + σ_min)² per pixel, always ≥ σ_min² and ≈ Σx where
    σ ≫ σ_min. Applied to the variance the objective uses (MLE: σ̂² + ε) and to the evaluation Σx; the objective is then
    Eq. (7b) at the floored variance, ½ Σ [r²/σ'² + ln σ'² + ln 2π] (for MLE no longer the closed form G.17, whose
    r²/σ̂² = 1 does not hold at σ'). Diagonal shapes."""

    name = "floor"
    params = {"sigma_min": (math.exp(-6.0), _positive, "a positive number (a standard deviation; σ-VAE: e^-6)")}
    needs_diagonal = True

    def variance(self, var, s2):
        return (s2.clamp_min(torch.finfo(s2.dtype).tiny).sqrt() + self.sigma_min) ** 2

    def objective(self, var, x, mu, r, s2, rec):
        if var.mode != "mle":
            return rec  # the floored variance is already in rec
        return var.nll(r, _per_pixel_floored(var, s2, r, self)).mean()


def _per_pixel_floored(var, s2, r, floor: Floor) -> torch.Tensor:
    return floor.variance(var, _per_pixel(var, s2, r))


@register_rescue
class LargerEps(Rescue):
    """A larger ε (Sec. 5.2's ε, ``build_variance(eps=1e-6)``, replaced): MLE shapes get ``eps`` inside the logarithm of
    G.5–G.17 (Iso-I too, which has none in the paper); trainable/fixed shapes use σ² + ``eps``. The objective is the
    plain one with ε replaced; evaluation uses the same ε. Default (1/255)² (module docstring: ε and 8-bit data)."""

    name = "eps"
    params = {"eps": ((1 / 255) ** 2, _positive, "a positive number (a variance; 8-bit step² = 1.54e-5)")}
    needs_diagonal = True

    def attach(self, var) -> None:
        super().attach(var)
        var.eps = self.eps

    def variance(self, var, s2):
        return s2 if var.mode == "mle" else s2 + self.eps


def parse_rescue(spec: str) -> tuple[str, dict]:
    """``"name"`` or ``"name:key=value,..."`` → (name, {key: value}); values are numbers where they parse."""
    name, _, args = str(spec).partition(":")
    kw = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"rescue {spec!r}: {item!r} is not key=value. Fix: write e.g. 'beta-nll:beta=0.5'.")
        try:
            kw[key.strip()] = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            kw[key.strip()] = value.strip()
    return name.strip().lower(), kw


def build_rescue(rescue: "Optional[str | Rescue]" = None) -> Rescue:
    """A :class:`Rescue` from a spec string (``None`` = ``"none"``) or an instance (returned as is)."""
    if isinstance(rescue, Rescue):
        return rescue
    if rescue is None:
        return NoRescue()
    if not isinstance(rescue, str):
        raise ValueError(f"rescue must be a name, a 'name:key=value' string or a Rescue, got {rescue!r}. "
                         f"Fix: pass one of {sorted(RESCUES)}.")
    name, kw = parse_rescue(rescue)
    if name == "auto":
        raise ValueError("rescue='auto' is resolved by the model (GaussianVAE), not by build_variance. "
                         f"Fix: pass one of {sorted(RESCUES)}.")
    if name not in RESCUES:
        raise ValueError(f"unknown rescue {name!r} (from rescue={rescue!r}); expected one of {sorted(RESCUES)}, or "
                         f"'auto' for a model. Fix: pass one of those names.")
    return RESCUES[name](**kw)


def resolve_rescue(rescue, prone: bool, warmup_steps: int = 0) -> "str | Rescue":
    """A model's rescue: ``"auto"`` → :data:`DEFAULT_RESCUE` for a Σx ``prone`` to the trap (a shape's ``auto_rescue``:
    per-pixel and input-dependent, i.e. Diag-D), ``"none"`` otherwise;
    the legacy ``warmup_steps = k > 0`` means ``"warmup:steps=k"`` (and may not contradict an explicit rescue)."""
    if int(warmup_steps) > 0:
        legacy = f"warmup:steps={int(warmup_steps)}"
        if rescue not in (None, "auto") and build_rescue(rescue).spec() != legacy:
            raise ValueError(f"warmup_steps={warmup_steps} asks for rescue {legacy!r} but rescue={rescue!r} was "
                             f"given too. Fix: pass only one of them (rescue='{legacy}').")
        return legacy
    if rescue is None or rescue == "auto":
        return DEFAULT_RESCUE if prone else "none"
    return rescue


__all__ = ["RESCUES", "DEFAULT_RESCUE", "Rescue", "NoRescue", "Warmup", "BetaNLL", "Faithful", "Floor", "LargerEps",
           "build_rescue", "parse_rescue", "resolve_rescue", "register_rescue", "grad_only"]
