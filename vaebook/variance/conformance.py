"""The Σx conformance check: one shape's hooks against ``torch.distributions.MultivariateNormal`` on a small image.

:func:`check_variance` (``tests/test_variance_conformance.py`` runs it on every registered shape in every mode it
supports) builds the shape in float64 on ``C×H×W = 2×4×4`` (d_x = 32) and recovers the dense precision Σx⁻¹ of each
form it produces from the :meth:`~vaebook.variance.DecoderVariance.mahalanobis` hook alone, by polarization
(Σx⁻¹_ij = ½[q(e_i + e_j) − q(e_i) − q(e_j)] with q(r) = rᵀΣx⁻¹r). Every other hook is then checked against that
matrix, independently of how the shape computes it:

* ``initial``: Σx = initial(value) is value·I (positive definite before the first step) and is what is stored;
* ``mahalanobis``: a positive-definite quadratic form;
* ``logdet``: = −ln det Σx⁻¹;  ``marginal``: = diag Σx (forward's, ``current()``'s and ``eval_sigma2``'s σx²);
* ``add_eps``: (add_eps(Σx, ε))⁻¹⁻¹ = Σx + εI (ε on the diagonal only, Sec. 5.2);
* ``nll`` / ``log_prob``: = −log N(r; 0, Σx) of ``MultivariateNormal`` (Eq. 7b's integrand);
* ``estimate`` (MLE): E[rᵀΣ̂x⁻¹r] = d_x (per example for a -D shape), the stationarity in scale of any maximum of
  the likelihood (G.1 restricted to the shape; it gives G.5–G.17 their "1");
* ``mle_objective`` (MLE): = the mean NLL at Σ̂x (ε = 0; Eq. 10 is Eq. 7b at Σ̂x), and with ε the closed form
  ½[d_x(1 + ln 2π) + ln det(Σ̂x + εI)] (G.9/G.13/G.17) where the shape ``uses_eps``;
* ``gradients``: finite and non-zero through the objective.

Each failure is one line that starts with the hook's name.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Union

import torch
from torch.distributions import MultivariateNormal

from vaebook.variance.base import LOG_2PI, VARIANCES, DecoderVariance, build_variance

SMALL_SHAPE = (2, 4, 4)  # d_x = 32: two channels, even H and W with two 2×2 patches per row and column
F64 = torch.float64


class ConformanceError(AssertionError):
    """A Σx that gets the protocol wrong; the message names the hook(s)."""


class _Report:
    def __init__(self, label: str):
        self.label, self.fails = label, []

    def fail(self, hook: str, msg: str) -> None:
        self.fails.append(f"{hook}: {msg} [{self.label}]")

    def close(self, hook: str, got, want, what: str, tol: float = 1e-7) -> bool:
        got, want = torch.as_tensor(got, dtype=F64), torch.as_tensor(want, dtype=F64)
        try:
            got, want = torch.broadcast_tensors(got, want)
        except RuntimeError:
            self.fail(hook, f"{what}: shape {tuple(got.shape)} does not match the reference {tuple(want.shape)}")
            return False
        err = float((got - want).detach().abs().max()) if got.numel() else 0.0
        scale = float(want.detach().abs().max()) if want.numel() else 0.0
        if not math.isfinite(err) or err > tol * (1.0 + scale):
            self.fail(hook, f"{what}: max |got − reference| = {err:.3g} (reference scale {scale:.3g})")
            return False
        return True

    @contextlib.contextmanager
    def guard(self, hook: str, what: str) -> Iterator[None]:
        try:
            yield
        except Exception as e:  # noqa: BLE001 - the report names the hook that raised
            self.fail(hook, f"{what} raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def precision(v: DecoderVariance, form: torch.Tensor, lead: tuple) -> torch.Tensor:
    """The dense Σx⁻¹ (``lead×d×d``) of ``form`` (as :meth:`broadcast` gives it) from :meth:`mahalanobis` alone."""
    d = v.d_x
    eye = torch.eye(d, dtype=F64)
    i, j = torch.triu_indices(d, d, 1)
    probes = torch.cat([eye, eye[i] + eye[j]])
    n = probes.shape[0]
    r = probes.reshape(n, *([1] * len(lead)), *v.x_shape).expand(n, *lead, *v.x_shape)
    q = torch.broadcast_to(v.mahalanobis(r, form), (n, *lead)).movedim(0, -1)  # lead × n
    Q = torch.zeros(*lead, d, d, dtype=F64)
    Q[..., torch.arange(d), torch.arange(d)] = q[..., :d]
    off = 0.5 * (q[..., d:] - q[..., i] - q[..., j])
    Q[..., i, j] = off
    Q[..., j, i] = off
    return Q


def _forms_check(rep: _Report, v: DecoderVariance, name: str, form: torch.Tensor, r: torch.Tensor,
                 eps: float = 1e-2) -> None:
    """Every hook at one form of Σx against its precision matrix."""
    lead, d = tuple(r.shape[:2]), v.d_x
    bf = v.broadcast(form, r)
    Q = None
    with rep.guard("mahalanobis", f"at Σx = {name}"):
        Q = precision(v, bf, lead)
    if Q is None:
        return
    ev = torch.linalg.eigvalsh(0.5 * (Q + Q.transpose(-1, -2)))
    if not bool((ev > 0).all()):
        rep.fail("mahalanobis", f"rᵀΣx⁻¹r at Σx = {name} is not a positive-definite quadratic form "
                 f"(smallest eigenvalue {float(ev.min()):.3g})")
        return
    z = torch.randn(4, *lead, *v.x_shape, dtype=F64, generator=torch.Generator().manual_seed(7))
    zf = z.flatten(-3)
    with rep.guard("mahalanobis", f"at Σx = {name}"):
        rep.close("mahalanobis", v.mahalanobis(z, bf), torch.einsum("n...i,...ij,n...j->n...", zf, Q, zf),
                  f"rᵀΣx⁻¹r at Σx = {name} is not a quadratic form")
    cov = torch.linalg.inv(Q)
    with rep.guard("logdet", f"at Σx = {name}"):
        rep.close("logdet", v.logdet(bf), torch.logdet(cov), f"ln det Σx at Σx = {name} ≠ ln det of the Σx that "
                  "mahalanobis implies")
    with rep.guard("marginal", f"at Σx = {name}"):
        pix = torch.broadcast_to(v.pixel_variance(form), (*lead, *v.x_shape)).flatten(-3)
        rep.close("marginal", pix, cov.diagonal(dim1=-2, dim2=-1), f"the per-pixel σx² at Σx = {name} is not "
                  "diag Σx (off-diagonal entries averaged in, or pixels out of place)")
    with rep.guard("add_eps", f"at Σx = {name}"):
        Qe = precision(v, v.broadcast(v.add_eps(form, eps), r), lead)
        rep.close("add_eps", torch.linalg.inv(Qe), cov + eps * torch.eye(d, dtype=F64),
                  f"add_eps(Σx, {eps}) at Σx = {name} is not Σx + εI (ε belongs on the diagonal only)")
    with rep.guard("nll", f"at Σx = {name}"):
        want = -MultivariateNormal(torch.zeros(d, dtype=F64), precision_matrix=Q).log_prob(r.flatten(-3))
        rep.close("nll", v.nll(r, bf), want, f"−log N(r; 0, Σx) at Σx = {name} ≠ MultivariateNormal's")


def _build(shape, x_shape, mode, value, eps) -> DecoderVariance:
    if isinstance(shape, str):
        return build_variance(shape, x_shape, mode=mode, value=value, eps=eps, rescue="none").double()
    return shape(x_shape, mode=mode, value=value, eps=eps, rescue="none").double()


def _eval_check(rep: _Report, v: DecoderVariance, x, mu, r, head, recon, when: str) -> None:
    """``eval_sigma2``/``log_prob``/``current``: the Σx reported as σx² is diag of the Σx the density uses."""
    lead = tuple(r.shape[:2])
    es = None
    with rep.guard("eval_sigma2", when):
        es = v.eval_sigma2(x, mu, head, recon=recon)
    if es is None:
        return
    with rep.guard("mahalanobis", f"at eval_sigma2 ({when})"):
        Q = precision(v, es, lead)
        cov = torch.linalg.inv(Q)
        pix = torch.broadcast_to(v.pixel_variance(es), (*lead, *v.x_shape)).flatten(-3)
        rep.close("marginal", pix, cov.diagonal(dim1=-2, dim2=-1), f"eval σx² ({when}) is not diag Σx")
        want = MultivariateNormal(torch.zeros(v.d_x, dtype=F64), precision_matrix=Q).log_prob(r.flatten(-3))
        rep.close("nll", v.log_prob(x, mu, es), want, f"log_prob at eval_sigma2 ({when}) ≠ MultivariateNormal's")
        if not (v.mode == "trainable" and v.dependent):
            cur = torch.broadcast_to(v._pixels(v.current()), (*lead, *v.x_shape)).flatten(-3)
            sx = precision(v, v.broadcast(v.sigma_x(), r), lead)
            rep.close("marginal", cur, torch.linalg.inv(sx).diagonal(dim1=-2, dim2=-1),
                      f"current() ({when}) is not diag of the stored Σx")


def conformance_failures(shape: Union[str, type], mode: str, x_shape=SMALL_SHAPE, s: int = 3, b: int = 12,
                         value: float = 0.3, eps: float = 1e-3, seed: int = 0) -> list[str]:
    """Every way ``shape`` (a registered name or a :class:`DecoderVariance` subclass) in ``mode`` breaks the protocol,
    one line per failure starting with the hook's name (empty: it conforms). See the module docstring."""
    label = f"{shape if isinstance(shape, str) else shape.__name__}, mode={mode}"
    rep = _Report(label)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, *x_shape, generator=g, dtype=F64)
    mu = torch.rand(s, b, *x_shape, generator=g, dtype=F64)
    recon = torch.rand(b, *x_shape, generator=g, dtype=F64)
    r = x.unsqueeze(0) - mu
    d = math.prod(x_shape)
    v = _build(shape, x_shape, mode, value, eps)
    cls = type(v)
    # initial: value·I, positive definite, and what the module stores before any data
    init = v.initial(value)
    if tuple(init.shape) != tuple(v.param_shape()):
        rep.fail("initial", f"initial({value}) has shape {tuple(init.shape)}; param_shape() is {tuple(v.param_shape())}")
    with rep.guard("initial", f"mahalanobis at Σx = initial({value}) (is it positive definite, value·I?)"):
        Q0 = precision(v, v.broadcast(init.to(F64), r), (s, b))
        rep.close("initial", torch.linalg.inv(Q0), value * torch.eye(d, dtype=F64),
                  f"Σx = initial({value}) is not {value}·I (it must be positive definite from the first step)")
    if not (mode == "trainable" and v.dependent):
        rep.close("initial", v.sigma_x(), init, "the stored Σx before any data (sigma_x()) is not initial(value)")
    forms = {f"initial({value})": init.to(F64)}
    if "mle" in cls.supported_modes():
        with rep.guard("estimate", "on a minibatch"):
            forms["the estimate Σ̂x"] = _build(shape, x_shape, "mle", value, 0.0).eval().estimate(r)
    head = None
    if mode == "trainable":
        gen = torch.Generator().manual_seed(seed + 1)
        if v.dependent:
            head = torch.randn(s, b, v.head_channels(), *x_shape[1:], generator=gen, dtype=F64).requires_grad_(True)
        else:
            with torch.no_grad():
                v.log_sigma2.copy_(torch.randn(v.log_sigma2.shape, generator=gen, dtype=F64) * 0.5 - 1.0)
        forms["the trainable Σx"] = v.sigma_x(head).detach()
    for name, form in forms.items():
        _forms_check(rep, v, name, form, r)
    mu_g = mu.clone().requires_grad_(True)
    if mode == "mle":
        v0 = _build(shape, x_shape, mode, value, 0.0).train()
        s_hat = forms.get("the estimate Σ̂x")
        out = None
        with rep.guard("mle_objective", "forward (training mode)"):
            out = v0(x, mu_g)
        if out is not None and s_hat is not None:
            with rep.guard("estimate", "at Σ̂x"):
                Q = precision(v0, v0.broadcast(s_hat, r), (s, b))
                nll = -MultivariateNormal(torch.zeros(d, dtype=F64), precision_matrix=Q).log_prob(r.flatten(-3))
                maha = torch.einsum("...i,...ij,...j->...", r.flatten(-3), Q, r.flatten(-3))
                rep.close("estimate", maha.mean(0) if v.dependent else maha.mean(), torch.tensor(float(d)),
                          "E[rᵀΣ̂x⁻¹r] ≠ d_x: Σ̂x is not a maximum of the likelihood (Eq. 9a, G.1 restricted to the shape)")
                rep.close("mle_objective", out.rec, nll.mean(), "the MLE objective (Eq. 10, ε = 0) is not the mean "
                          "NLL at Σ̂x (Eq. 7b at the estimate)")
                cov = torch.linalg.inv(Q)
                pix = torch.broadcast_to(v0._pixels(out.sigma2), (s, b, *x_shape)).flatten(-3)
                rep.close("marginal", pix, cov.diagonal(dim1=-2, dim2=-1), "forward's sigma2 (the σx² logged) is "
                          "not diag Σ̂x")
                if v.eps > 0:
                    ve = _build(shape, x_shape, mode, value, eps).train()
                    want = 0.5 * (d * (1 + LOG_2PI) + torch.logdet(cov + v.eps * torch.eye(d, dtype=F64)).mean())
                    rep.close("mle_objective", ve(x, mu).rec, want, "with ε the objective is not "
                              "½[d_x(1 + ln 2π) + ln det(Σ̂x + εI)] (G.9/G.13/G.17)")
        if not v.dependent:
            _eval_check(rep, v.eval(), x, mu, r, None, None, "before training: initial + εI")
            with rep.guard("add_eps", "eval_sigma2 before training"):
                rep.close("add_eps", torch.linalg.inv(precision(v, v.eval_sigma2(x, mu), (s, b))),
                          (value + v.eps) * torch.eye(d, dtype=F64), "eval_sigma2 before training is not "
                          "initial(value) + εI")
        v.train()
        v(x, mu)
        _eval_check(rep, v.eval(), x, mu, r, None, recon, "after one training step")
    else:
        out = None
        with rep.guard("nll", "forward"):
            out = v(x, mu_g, head)
        if out is not None:
            with rep.guard("nll", "forward"):
                Q = precision(v, v.broadcast(v.sigma_x(head).detach(), r), (s, b))
                want = -MultivariateNormal(torch.zeros(d, dtype=F64), precision_matrix=Q).log_prob(r.flatten(-3))
                rep.close("nll", out.rec, want.mean(), "the training objective is not the mean NLL (Eq. 7b)")
        _eval_check(rep, v.eval(), x, mu, r, None if head is None else head.detach(), recon, "evaluation")
    if out is not None:
        with rep.guard("gradients", "backward"):
            out.rec.backward()
            grads = {"mu": mu_g.grad} | ({"head": head.grad} if head is not None else {}) | \
                {n: p.grad for n, p in v.named_parameters() if p.requires_grad}
            for n, gr in grads.items():
                if gr is None or not bool(torch.isfinite(gr).all()) or not bool((gr != 0).any()):
                    rep.fail("gradients", f"∂objective/∂{n} is missing, non-finite or zero")
    return rep.fails


