"""The interface every generative model in vaebook shares (VAEs, AE, RAE, WAE, ...).

Evaluation code (``vaebook.metrics``, ``vaebook.posterior``) and the notebooks only use
this interface, so a new model is one subclass plus one ``@register_model`` line.

Shapes: images ``x`` are float tensors ``B×C×H×W`` in [0, 1]; latents ``z`` are ``B×d_z``.
Loss units follow the paper: per-example sums over pixels/latent dimensions, averaged
over the minibatch (nats for likelihood terms).
"""
from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator, Optional

import torch
from torch import nn

from vaebook.checks import check_build_model
from vaebook.data.registry import DATASETS, dataset_spec
from vaebook.latent import slerp
from vaebook.nets import ARCHITECTURES


#: ``(shape, dtype, device) -> standard-normal noise tensor of that shape`` (see :func:`posterior_noise`).
NoiseSource = Callable[[tuple, torch.dtype, torch.device], torch.Tensor]
_NOISE = threading.local()  # per thread: the active NoiseSource (absent/None: draw with torch.randn)


def noise_source() -> Optional[NoiseSource]:
    """The noise source active in the calling thread, or ``None`` (then :meth:`Posterior.rsample` draws)."""
    return getattr(_NOISE, "source", None)


@contextlib.contextmanager
def posterior_noise(source: Optional[NoiseSource]) -> Iterator[Optional[NoiseSource]]:
    """While active, in the calling thread only, :meth:`Posterior.rsample` takes its standard-normal ε of
    z = μφ + ε·σφ (Eq. 4's reparameterisation) from ``source(shape, dtype, device)`` instead of drawing
    it; other threads and the ``Posterior`` class are untouched. Nests (the previous source is restored);
    ``None`` switches a source off. Used by :mod:`vaebook.train.batched` to feed per-model noise into ``vmap``."""
    prev = noise_source()
    _NOISE.source = source
    try:
        yield source
    finally:
        _NOISE.source = prev


