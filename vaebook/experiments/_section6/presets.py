"""The Section-6 scale: the paper's datasets and evaluation sizes, the presets (training overrides, FID sample
counts, sizes per dataset) and the size parameters every Section-6 page takes.

Choices the paper does not state (ours): the preset data sizes (the first ``n`` images of a split),
the FID sample counts and feature sizes (only ``full`` uses the paper's 10,000 samples and 2048-d
features; other FIDs are marked as not comparable), the second-stage VAE sizes and GMM iterations.
"""
from __future__ import annotations

from typing import Sequence

from vaebook.experiments import _datasets6 as ds
from vaebook.experiments._datasets6 import ANY
from vaebook.lab.params import ParamSpec

#: the paper's datasets of Section 6: the default selection (any registered dataset can be selected by name)
DATASETS = ("mnist", "celeba64", "celebahq128")
PAPER_FID_SAMPLES, PAPER_FID_DIMS, PAPER_IWAE_K = 10_000, 2048, 500

#: short presets (≤ 1,000 steps): the trainable -I rows learn log σx² at 50× the lr (0.05), so it can reach the
#: MLE's ≈ ln 0.0125 within ~100 steps; at the paper's lr 1e-3 it stops near e^−0.6 = 0.55 after 600 steps and the
#: MLE-vs-trainable comparison would be against a variance that was never learned (our choice; the paper's runs
#: are long enough not to need it, so ``full`` keeps the paper's optimiser)
FAIR_TRAINABLE = {f"trainable-{s}": dict(variance_lr_factor=50.0) for s in ("iso-i", "diag-i")}

#: The Section-6 scale. ``train``: overrides of the dataset spec's optimiser setting (App. I); ``models``:
#: the default rows per dataset (absent = every row the paper prints for it); the rest per dataset (``"*"``: any
#: dataset not named) or global. ``n_train``/``n_test`` are each dataset's :meth:`DatasetSpec.size` at the preset.
PRESETS = {
    # seconds on CPU: a code-path test only. CelebA nets cost ~10 GFLOP (64²) / ~80 GFLOP (128²) per decoded
    # image, so the CelebA smoke runs use a couple of models, tiny batches and a handful of images.
    "smoke": dict(
        train={"mnist": dict(epochs=1, max_steps=1, batch_size=32),
               "celeba64": dict(epochs=1, max_steps=1, batch_size=4),
               "celebahq128": dict(epochs=1, max_steps=1, batch_size=2), ANY: dict(epochs=1, max_steps=1, batch_size=32)},
        fid_samples={"mnist": 8, "celeba64": 8, "celebahq128": 4, ANY: 8}, fid_dims=64, iwae_k=4, tsne_points=32,
        second_stage=dict(width=32, depth=1, epochs=1, max_steps=3, batch_size=32), gmm_max_iter=20, eval_batch=64,
        models={"celeba64": ["vae-gaussian", "mle-diag-d"], "celebahq128": ["mle-diag-d"]},
        model_kwargs={"mnist": dict(FAIR_TRAINABLE), ANY: dict(FAIR_TRAINABLE)}),
    # subsets and 8 epochs: trends; CelebA needs a GPU at this size. FIDs are compared by ordering only.
    "medium": dict(
        train={d: dict(epochs=8) for d in (*DATASETS, ANY)},
        fid_samples={"mnist": 1_000, "celeba64": 1_000, "celebahq128": 300, ANY: 1_000}, fid_dims=2048, iwae_k=100,
        tsne_points=1_000, second_stage=dict(width=256, depth=2, epochs=20), gmm_max_iter=100, eval_batch=500,
        models={}, model_kwargs={d: dict(FAIR_TRAINABLE) for d in (*DATASETS, ANY)}),
    # what 2 CPU cores give in under 2 hours (measured: ~0.3 s per MNIST training step, ~2.2 s for RAE-GP with the
    # exact Jacobian penalty, ~7 Inception images/s): MNIST only, 600 steps of batch 64 drawn from all 60,000
    # training images (0.64 of an epoch), RAE-GP's penalty from one random direction per example (an unbiased
    # estimate of ‖J‖²_F), FID/KID from 300 samples against 1,000 test images with 2048-d features, IWAE k = 500 on
    # the 1,000 test images. CelebA needs a GPU.
    "cpu": dict(
        train={d: dict(epochs=1, max_steps=600) for d in ("mnist", ANY)},
        model_kwargs={d: {"rae-gp": dict(gp_directions=1), **FAIR_TRAINABLE} for d in ("mnist", ANY)},
        fid_samples={"mnist": 300, ANY: 300}, fid_dims=2048, iwae_k=500, tsne_points=500,
        second_stage=dict(width=256, depth=2, epochs=10), gmm_max_iter=100, eval_batch=250, models={},
        datasets=["mnist"]),
    # the paper: whole splits, its epochs, 10,000 FID samples with 2048-d Inception features, k = 500.
    "full": dict(
        train={},
        fid_samples={d: PAPER_FID_SAMPLES for d in (*DATASETS, ANY)}, fid_dims=PAPER_FID_DIMS, iwae_k=PAPER_IWAE_K,
        tsne_points=2_000, second_stage=dict(width=1024, depth=3, epochs=50), gmm_max_iter=100, eval_batch=500,
        models={}),
}
for _name, _s in PRESETS.items():  # the paper datasets' sizes at each preset, from their specs (one source)
    _s["n_train"], _s["n_test"] = ds.sizes(_name, DATASETS)

