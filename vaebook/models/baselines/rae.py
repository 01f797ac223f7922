"""Regularised deterministic autoencoders (RAE, Ghosh et al. 2020 [22]): "RAE", "RAE-GP" rows of
Tables 4–6, plus the RAE paper's other variants RAE-L2 and RAE-SN.

Loss per image (batch mean):  ‖x − μθ(z)‖² + β·‖z‖²/2 + λ·R(θ),  z = μφ(x) (deterministic),

* ``"rae"``    R = 0 (the RAE paper's plain "RAE" row: only the ‖z‖² term; this is what our
  "RAE" label means);
* ``"rae-l2"`` R = Σ‖W‖² over the decoder's weight matrices/kernels (biases and batch-norm
  affine parameters excluded), an explicit loss term (not optimiser weight decay);
* ``"rae-gp"`` R = ‖∇_z μθ(z)‖²_F at the encoded z — the gradient penalty of Eq. (4) with a
  hand-set weight instead of σz² (Section 6); computed exactly with d_z forward-mode JVPs
  (``torch.func.jvp`` + ``vmap``), differentiable w.r.t. θ and φ;
* ``"rae-sn"`` no penalty; every Linear/ConvTranspose layer of the decoder is spectrally normalised
  (``torch.nn.utils.parametrizations.spectral_norm``, one power iteration per training forward, as
  in Miyato et al. [24]). Only the decoder, as the RAE paper describes it (its code also normalises
  the encoder); the decoder's batch-norm layers are kept, as in the RAE code, so the decoder's
  Lipschitz constant is not bounded by 1. SN normalises each weight reshaped to a matrix
  (``out × in·k·k``; dim 1 = output channels for ConvTranspose), not the convolution operator.

β and λ are converted from the official RAE configurations (ParthaEth/Regularized_autoencoders-RAE-,
``configurations/config.py``), whose loss is per-pixel mean squared error + β_R·mean_j z_j² +
λ_R·R: multiplying by d_x gives β = 2·β_R·d_x/d_z and λ = λ_R·d_x in our units. Their values:
MNIST RAE β_R = 5e-4; RAE-L2 β_R = 1e-4, λ_R = 1e-7; RAE-GP β_R = 1e-4, λ_R = 0.5e-7; RAE-SN
β_R = 9e-3. CelebA RAE/RAE-L2/RAE-GP β_R = 1e-4, λ_R = 1e-7; RAE-SN β_R = 2.4e-3 (CelebA values
are reused for CelebA-HQ). They are passed as ``beta_code``/``lam_code`` from each dataset's
registration (``model_defaults`` in :mod:`vaebook.data`, with the GP cost settings); the builder's
defaults are the MNIST values. Their GP is a different quantity (the squared gradient of ‖μθ(z)‖²
w.r.t. z), so the transferred GP weight is only an order of magnitude. Their L2 regulariser
covers only the transposed convolutions; ours covers all decoder weights.

Batch-norm and the GP: with batch statistics the decoder output of one image depends on the
whole batch. The penalty uses the per-image Jacobian with the normalisation statistics of the
current batch held fixed (running statistics in eval mode), i.e. ∂μθ(z_i)/∂z_i of the
per-image affine-normalised network; the statistics still carry gradients w.r.t. θ.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vaebook.latent import jacobian_sq_frobenius
from vaebook.models.base import LossOutput, register_model
from vaebook.models.baselines._common import DeterministicAutoencoder, per_image_sq_error

REGULARISERS = (None, "l2", "gp", "sn")

# variant -> (beta_R, lambda_R) of the official RAE code for MNIST: the builder's defaults (see module docstring)
RAE_CODE_MNIST = {"rae": (5e-4, 0.0), "rae-l2": (1e-4, 1e-7), "rae-gp": (1e-4, 0.5e-7), "rae-sn": (9e-3, 0.0)}


def rae_hyperparameters(beta_code: float, lam_code: float, d_x: int, d_z: int) -> tuple[float, float]:
    """(β, λ) in vaebook's units (loss = ‖x − μ‖² + β‖z‖²/2 + λR) from the RAE code's (β_R, λ_R)
    (per-pixel-mean loss + β_R·mean_j z_j² + λ_R·R): β = 2·β_R·d_x/d_z, λ = λ_R·d_x."""
    return 2.0 * float(beta_code) * d_x / d_z, float(lam_code) * d_x


def frozen_bn_forward(decoder: nn.Sequential, z: torch.Tensor, out_act: Callable = torch.sigmoid):
    """Run ``decoder`` on ``z`` normally (batch-norm layers update their running statistics) and return
    ``(out_act(output), f)``, where ``f`` is the same network as a per-example function: every batch-norm
    layer is replaced by the affine map with the statistics it used on this batch (batch mean and
    biased variance in training mode, running statistics in eval mode). ``f(z)`` equals the output."""
    if not isinstance(decoder, nn.Sequential):
        raise TypeError(f"frozen_bn_forward needs an nn.Sequential decoder, got {type(decoder).__name__}")
    stats = []
    h = z
    for layer in decoder:
        if isinstance(layer, _BatchNorm):
            if layer.training or layer.running_mean is None:
                dims = [0] + list(range(2, h.dim()))
                stats.append((h.mean(dims), h.var(dims, unbiased=False)))
            else:
                stats.append((layer.running_mean, layer.running_var))
        h = layer(h)

    def f(zz: torch.Tensor) -> torch.Tensor:
        it = iter(stats)
        g = zz
        for layer in decoder:
            if isinstance(layer, _BatchNorm):
                mean, var = next(it)
                shape = (1, -1) + (1,) * (g.dim() - 2)
                g = (g - mean.view(shape)) * torch.rsqrt(var.view(shape) + layer.eps)
                if layer.affine:
                    g = g * layer.weight.view(shape) + layer.bias.view(shape)
            else:
                g = layer(g)
        return out_act(g)

    return out_act(h), f


def decoder_weights(decoder: nn.Module) -> list[torch.Tensor]:
    """The weight matrices / kernels of the decoder's Linear and (transposed) conv layers."""
    return [m.weight for m in decoder.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]


