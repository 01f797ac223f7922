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
(expectations over q(z|x) use those samples, over p̃_data the minibatch). The protocol
(:mod:`vaebook.variance.base`) reaches each shape's stored form only through hooks that receive the residuals
r = x − μθ(z): the initial Σx, adding ε, the per-pixel marginal σx², the log-determinant and the Mahalanobis term
(see :class:`DecoderVariance`), so a full, block or low-rank Σx is one more subclass; every registered shape passes
:func:`vaebook.variance.conformance.check_variance`. Every module in this package is imported with it, so a new
shape is one new file here.
"""
from __future__ import annotations

import importlib
import pkgutil

from vaebook.variance.base import (LOG_2PI, MODES, PAPER_SHAPES, SHAPE_HOOKS, VARIANCES, DecoderVariance,
                                   VarianceOutput, build_variance, gaussian_nll, register_variance)


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


from vaebook.variance.lowrank import LowRankI  # noqa: E402  (registers "lowrank": beyond the paper)
from vaebook.variance.rescue import DEFAULT_RESCUE, RESCUES, Rescue, build_rescue  # noqa: E402

for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):  # a new shape is one new file in this package
    importlib.import_module(f"{__name__}.{_m}")

__all__ = ["VARIANCES", "PAPER_SHAPES", "MODES", "LOG_2PI", "SHAPE_HOOKS", "DecoderVariance", "VarianceOutput",
           "build_variance", "gaussian_nll",
           "IsoI", "DiagI", "IsoD", "DiagD", "LowRankI", "register_variance",
           "RESCUES", "DEFAULT_RESCUE", "Rescue", "build_rescue"]
