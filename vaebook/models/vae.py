"""Gaussian VAEs: the Section-6 VAE with a generalised decoder variance (Sections 5–6) and the
Section-4 VAE with one isotropic encoder variance σz² (Tables 1 and E.8)."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from vaebook.models.base import GenerativeModel, LossOutput, Needs, Posterior, register_model
from vaebook.nets import ARCHITECTURES, build_nets
from vaebook.variance import DecoderVariance, build_variance
from vaebook.variance.rescue import resolve_rescue


class GaussianVAE(GenerativeModel):
    """q(z|x) = N(μφ(x), diag σφ²(x)), p(z) = N(0, I), p(x|z) = N(μθ(z), Σx) (Eq. 2 with Σx of Table 2).

    The loss is Eq. (7a): the variance module's reconstruction objective (Eq. 7b; for MLE Eq. 10)
    plus the closed-form KL, in nats per example. The encoder's last layer outputs the mean and
    log σφ² (``2·d_z`` units).

    ``rescue`` (ours; the paper states none): how Σx's objective trains, one of :mod:`vaebook.variance.rescue`
    (``"none"``: the paper's Eq. 7b / Eq. 10; ``"warmup"``, ``"beta-nll"``, ``"faithful"``, ``"floor"``, ``"eps"``,
    with parameters as ``"name:key=value"``). ``"auto"`` (default) is :data:`~vaebook.variance.rescue.DEFAULT_RESCUE`
    for Diag-D (per-pixel and input-dependent; MLE or trainable) and ``"none"`` for the other shapes (Iso-D shares one
    σx²(x) over an image's pixels and does not go black): from random initialisation the Diag-D objective
    (G.17), ½ Σ ln(r² + ε) per pixel, is won fastest by an all-black output (every background pixel exact earns ½ ln ε)
    and the saturated sigmoid then has no gradient to leave it. Pass ``rescue="none"`` for the paper's plain objective.
    ``self.rescue`` records the resolved spec string.

    ``warmup_steps`` (ours, before ``rescue`` existed): ``warmup_steps=k > 0`` is ``rescue="warmup:steps=k"`` (the first
    k training steps use the MLE Iso-I objective G.5), bit-for-bit the models it built before; 0 leaves ``rescue``
    alone.

    ``variance_lr_factor`` (ours; the paper states none): learning-rate multiplier of a trainable -I Σx's
    log-variance parameter. Adam moves a parameter by about its learning rate per step, so at lr 1e-3 a log σx²
    started at 0 can reach at most −0.6 in 600 steps, far from the ≈ −4.4 that the MLE finds on MNIST: a short run
    compares MLE with a trainable Σx that never learned its variance. A factor lets it converge within the run;
    at 1 (default) the parameters and the optimiser are exactly the paper's. When it is not 1 the model has a
    ``param_groups(lr, weight_decay)`` method (trained on its own, never in a batched vmap group).
    """

    has_likelihood = True

    def __init__(self, arch: str = "mnist", d_z: Optional[int] = None, variance: str = "iso-i", mode: str = "mle",
                 value: float = 1.0, eps: float = 1e-6, n_samples: int = 1, beta: float = 1.0,
                 warmup_steps: int = 0, variance_lr_factor: float = 1.0, rescue: Optional[str] = "auto"):
        super().__init__()
        if not (isinstance(variance_lr_factor, (int, float)) and math.isfinite(variance_lr_factor)
                and variance_lr_factor > 0):
            raise ValueError(f"variance_lr_factor must be a positive finite number (a learning-rate multiplier of "
                             f"the trainable log σx²), got {variance_lr_factor!r}")
        if int(warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0 (training steps with the Iso-I objective), got {warmup_steps}")
        spec = ARCHITECTURES[arch]
        self.arch, self.x_shape = arch, spec.image_shape
        self.d_z = spec.default_d_z if d_z is None else int(d_z)
        self.variance: DecoderVariance = build_variance(variance, self.x_shape, mode=mode, value=value, eps=eps)
        self.variance.set_rescue(resolve_rescue(rescue, self.variance.auto_rescue, warmup_steps))
        self.rescue = self.variance.rescue_spec
        self.n_samples, self.beta = int(n_samples), float(beta)
        self.encoder, self.decoder = build_nets(arch, self.d_z, enc_out=2 * self.d_z,
                                                dec_channels=self.x_shape[0] + self.variance.head_channels())
        self.variance_lr_factor = float(variance_lr_factor)
        if self.variance_lr_factor != 1.0:
            if not isinstance(getattr(self.variance, "log_sigma2", None), nn.Parameter):
                raise ValueError(f"variance_lr_factor={variance_lr_factor!r} applies to a trainable -I Σx's "
                                 f"log-variance parameter; {variance!r} with mode={mode!r} has none. Leave it at 1.")
            self.param_groups = self._variance_param_groups
        self.register_load_state_dict_pre_hook(_legacy_warmup_keys)

    @property
    def warmup_steps(self) -> int:
        """Iso-I warm-up steps of a ``"warmup"`` rescue (0 for any other rescue)."""
        return int(getattr(self.variance.rescue, "steps", 0)) if self.variance.rescue.name == "warmup" else 0

    def _variance_param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Adam groups: every weight at ``lr``; the trainable log σx² at ``variance_lr_factor``·lr, no decay."""
        mine = self.variance.log_sigma2
        rest = [q for q in self.parameters() if q is not mine]
        return [{"params": rest, "lr": lr, "weight_decay": weight_decay},
                {"params": [mine], "lr": lr * self.variance_lr_factor, "weight_decay": 0.0}]

    def encode(self, x):
        h = self.encoder(x)
        mean, logvar = h.chunk(2, dim=-1)
        return Posterior(mean, logvar.exp())

    def _decode_all(self, z):
        """``...×d_z`` → (mean image in [0,1], variance head or None)."""
        lead = z.shape[:-1]
        out = self.decoder(z.reshape(-1, self.d_z))
        c = self.x_shape[0]
        mean = torch.sigmoid(out[:, :c]).reshape(*lead, *self.x_shape)
        head = out[:, c:].reshape(*lead, out.shape[1] - c, *self.x_shape[1:]) if out.shape[1] > c else None
        return mean, head

    def decode(self, z):
        return self._decode_all(z)[0]

    def loss(self, x, generator=None):
        q = self.encode(x)
        z = q.rsample(self.n_samples, generator)
        mu, head = self._decode_all(z)
        v = self.variance(x, mu, head)  # the rescue's training objective (Eq. 7b / 10 for "none")
        rec = v.rec
        kl = q.kl_to_standard_normal().mean()
        total = rec + self.beta * kl
        mse = ((x.unsqueeze(0) - mu) ** 2).flatten(2).sum(-1).mean()
        return LossOutput(total, {"loss": total.detach(), "rec": rec.detach(), "kl": kl.detach(), "mse": mse.detach(),
                                  "sigma2_mean": v.sigma2.mean()}, v.sigma2)

    def eval_sigma2(self, x: torch.Tensor, mu: torch.Tensor, head: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The Σx used to evaluate p(x|z) outside training (IWAE NLL): :meth:`DecoderVariance.eval_sigma2`.

        fixed/trainable: the model's own value (or head). MLE -I shapes: the running (EMA) training estimate.
        MLE -D shapes: the per-example estimate from the reconstruction μθ(μφ(x)) of x itself, plus ε — the
        choice that the paper's negative NLLs (Table 7) imply.
        """
        v = self.variance
        return v.eval_sigma2(x, mu, head, recon=self.reconstruct(x) if v.needs_recon else None)

    def decoder_log_prob(self, x, z):
        mu, head = self._decode_all(z)
        return self.variance.log_prob(x, mu, self.eval_sigma2(x, mu, head))


def _legacy_warmup_keys(module, state_dict, prefix, *args) -> None:
    """Checkpoints written before #29 kept the warm-up in the model (``steps_seen``, ``warmup_variance.*``); it now
    lives in the Σx's ``"warmup"`` rescue (``variance.rescue.steps_seen``, ``variance.rescue.warm.*``)."""
    for old in [k for k in state_dict if k.startswith(prefix + "warmup_variance.") or k == prefix + "steps_seen"]:
        tail = old[len(prefix):].replace("warmup_variance.", "warm.", 1)
        state_dict[prefix + "variance.rescue." + tail] = state_dict.pop(old)


# --- registry: the VAE rows of Tables 4–7 ------------------------------------------------
register_model("vae-gaussian", "VAE w/ Gaussian (sigma_x^2=1.0)", "baseline", variance="iso-i", mode="fixed",
               value=1.0)(GaussianVAE)
for _shape, _lab in [("iso-i", "Iso-I"), ("diag-i", "Diag-I"), ("iso-d", "Iso-D"), ("diag-d", "Diag-D")]:
    register_model(f"trainable-{_shape}", _lab, "trainable_Sigma_x", variance=_shape, mode="trainable")(GaussianVAE)
    register_model(f"mle-{_shape}", _lab, "proposed_MLE", variance=_shape, mode="mle")(GaussianVAE)
#: the low-rank Σx keeps a d×d running second moment of the residuals (d = C·H·W): MNIST-sized images only
LOWRANK_MAX_PIXELS = 1_024
for _r in (1, 4, 16, 64):  # beyond the paper: Σx = σ²I + UUᵀ by MLE (vaebook.variance.lowrank)
    register_model(f"lowrank-r{_r}", f"Low-rank r={_r} (MLE)", "beyond_paper", Needs(max_pixels=LOWRANK_MAX_PIXELS),
                   variance=f"lowrank-r{_r}", mode="mle")(GaussianVAE)


#: initialisations of :class:`Section4VAE`
INITS = ("random", "collapsed")


class Section4VAE(GenerativeModel):
    """Section 4's simplified VAE: q(z|x) = N(μφ(x), σz²·I) with ONE scalar σz², p(x|z) = N(μθ(z), σx²·I).

    ``sigma_z2``: ``"learned"`` (Table 1, stochastic encoding; log σz² is a parameter initialised at
    ``sigma_z2_init``), a positive float (fixed, Table E.8), or ``0`` (deterministic encoding: z = μφ(x),
    no KL term is defined, the L2 term ‖μφ(x)‖²/2 of the KL is kept so the latent scale stays anchored).
    ``sigma_x2``: a positive float (fixed, Table 1) or ``"mle"`` (Iso-I MLE, Table E.8).
    ``sigma_z2_lr_factor``: learning-rate multiplier of a learned log σz² (a short-budget choice of the
    ``medium`` preset of the smoothness experiment, not the paper's); when it is not 1 the model has a
    ``param_groups(lr, weight_decay)`` method, which the trainer uses for per-group Adam settings.
    ``init``: ``"random"`` (PyTorch's default initialisation; the paper's) or ``"collapsed"`` (the collapse
    question, :mod:`vaebook.experiments.collapse`; needs a learned σz²): the random initialisation, then

    * the encoder's last layer (the mean head) weight and bias 0, so μφ(x) = 0 for every x;
    * log σz² = 0, so q(z|x) = N(0, I) = p(z) and the KL is exactly 0;
    * the weight of the decoder's **first** layer (the one that reads z) 0, so μθ(z) does not depend on z.

    Why these layers: on the set {μφ = 0, σz² = 1, first decoder weight W₁ = 0} the expected gradient of the
    negative ELBO keeps every parameter that could couple z to x at its value, whatever the rest of the decoder
    is. The encoder's mean gets ∂/∂μ = μ (KL) + 0 (μθ ignores z) = 0 and σz² gets ½d_z(1 − 1/σz²) = 0, both
    exactly on every batch; W₁ gets E[δ₁(x) zᵀ] = E[δ₁(x)] E[z]ᵀ = 0 because z ~ N(0, I) is independent of x
    (δ₁: the backpropagated error at the first layer), so only minibatch noise moves it. The rest of the decoder
    trains towards the best constant output, the training mean image: the collapsed solution (KL = 0, MSE = the
    total pixel variance). Zeroing the decoder's *last* layer instead would leave the output at sigmoid(bias),
    one grey level per channel (a ConvTranspose2d has one bias per channel), and the expected gradient of that
    last weight, ∝ E[h(z)]·(output − mean image), would not vanish: the decoder would start depending on z through
    its random hidden features, so the model would start near, not on, the collapsed set. Setting the output to
    the mean image at step 0 would need the data (a data-dependent bias); here the output starts as a constant
    image of the random remaining layers and reaches the mean image by training, with z still ignored.
    ``"random"`` leaves the parameters exactly as before this argument existed (same values for a seed).
    Networks: Appendix D.1 (no batch-norm), encoder outputs only the mean.
    """

    has_likelihood = True

    def __init__(self, arch: str = "d1", d_z: Optional[int] = None, sigma_x2="mle", sigma_z2="learned",
                 sigma_z2_init: float = 1.0, sigma_z2_lr_factor: float = 1.0, init: str = "random"):
        super().__init__()
        spec = ARCHITECTURES[arch]
        self.arch, self.x_shape = arch, spec.image_shape
        self.d_z = spec.default_d_z if d_z is None else int(d_z)
        if sigma_x2 == "mle":
            self.variance = build_variance("iso-i", self.x_shape, mode="mle")
        else:
            if not float(sigma_x2) > 0:
                raise ValueError(f"sigma_x2 must be 'mle' or a positive float, got {sigma_x2!r}")
            self.variance = build_variance("iso-i", self.x_shape, mode="fixed", value=float(sigma_x2))
        self.encoder, self.decoder = build_nets(arch, self.d_z, enc_out=self.d_z, dec_channels=self.x_shape[0])
        if sigma_z2 == "learned":
            self.log_sigma_z2 = nn.Parameter(torch.tensor(math.log(sigma_z2_init)))
            self.deterministic = False
        else:
            sz = float(sigma_z2)
            if sz < 0:
                raise ValueError(f"sigma_z2 must be 'learned', 0 or a positive float, got {sigma_z2!r}")
            self.deterministic = sz == 0.0
            self.register_buffer("log_sigma_z2", torch.tensor(math.log(sz) if sz > 0 else -math.inf))
        self.stochastic_encoder = not self.deterministic
        if not float(sigma_z2_lr_factor) > 0:
            raise ValueError(f"sigma_z2_lr_factor must be positive, got {sigma_z2_lr_factor!r}")
        self.sigma_z2_lr_factor = float(sigma_z2_lr_factor)
        if sigma_z2 == "learned" and self.sigma_z2_lr_factor != 1.0:
            # only then: a model with ``param_groups`` is trained on its own, never in a batched (vmap) group
            self.param_groups = self._sigma_z2_param_groups
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.init = init
        if init == "collapsed":
            if sigma_z2 != "learned":
                raise ValueError(f"init='collapsed' needs sigma_z2='learned' (σz² = 1 is part of the collapsed "
                                 f"solution), got sigma_z2={sigma_z2!r}")
            self._collapse()

    @torch.no_grad()
    def _collapse(self) -> None:
        """The collapsed initialisation (class docstring): no random numbers drawn, only values set to 0."""
        head = [m for m in self.encoder.modules() if isinstance(m, nn.Linear)][-1]
        first = next(m for m in self.decoder.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)))
        head.weight.zero_()
        head.bias.zero_()
        first.weight.zero_()
        self.log_sigma_z2.zero_()

    def _sigma_z2_param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Adam groups: every weight at ``lr``; log σz² alone at ``sigma_z2_lr_factor``·lr, no weight decay."""
        rest = [q for n, q in self.named_parameters() if n != "log_sigma_z2"]
        return [{"params": rest, "lr": lr, "weight_decay": weight_decay},
                {"params": [self.log_sigma_z2], "lr": lr * self.sigma_z2_lr_factor, "weight_decay": 0.0}]

    @property
    def sigma_z2(self) -> torch.Tensor:
        return self.log_sigma_z2.exp()

    def encode(self, x):
        mean = self.encoder(x)
        if self.deterministic:
            return Posterior(mean, None)
        return Posterior(mean, self.sigma_z2.expand_as(mean))

    def decode(self, z):
        lead = z.shape[:-1]
        return torch.sigmoid(self.decoder(z.reshape(-1, self.d_z))).reshape(*lead, *self.x_shape)

    def loss(self, x, generator=None):
        q = self.encode(x)
        z = q.rsample(1, generator)
        mu = self.decode(z)
        v = self.variance(x, mu)
        if self.deterministic:
            kl = 0.5 * (q.mean**2).sum(-1).mean()
        else:
            kl = q.kl_to_standard_normal().mean()
        total = v.rec + kl
        mse = ((x.unsqueeze(0) - mu) ** 2).flatten(2).sum(-1).mean()
        return LossOutput(total, {"loss": total.detach(), "rec": v.rec.detach(), "kl": kl.detach(), "mse": mse.detach(),
                                  "sigma2_mean": v.sigma2.mean(), "sigma_z2": self.sigma_z2.detach()}, v.sigma2)

    def decoder_log_prob(self, x, z):
        mu = self.decode(z)
        return self.variance.log_prob(x, mu, self.variance.eval_sigma2(x, mu))


register_model("section4-vae", "Section-4 VAE (sigma_z^2 I encoder)", "section4",
               Needs(archs=("d1",)))(Section4VAE)  # Section 4's nets (App. D.1)
