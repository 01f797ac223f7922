"""Beyond the paper: a low-rank decoder covariance Σx = σ²I + UUᵀ (U ∈ ℝ^{d×r}) estimated by maximum likelihood.

Σx is shared by all x (an -I shape, like Iso-I / Diag-I): probabilistic PCA of the decoder residuals
r = x − μθ(z), z ~ q(z|x). Its maximum-likelihood estimate is in closed form (Tipping & Bishop 1999): with the
eigenpairs (λ_1 ≥ … ≥ λ_d, v_j) of the residual second-moment matrix S = E[r rᵀ],

    σ̂² = (λ_{r+1} + … + λ_d)/(d − r),       Û = V_r (Λ_r − σ̂² I)^{1/2}   (clamped at 0),

which maximises the Gaussian likelihood Σ_n log N(r_n; 0, σ²I + UUᵀ) over σ² and U (up to a rotation U ↦ UR).

**Running S.** A minibatch of B residuals has a second-moment matrix of rank ≤ B·S_z, which would cap the
rank of the estimate (and make λ_{r+1..d} zero for r ≥ B). So S is a running average over minibatches: a
d×d buffer ``running_S``, weight max(1/(n+1), ``s_rate``) for the n-th training step (a cumulative mean for
the first 1/``s_rate`` steps, then an EMA). The eigendecomposition is refreshed at the first training step that
S can support it and every ``refresh`` steps after; between refreshes the stored (σ̂², Û) is used.

*Burn-in (ours).* A fit at the very first step would see one minibatch: with B·S_z ≤ r its S has λ_{r+1..d} = 0,
so σ̂² falls to the floor and the next steps' objective (‖r_⊥‖²/σ̂² for residuals outside span Û) explodes; with
B·S_z > r, σ̂² is still biased low (the top r eigenvalues of so few vectors absorb much of the noise). So until S has seen ``burn_in`` residual vectors
(default d = 784 on MNIST: 13 steps of batch 64) the estimate is the rank-0 one, σ̂² = tr S / d — unbiased at any
sample count, and Iso-I's MLE at the first step — recomputed every step; U is fitted from then on.

**Gradients: the envelope theorem.** The estimate is computed without gradient (the Eq. 9a / 9b alternation);
the objective is the Gaussian NLL of the *current minibatch's* residuals under the stored (σ̂², Û)
(Eq. 7b at Σ̂x), so gradients flow through r only. (For the paper's shapes the minibatch MLE and the envelope
theorem make the two coincide; here Σ̂x is the running estimate, not the minibatch's maximiser.)

**Log-density in O(d·r) per example** by Woodbury and the matrix determinant lemma, with M = I_r + UᵀU/σ²:
rᵀΣx⁻¹r = ‖r‖²/σ² − ‖L⁻¹Uᵀr‖²/σ⁴ (M = LLᵀ) and ln det Σx = d ln σ² + ln det M.

**Floor.** σ̂² ≥ ``sigma2_floor`` (default the ``eps`` of :func:`~vaebook.variance.build_variance`, 1e-6, like
the other shapes' ε); nothing is added inside the logarithm (``uses_eps = False``), so rank 0 *is* Iso-I:
σ̂² = tr S / d and the objective equals G.5 on the same residuals (at the first step, where S is that
minibatch's).

**Forms.** This shape's Σx (``running_sigma2``, :meth:`estimate`, :meth:`eval_sigma2`, what :meth:`nll` takes)
is the *factor* ``d × (1 + r)``: column 0 holds σ² (repeated), columns 1..r hold U (ordered by decreasing
‖u_j‖). The protocol's hooks (:class:`~vaebook.variance.DecoderVariance`) read it: :meth:`initial` (σ² = value,
U = 0), :meth:`add_eps` (σ² + ε), :meth:`marginal` (diag Σx = σ² + Σ_j U_ij², ``C×H×W``: :meth:`forward`'s
``sigma2`` and :meth:`current`, comparable with Diag-I's), :meth:`logdet` and :meth:`mahalanobis` (below).

**Cost.** Per step O(N d²) to update S (N residual vectors) and O(N d r) for the objective; per refresh an
eigendecomposition, O(d³), done in float64. MNIST (d = 784): S is 0.6 M floats (2.5 MB), the S update ≈ 0.04 G
multiply-adds per step of batch 64, and ``eigh`` (d³ ≈ 0.5 G, a few GFLOP with the eigenvectors) took ≈ 0.5 s
in float64 on one shared CPU core (0.15 s in float32): with ``refresh`` = 10, ≈ 0.05 s per step, ~15 % of a
0.3 s MNIST training step. CelebA 64×64 (d = 12,288) does not scale this way: S alone is 12,288² = 151 M floats
(604 MB in fp32) and ``eigh`` is O(d³), d³ ≈ 1.9 T (several TFLOP with the eigenvectors) per refresh —
impractical. There one would keep only a sketch (e.g. a randomized range
finder / subspace iteration on the residuals, S·Ω for a d×(r+p) test matrix Ω, accumulated as an EMA) and
estimate σ̂² from tr S − Σ_j λ_j, which needs only the running trace.

Only ``mode="mle"`` is implemented (a trainable U is not). Not batchable with ``torch.func.vmap``: the burn-in and
refresh schedule read the step counters on the host. So each instance carries a distinct ``batch_token``, which
makes :func:`vaebook.train.batched.batch_key` unique: ``train_many`` and the zoo train such a model on its own
(plain ``fit``, with checkpoints) instead of failing inside a vmapped group.
"""
from __future__ import annotations