#: The size knobs every Section-6 page takes (``None`` = the preset's value for each dataset).
SIZE_PARAMS = {
    "models": ParamSpec("list", allow_none=True, default=None,
                        doc="registered model names; None = every row the paper prints (a subset at smoke)"),
    "n_train": ParamSpec("int", min=2, max=200_000, allow_none=True, default=None,
                         doc="training images per dataset (at most the split); None = preset"),
    "n_test": ParamSpec("int", min=2, max=30_000, allow_none=True, default=None,
                        doc="test images per dataset (at most the split); None = preset"),
}
FID_PARAMS = {
    "fid_samples": ParamSpec("int", min=2, max=50_000, allow_none=True, default=None,
                             doc="images per FID; None = preset (paper: 10,000)"),
    "fid_dims": ParamSpec("int", choices=(64, 192, 768, 2048), allow_none=True, default=None,
                          doc="Inception feature size; None = preset (paper: 2048)"),
}


def experiment_presets(keys: Sequence[str], datasets) -> dict:
    """An experiment's ``presets``: the Section-6 settings ``keys`` of each preset, plus its default
    ``datasets`` (a list, or ``{preset: list}`` with every dataset for a preset not named), narrowed to the preset's
    own ``datasets`` where it names some (the ``cpu`` preset: MNIST only) and the experiment has any of them. A preset
    at which none of those datasets has a size is left out (Table 6 has no ``cpu`` preset: CelebA-HQ has no cpu size)."""
    out = {}
    for name, s in PRESETS.items():
        dl = list(datasets.get(name, DATASETS) if isinstance(datasets, dict) else datasets)
        narrowed = [d for d in dl if d in s.get("datasets", dl)] or dl
        if any(d in s["n_train"] for d in narrowed):
            out[name] = {**{k: s[k] for k in keys}, "datasets": narrowed}
    return out



#: training images of the paper's splits (the whole training split; CelebA-HQ: 27,000 of 30,000)
PAPER_TRAIN_IMAGES = {"mnist": 60_000, "celeba64": 162_770, "celebahq128": 27_000}

__all__ = ["DATASETS", "PAPER_FID_SAMPLES", "PAPER_FID_DIMS", "PAPER_IWAE_K", "FAIR_TRAINABLE", "PRESETS",
           "SIZE_PARAMS", "FID_PARAMS", "experiment_presets", "PAPER_TRAIN_IMAGES"]
