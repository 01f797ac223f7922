"""Evaluation metrics of the paper, written against :class:`vaebook.models.base.GenerativeModel`.

========================  =====================================================  ===========
module                    quantity                                               paper
========================  =====================================================  ===========
``recon``                 MSE (per image, summed over pixels), mean KL           Tables 1,4,6
``mi``                    MI upper bound on an evaluation batch                  Eq. (D.1)
``smoothness``            expected gap Δ²(s²), ELS (exact Jacobian)              Eqs. (5),(6)
``fid``                   FID with pytorch-fid's Inception, offline weights      Eq. (12)
``interpolation``         slerp, FID of interpolations                           Table 5
``nll``                   IWAE bound on the NLL (k = 500)                        Table 7
``tsne``                  t-SNE of the codes with prior draws                    Figs. D.4, J.6
========================  =====================================================  ===========

``fid`` is imported lazily (it pulls in torchvision / pytorch-fid).
"""
from .interpolation import interpolation_fid, slerp
from .mi import gaussian_mixture_mi, mi_upper_bound
from .nll import iwae_nll
from .recon import kl_per_image, mean_kl, mean_mse, mse_per_image
from .smoothness import expected_gap, expected_local_smoothness, jacobian_sq_frobenius, smoothness_report

__all__ = [
    "mse_per_image", "mean_mse", "kl_per_image", "mean_kl",
    "gaussian_mixture_mi", "mi_upper_bound",
    "expected_gap", "expected_local_smoothness", "jacobian_sq_frobenius", "smoothness_report",
    "slerp", "interpolation_fid", "iwae_nll",
]