@dataclass
class Posterior:
    """Encoder output q(z|x) = N(mean, diag(var)); ``var is None`` for a deterministic encoder."""

    mean: torch.Tensor
    var: Optional[torch.Tensor] = None

    def rsample(self, n: int = 1, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n×B×d_z`` reparameterised samples (the mean repeated when deterministic).

        ε comes from ``torch.randn(generator=generator)``, or, while a :func:`posterior_noise` source is
        active in this thread, from that source (``generator`` is then unused)."""
        m = self.mean.unsqueeze(0).expand(n, *self.mean.shape)
        if self.var is None:
            return m
        source = noise_source()
        if source is None:
            eps = torch.randn(m.shape, generator=generator, device=m.device, dtype=m.dtype)
        else:
            eps = source(tuple(m.shape), m.dtype, m.device)
        return m + eps * self.var.sqrt().unsqueeze(0)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) summed over latent dims; ``z`` is ``K×B×d_z`` → ``K×B``."""
        if self.var is None:
            raise ValueError("a deterministic encoder has no density q(z|x)")
        var = self.var.unsqueeze(0)
        return -0.5 * (((z - self.mean.unsqueeze(0)) ** 2) / var + var.log() + math.log(2 * math.pi)).sum(-1)

    def kl_to_standard_normal(self) -> torch.Tensor:
        """Closed-form D_KL(q(z|x) || N(0, I)) per example (the regulariser of Eq. 3)."""
        if self.var is None:
            raise ValueError("KL to the prior is undefined for a deterministic encoder")
        return 0.5 * (self.var + self.mean**2 - self.var.log() - 1.0).sum(-1)


@dataclass
class LossOutput:
    """What ``model.loss`` returns: the scalar to minimise and named scalar terms for logging.

    ``sigma2`` is the decoder variance the step implies (MLE value, trainable value or fixed
    value; shape depends on the Σx parameterisation), detached, for logging and Table 3.
    """

    total: torch.Tensor
    terms: dict = field(default_factory=dict)
    sigma2: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class Needs:
    """What a model needs of a dataset's images, checked against its :class:`~vaebook.data.DatasetSpec`:
    ``channels`` (allowed C of C×H×W), ``max_pixels`` (largest C·H·W), ``archs`` (allowed architectures);
    ``None`` = anything. A model registered without needs fits every registered dataset."""

    channels: Optional[tuple] = None
    max_pixels: Optional[int] = None
    archs: Optional[tuple] = None

    def misfit(self, spec) -> str:
        """Why a dataset ``spec`` does not fit ("" when it does)."""
        c, d = int(spec.x_shape[0]), math.prod(int(v) for v in spec.x_shape)
        if self.channels is not None and c not in self.channels:
            return f"needs images with {' or '.join(map(str, self.channels))} channel(s), {spec.name!r} has {c}"
        if self.max_pixels is not None and d > self.max_pixels:
            return f"needs at most {self.max_pixels:,} values per image, {spec.name!r} has {d:,}"
        if self.archs is not None and spec.arch not in self.archs:
            return f"needs architecture {' or '.join(self.archs)}, {spec.name!r} uses {spec.arch!r}"
        return ""


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: ``name`` (what code and notebooks use), the paper's row ``label``,
    the table ``group`` (``baseline`` / ``trainable_Sigma_x`` / ``proposed_MLE``, as in
    ``vaebook.paper``), the ``builder(arch, d_z=None, **kw) -> GenerativeModel``, what it ``needs`` of a dataset
    and ``only`` (an explicit list of dataset names, for a model whose science is tied to them; empty = any that
    fits its needs)."""

    name: str
    label: str
    group: str
    builder: Callable
    needs: Needs = Needs()
    only: tuple = ()

    def misfit(self, dataset: str) -> str:
        """Why the registered dataset ``dataset`` cannot train this model ("" when it can)."""
        if self.only and dataset not in self.only:
            return f"{self.name!r} is registered for {list(self.only)} only"
        return self.needs.misfit(dataset_spec(dataset))

    def fits(self, dataset: str) -> bool:
        return not self.misfit(dataset)

    @property
    def datasets(self) -> tuple:
        """The registered datasets this model fits (computed now: a dataset registered later is included)."""
        return tuple(d for d in DATASETS if self.fits(d))


MODEL_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, label: str, group: str = "baseline", needs: Optional[Needs] = None,
                   datasets: tuple = (), **fixed_kwargs):
    """Decorator for a model class or builder function: ``build_model(name, arch)`` then calls it as
    ``builder(arch=arch, **fixed_kwargs, **user_kwargs)`` and sets ``model.label``. ``needs``: what the model needs
    of a dataset (:class:`Needs`); ``datasets``: restrict it to these dataset names (rarely needed)."""
    if needs is not None and not isinstance(needs, Needs):
        raise TypeError(f"register_model({name!r}): needs = {needs!r}; expected a vaebook.models.Needs "
                        "(e.g. Needs(channels=(1,))) or None")
    if isinstance(datasets, str):
        raise TypeError(f"register_model({name!r}): datasets = {datasets!r}; expected a tuple of dataset names")

    def deco(obj):
        if name in MODEL_REGISTRY:
            raise ValueError(f"model name {name!r} registered twice; give the new model another name")

        def builder(arch: str, **kw):
            model = obj(arch=arch, **{**fixed_kwargs, **kw})
            model.label = label
            model.registry_name = name
            return model

        MODEL_REGISTRY[name] = ModelSpec(name, label, group, builder, needs or Needs(), tuple(datasets))
        return obj

    return deco


def build_model(name: str, arch: str, **kwargs) -> "GenerativeModel":
    """Build a registered model (e.g. ``build_model("mle-diag-d", "mnist")``)."""
    check_build_model(name, arch, MODEL_REGISTRY, ARCHITECTURES, DATASETS)
    return MODEL_REGISTRY[name].builder(arch, **kwargs)


class GenerativeModel(nn.Module):
    """Base class: encode / decode / reconstruct / sample / interpolate / loss.

    Subclasses set ``label`` (the paper's row label, e.g. ``"RAE-GP"``), ``has_prior``
    (whether sampling from N(0, I) is meaningful) and ``has_likelihood`` (whether
    :meth:`decoder_log_prob` exists, i.e. IWAE NLL can be computed).
    """

    label: str = "model"
    registry_name: str = ""
    has_prior: ClassVar[bool] = True
    has_likelihood: ClassVar[bool] = False
    stochastic_encoder: ClassVar[bool] = True

    d_z: int

    # -- to implement -------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Posterior:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean image μθ(z) in [0, 1] (``B×C×H×W``)."""
        raise NotImplementedError

    def loss(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> LossOutput:
        raise NotImplementedError

    def decoder_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over pixels; ``z`` is ``K×B×d_z`` → ``K×B``."""
        raise NotImplementedError(f"{type(self).__name__} defines no likelihood p(x|z)")

    # -- shared ---------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """μθ(μφ(x)): decode the encoder mean."""
        return self.decode(self.encode(x).mean)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Decode ``n`` draws from the prior N(0, I) (or the given latents ``z``)."""
        if z is None:
            if not self.has_prior:
                raise ValueError(f"{self.label} has no prior to sample from; use vaebook.posterior (GMM / 2nd-stage VAE)")
            dev = next(self.parameters()).device
            z = torch.randn(n, self.d_z, generator=generator, device=dev)
        return self.decode(z)

    @torch.no_grad()
    def interpolate(self, x1: torch.Tensor, x2: torch.Tensor, ratio: torch.Tensor | float = 0.5) -> torch.Tensor:
        """Decode the spherical interpolation (Section 6.2) between the encodings of ``x1`` and ``x2``."""
        z1, z2 = self.encode(x1).mean, self.encode(x2).mean
        return self.decode(slerp(z1, z2, ratio))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