def shape_class(shape: Union[str, type]) -> type:
    """The :class:`DecoderVariance` subclass of a registered name (``lowrank-r4`` → ``lowrank``) or the class itself."""
    if not isinstance(shape, str):
        return shape
    key = shape.lower().replace("_", "-")
    cls = VARIANCES.get(key) or VARIANCES.get(key.rpartition("-r")[0])
    if cls is None:
        raise ValueError(f"check_variance: argument 'shape' = {shape!r}; expected a registered Σx name, one of "
                         f"{sorted(VARIANCES)}, or a DecoderVariance subclass. Fix: register it first.")
    return cls


def check_variance(shape: Union[str, type], modes=None, **kw) -> None:
    """Raise :class:`ConformanceError` listing every failure of ``shape`` (a registered name or a subclass) in
    ``modes`` (default: every mode it supports), each line naming the hook; return None when it conforms.
    ``kw``: :func:`conformance_failures`."""
    fails = [f for m in (modes or shape_class(shape).supported_modes()) for f in conformance_failures(shape, m, **kw)]
    if fails:
        raise ConformanceError(f"{len(fails)} conformance failure(s):\n" + "\n".join(fails))


__all__ = ["check_variance", "conformance_failures", "shape_class", "precision", "ConformanceError", "SMALL_SHAPE"]
