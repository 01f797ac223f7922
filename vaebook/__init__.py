"""vaebook: a library and executable book reproducing Takida et al. (2022),
"Preventing Oversmoothing in VAE via Generalized Variance Parameterization"."""
from vaebook import _tvshim  # noqa: F401  (must run before any torchvision import)

__version__ = "0.1.0"
