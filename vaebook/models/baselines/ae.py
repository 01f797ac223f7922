"""Plain deterministic autoencoder ("AE" rows of Tables 4–6): minimise ‖x − μθ(μφ(x))‖².

No prior (``has_prior = False``): generation needs an ex-post density on the codes
(second-stage VAE or GMM, :mod:`vaebook.posterior`), which is why Table 4 prints "-" under
"N(0, I)" for AE.
"""
from __future__ import annotations

from vaebook.models.base import LossOutput, register_model
from vaebook.models.baselines._common import DeterministicAutoencoder, per_image_sq_error


@register_model("ae", "AE", "baseline")
class AE(DeterministicAutoencoder):
    """Deterministic encoder with ``d_z`` outputs; loss = per-image squared error, batch mean."""

    def loss(self, x, generator=None):
        z = self.encode(x).mean
        mse = per_image_sq_error(x, self.decode(z)).mean()
        return LossOutput(mse, {"loss": mse.detach(), "mse": mse.detach()})