class RAE(DeterministicAutoencoder):
    """Regularised autoencoder; ``regulariser`` ∈ {None, "l2", "gp", "sn"} (see module docstring).

    ``beta_code``/``lam_code``: the RAE code's (β_R, λ_R), converted by :func:`rae_hyperparameters`
    (default: its MNIST values for this variant); ``beta``/``lam`` set β/λ in our units directly instead.
    ``gp_directions`` ("exact" or a number of random directions) and ``gp_examples`` (None = the whole
    batch, or the first n examples) trade the GP's cost (memory: d_z decoder passes per example are
    kept for the backward pass); the datasets' registrations use exact on the whole batch for MNIST,
    exact on 8 examples for CelebA, 8 random directions on 8 examples for CelebA-HQ.
    """

    def __init__(self, arch: str = "mnist", d_z: Optional[int] = None, regulariser: Optional[str] = None,
                 beta: Optional[float] = None, lam: Optional[float] = None, beta_code: Optional[float] = None,
                 lam_code: Optional[float] = None, gp_directions: Union[str, int] = "exact",
                 gp_examples: Optional[int] = None, sn_power_iterations: int = 1):
        super().__init__(arch, d_z)
        if regulariser not in REGULARISERS:
            raise ValueError(f"regulariser must be one of {REGULARISERS}, got {regulariser!r}")
        self.regulariser = regulariser
        variant = "rae" if regulariser is None else f"rae-{regulariser}"
        code_b, code_l = RAE_CODE_MNIST[variant]
        b0, l0 = rae_hyperparameters(code_b if beta_code is None else beta_code,
                                     code_l if lam_code is None else lam_code, self.d_x, self.d_z)
        self.beta = float(b0 if beta is None else beta)
        self.lam = float(l0 if lam is None else lam)
        self.gp_directions = gp_directions
        self.gp_examples = gp_examples
        if regulariser == "sn":
            from torch.nn.utils.parametrizations import spectral_norm

            for m in list(self.decoder.modules()):
                if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                    spectral_norm(m, n_power_iterations=int(sn_power_iterations))

    def gradient_penalty(self, z: torch.Tensor, generator: Optional[torch.Generator] = None):
        """(mean over examples of ‖∇_z μθ(z)‖²_F, decoded mean image of the whole batch)."""
        mu, f = frozen_bn_forward(self.decoder, z)
        zs = z if self.gp_examples is None else z[: int(self.gp_examples)]
        gp = jacobian_sq_frobenius(f, zs, self.gp_directions, generator)  # Eq. (6) integrand, vaebook.latent
        return gp.mean(), mu

    def loss(self, x, generator=None):
        z = self.encode(x).mean
        terms = {}
        if self.regulariser == "gp":
            reg, mu = self.gradient_penalty(z, generator)
            terms["gp"] = reg.detach()
        else:
            mu = self.decode(z)
            if self.regulariser == "l2":
                reg = sum(w.pow(2).sum() for w in decoder_weights(self.decoder))
                terms["l2_dec"] = reg.detach()
            else:
                reg = z.new_zeros(())
        mse = per_image_sq_error(x, mu).mean()
        z_l2 = 0.5 * z.pow(2).sum(-1).mean()
        total = mse + self.beta * z_l2 + self.lam * reg
        terms = {"loss": total.detach(), "mse": mse.detach(), "z_l2": z_l2.detach(), **terms}
        return LossOutput(total, terms)


register_model("rae", "RAE", "baseline", regulariser=None)(RAE)
register_model("rae-l2", "RAE-L2", "baseline", regulariser="l2")(RAE)
register_model("rae-gp", "RAE-GP", "baseline", regulariser="gp")(RAE)
register_model("rae-sn", "RAE-SN", "baseline", regulariser="sn")(RAE)