import itertools
import math
from typing import Optional

import torch

from vaebook.variance.base import LOG_2PI, DecoderVariance, register_variance


@torch.no_grad()
def ppca_mle(S: torch.Tensor, rank: int, sigma2_floor: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tipping & Bishop's closed-form MLE of N(0, σ²I + UUᵀ) from a second-moment matrix ``S`` (d×d, symmetric):
    ``(σ̂², Û)`` with σ̂² = mean of the d − r smallest eigenvalues (computed as (tr S − Σ top r)/(d − r)),
    at least ``sigma2_floor``, and Û = V_r (Λ_r − σ̂²)^{1/2} (columns by decreasing eigenvalue; clamped at 0).
    Computed in float64, returned in ``S``'s dtype."""
    d = S.shape[-1]
    if not 0 <= rank < d:
        raise ValueError(f"rank must be in [0, d) = [0, {d}), got {rank}")
    S64 = S.double()
    S64 = 0.5 * (S64 + S64.transpose(-1, -2))
    trace = S64.diagonal(dim1=-2, dim2=-1).sum(-1)
    if rank == 0:
        s2 = (trace / d).clamp_min(sigma2_floor)
        return s2.to(S.dtype), S.new_zeros(d, 0)
    evals, evecs = torch.linalg.eigh(S64)  # ascending
    top, vecs = evals[-rank:].flip(-1), evecs[:, -rank:].flip(-1)
    s2 = ((trace - top.sum()) / (d - rank)).clamp_min(sigma2_floor)
    U = vecs * (top - s2).clamp_min(0.0).sqrt()
    return s2.to(S.dtype), U.to(S.dtype)


def lowrank_terms(r: torch.Tensor, s2: torch.Tensor, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rᵀΣx⁻¹r per leading index of ``r`` (``...×d``), ln det Σx) for Σx = σ²I + UUᵀ: Woodbury and the matrix
    determinant lemma, O(d·r) per example."""
    d, k = r.shape[-1], U.shape[-1]
    quad = (r ** 2).sum(-1) / s2
    logdet = d * torch.log(s2)
    if k:
        M = torch.eye(k, dtype=U.dtype, device=U.device) + U.transpose(-1, -2) @ U / s2
        L = torch.linalg.cholesky(M)
        proj = (r @ U).reshape(-1, k)  # N×k
        a = torch.linalg.solve_triangular(L, proj.transpose(0, 1), upper=False).transpose(0, 1)
        quad = quad - (a ** 2).sum(-1).reshape(quad.shape) / s2 ** 2
        logdet = logdet + 2.0 * L.diagonal().log().sum()
    return quad, logdet


def lowrank_nll(r: torch.Tensor, s2: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """−log N(r; 0, σ²I + UUᵀ) for ``r`` of shape ``...×d`` → ``...`` (Woodbury + determinant lemma, O(d·r))."""
    quad, logdet = lowrank_terms(r, s2, U)
    return 0.5 * (quad + logdet + r.shape[-1] * LOG_2PI)


_INSTANCES = itertools.count()


@register_variance
class LowRankI(DecoderVariance):
    """Σx = σ²I + UUᵀ shared by all x, U ∈ ℝ^{d×r}: the PPCA maximum-likelihood estimate from a running
    residual second moment (see the module docstring). ``build_variance("lowrank-r16", ...)`` builds rank 16;
    ``"lowrank"`` alone, rank :attr:`DEFAULT_RANK`.

    ``rank``: r (0 = Iso-I); ``refresh``: training steps between eigendecompositions (and at the first);
    ``s_rate``: the running S's EMA rate (after a cumulative mean over the first 1/s_rate steps);
    ``sigma2_floor``: lower bound on σ̂² (None: ``eps``); ``burn_in``: residual vectors S must have seen before
    U is fitted (None: d, so S can have full rank; before that the rank-0 estimate)."""

    name = "lowrank"
    uses_eps = False
    diagonal = False  # the per-pixel rescues (beta-nll, floor, eps) refuse it
    modes = ("mle",)
    has_rank = True  # build_variance accepts "lowrank-r<k>"
    DEFAULT_RANK = 4

    def __init__(self, x_shape, mode: str = "mle", value: float = 1.0, eps: float = 1e-6, ema: float = 0.02,
                 rank: int = DEFAULT_RANK, refresh: int = 10, s_rate: float = 0.05,
                 sigma2_floor: Optional[float] = None, burn_in: Optional[int] = None, rescue=None):
        if mode != "mle":
            raise ValueError(f"the low-rank Σx supports mode='mle' only (no {mode!r}: a fixed or trainable U is "
                             "not implemented)")
        d = math.prod(int(s) for s in x_shape)
        self.rank = int(rank)
        if not 0 <= self.rank < d:
            raise ValueError(f"rank must be in [0, d_x) = [0, {d}), got {rank}")
        if int(refresh) < 1:
            raise ValueError(f"refresh must be >= 1 training step, got {refresh}")
        if not 0 < float(s_rate) <= 1:
            raise ValueError(f"s_rate must be in (0, 1], got {s_rate}")
        # ema = 1: running_sigma2 is a copy of the stored estimate (the averaging happens on S)
        super().__init__(x_shape, mode=mode, value=value, eps=eps, ema=1.0, rescue=rescue)
        self.refresh, self.s_rate = int(refresh), float(s_rate)
        self.batch_token = next(_INSTANCES)  # never one vmapped group with another model (module docstring)
        self.sigma2_floor = float(eps if sigma2_floor is None else sigma2_floor)
        if not self.sigma2_floor >= 0:
            raise ValueError(f"sigma2_floor must be >= 0, got {self.sigma2_floor}")
        self.burn_in = d if burn_in is None else int(burn_in)
        if self.burn_in < 0:
            raise ValueError(f"burn_in must be >= 0 residual vectors, got {burn_in}")
        self.register_buffer("running_S", torch.zeros(d, d))
        self.register_buffer("samples_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("fitted_step", torch.full((), -1, dtype=torch.long))  # step of the last PPCA fit

    # -- forms --------------------------------------------------------------------------------
    def param_shape(self):
        return (self.d_x, 1 + self.rank)

    @staticmethod
    def unpack(factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Factor ``d × (1 + r)`` → (σ² scalar, U ``d × r``)."""
        return factor[..., 0, 0], factor[..., :, 1:]

    def pack(self, s2: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """(σ², U with at most r columns) → the factor ``d × (1 + r)`` (missing columns of U are 0)."""
        pad = U.new_zeros(self.d_x, self.rank - U.shape[-1])
        return torch.cat([s2.reshape(1, 1).expand(self.d_x, 1).to(U.dtype), U, pad], dim=1)

    def factor(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored estimate (σ̂², Û)."""
        return self.unpack(self.running_sigma2)

    def initial(self, value):
        """Σx = value·I before any step: σ² = value, U = 0."""
        factor = torch.zeros(self.param_shape())
        factor[:, 0] = float(value)
        return factor

    def add_eps(self, sigma2, eps):
        """σ²I + UUᵀ + εI: ε on σ² (column 0)."""
        out = sigma2.clone()
        out[..., 0] += eps
        return out

    def marginal(self, factor: torch.Tensor) -> torch.Tensor:
        """diag Σx = σ² + Σ_j U_ij², per pixel (``C×H×W``)."""
        s2, U = self.unpack(factor)
        return (s2 + (U ** 2).sum(-1)).reshape(self.x_shape)

    def covariance(self, factor: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The dense d×d Σx (for tests and small d)."""
        s2, U = self.unpack(self.running_sigma2 if factor is None else factor)
        return s2 * torch.eye(self.d_x, dtype=U.dtype, device=U.device) + U @ U.transpose(-1, -2)

    # -- the hooks ------------------------------------------------------------------------------
    @torch.no_grad()
    def estimate(self, r: torch.Tensor) -> torch.Tensor:
        """The factor of Σ̂x from residuals ``r`` (``S×B×C×H×W``), without gradient.

        Training mode (one call per training step): fold the minibatch's E[r rᵀ] into ``running_S``. While S has
        seen fewer than ``burn_in`` residual vectors, the rank-0 (Iso-I) estimate σ̂² = tr S/d, every step; then
        the PPCA fit (:func:`ppca_mle`) at the first step past the burn-in and every ``refresh`` steps after it,
        the stored estimate in between. Evaluation mode: the stored estimate (S untouched), or before any
        training step the fit of this minibatch alone (rank 0 if it has fewer than ``burn_in`` vectors)."""
        f = r.detach().reshape(-1, self.d_x).to(self.running_S.dtype)
        n = int(self.running_count)
        if not self.training:
            if n == 0:
                rank = self.rank if f.shape[0] >= self.burn_in else 0
                return self.pack(*ppca_mle(f.T @ f / f.shape[0], rank, self.sigma2_floor))
            return self.running_sigma2.clone()
        self.running_S.lerp_(f.T @ f / f.shape[0], max(1.0 / (n + 1), self.s_rate))
        self.samples_seen += f.shape[0]
        if int(self.samples_seen) < self.burn_in:
            return self.pack(*ppca_mle(self.running_S, 0, self.sigma2_floor))
        last = int(self.fitted_step)
        if last < 0 or n - last >= self.refresh:
            self.fitted_step.fill_(n)
            return self.pack(*ppca_mle(self.running_S, self.rank, self.sigma2_floor))
        return self.running_sigma2.clone()

    def broadcast(self, sigma2, like):
        return sigma2  # the factor itself

    def logdet(self, sigma2):
        """ln det Σx = d ln σ² + ln det(I_r + UᵀU/σ²) (the determinant lemma)."""
        s2, U = self.unpack(sigma2)
        return lowrank_terms(sigma2.new_zeros(1, self.d_x), s2, U)[1]

    def mahalanobis(self, r, sigma2):
        """rᵀΣx⁻¹r = ‖r‖²/σ² − ‖L⁻¹Uᵀr‖²/σ⁴ (Woodbury, M = I_r + UᵀU/σ² = LLᵀ)."""
        s2, U = self.unpack(sigma2)
        return lowrank_terms(r.flatten(-3), s2, U)[0]

    def nll(self, r, sigma2):
        """½[rᵀΣx⁻¹r + ln det Σx + d ln 2π] with one Cholesky of M for both terms."""
        s2, U = self.unpack(sigma2)
        return lowrank_nll(r.flatten(-3), s2, U)

    def mle_objective(self, s2, r=None):
        """Eq. (7b) at Σ̂x: the mean NLL of the minibatch residuals ``r`` under the factor ``s2`` (no closed form:
        Σ̂x is the running estimate, not this minibatch's)."""
        return self.nll(r, s2).mean()

    # -- beyond the protocol ----------------------------------------------------------------------
    @torch.no_grad()
    def whiten(self, r: torch.Tensor, factor: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Σx^{-1/2} r (the symmetric inverse square root, so pixels keep their places) for ``r`` ``...×C×H×W``."""
        s2, U = self.unpack(self.running_sigma2 if factor is None else factor)
        f = r.flatten(-3)
        out = f / s2.sqrt()
        if U.shape[-1]:
            Q, s, _ = torch.linalg.svd(U, full_matrices=False)
            coef = (s2 + s ** 2).rsqrt() - s2.rsqrt()
            out = out + ((f @ Q) * coef) @ Q.transpose(-1, -2)
        return out.reshape(r.shape)

    def extra_repr(self) -> str:
        return (f"rank={self.rank}, refresh={self.refresh}, s_rate={self.s_rate}, burn_in={self.burn_in}, "
                f"sigma2_floor={self.sigma2_floor}, "
                f"x_shape={self.x_shape}")


__all__ = ["LowRankI", "ppca_mle", "lowrank_nll", "lowrank_terms"]
