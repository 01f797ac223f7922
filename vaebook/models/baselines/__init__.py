"""Section-6 baselines (every row of Tables 4–7 that is not a Gaussian VAE), registered on import:

==================  ===================  ============================================
registry name       paper row label      module
==================  ===================  ============================================
``vae-bernoulli``   VAE w/ Bernoulli     :mod:`.bernoulli` (MNIST)
``vae-mol``         VAE w/ MoL           :mod:`.mol` (CelebA, CelebA-HQ)
``ae``              AE                   :mod:`.ae`
``wae-mmd``         WAE-MMD              :mod:`.wae`
``rae``             RAE                  :mod:`.rae` (‖z‖² term only)
``rae-gp``          RAE-GP               :mod:`.rae` (+ gradient penalty, Eq. 4)
``rae-l2``          RAE-L2               :mod:`.rae` (+ decoder L2)
``rae-sn``          RAE-SN               :mod:`.rae` (spectrally normalised decoder)
==================  ===================  ============================================

All use the Appendix-I networks of :mod:`vaebook.nets`. The VAE w/ Gaussian rows live in
:mod:`vaebook.models.vae`.
"""
from vaebook.models.baselines.ae import AE
from vaebook.models.baselines.bernoulli import BernoulliVAE, bernoulli_log_prob
from vaebook.models.baselines.mol import MoLVAE, mol_log_prob, mol_mean, mol_sample
from vaebook.models.baselines.rae import RAE, frozen_bn_forward, jacobian_sq_frobenius, rae_hyperparameters
from vaebook.models.baselines.wae import WAEMMD, imq_kernel, mmd_imq

BASELINE_NAMES = ("vae-bernoulli", "vae-mol", "ae", "wae-mmd", "rae", "rae-gp", "rae-l2", "rae-sn")

__all__ = ["AE", "BernoulliVAE", "MoLVAE", "RAE", "WAEMMD", "BASELINE_NAMES", "bernoulli_log_prob", "mol_log_prob",
           "mol_mean", "mol_sample", "frozen_bn_forward", "jacobian_sq_frobenius", "rae_hyperparameters",
           "imq_kernel", "mmd_imq"]
