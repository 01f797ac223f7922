"""Generative models sharing :class:`~vaebook.models.base.GenerativeModel`; build one by name with
:func:`build_model`. ``MODEL_REGISTRY`` maps names to :class:`ModelSpec` (paper label, table group)."""
from vaebook.models.base import (MODEL_REGISTRY, GenerativeModel, LossOutput, ModelSpec, Needs, Posterior,
                                 build_model, register_model)
from vaebook.models import vae  # noqa: F401  (registers the VAE rows)
from vaebook.models.vae import GaussianVAE, Section4VAE

import importlib.util as _ilu

if _ilu.find_spec("vaebook.models.baselines") is not None:  # Section-6 baselines, registered on import
    from vaebook.models import baselines  # noqa: F401

__all__ = ["MODEL_REGISTRY", "GenerativeModel", "LossOutput", "ModelSpec", "Needs", "Posterior", "build_model",
           "register_model", "GaussianVAE", "Section4VAE"]
