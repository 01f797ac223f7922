"""Where generation latents come from (Tables 4 and 6): the prior, or an ex-post density on the codes.

* ``"prior"``: z ~ N(0, I) (only for models with ``has_prior``);
* ``"2nd-vae"``: a second-stage VAE fitted to the training codes (Dai & Wipf [18]);
* ``"gmm10"`` / ``"gmm100"``: a full-covariance GMM fitted to the training codes (RAE [22]).

Usage::

    sampler = fit_latent_sampler(model, train_images, source="gmm10")
    images = sample(model, 64, source="gmm10", sampler=sampler)

For an evaluation over many models, :func:`source_skip_reason` says when a source does not apply,
:func:`fit_sampler` fits one reproducibly (seeded initialisation, one BLAS thread for small GMMs) and
:func:`keep_first` keeps the first generated images for figures while they stream into the FID.
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterable, Iterator, Optional

import torch
from threadpoolctl import threadpool_limits

from vaebook._util import ImagesLike, encode_means, eval_mode, model_device, model_dtype

from .gmm import GMMSampler
from .second_stage import SecondStageVAE

SOURCES = ("prior", "2nd-vae", "gmm10", "gmm100")

__all__ = ["GMMSampler", "SecondStageVAE", "SOURCES", "fit_latent_sampler", "sample_latents", "sample",
           "generate_images", "source_skip_reason", "fit_sampler", "keep_first"]


def _label(model) -> str:
    return getattr(model, "label", type(model).__name__)


def fit_latent_sampler(model, train_images: Optional[ImagesLike], source: str = "gmm10", batch_size: int = 500,
                       latents: Optional[torch.Tensor] = None, **kw):
    """Fit the ex-post density for ``source`` on the encoder means of ``train_images`` (or on given ``latents``).

    Returns ``None`` for ``"prior"``. Extra keywords go to :class:`GMMSampler` (``seed``,
    ``max_iter``, ...) or to :class:`SecondStageVAE` and its ``fit`` (``width``, ``depth``,
    ``epochs``, ``batch_size_2nd``, ``lr``, ``seed``, ``max_steps``, ``device``; default: the model's device).
    """
    if source == "prior":
        if not getattr(model, "has_prior", True):
            raise ValueError(f"{_label(model)} has no prior to sample from; use '2nd-vae', 'gmm10' or 'gmm100'")
        return None
    if latents is None:
        if train_images is None:
            raise ValueError("fit_latent_sampler needs train_images or latents")
        latents = encode_means(model, train_images, batch_size)
    m = re.fullmatch(r"gmm(\d+)", source)
    if m:
        return GMMSampler(n_components=int(m.group(1)), **kw).fit(latents)
    if source == "2nd-vae":
        arch = {k: kw.pop(k) for k in ("width", "depth", "d_u", "standardize", "init_log_gamma") if k in kw}
        if "batch_size_2nd" in kw:
            kw["batch_size"] = kw.pop("batch_size_2nd")
        device = kw.pop("device", None) or model_device(model)
        vae2 = SecondStageVAE(latents.shape[1], **arch).to(device)
        return vae2.fit(latents, **kw)
    raise ValueError(f"unknown latent source {source!r}; expected one of {SOURCES} (or 'gmm<K>')")


def sample_latents(model, n: int, source: str = "prior", sampler=None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``n×d_z`` latents on the model's device and dtype from the prior or a fitted sampler."""
    dev, dt = model_device(model), model_dtype(model)
    if source == "prior" and sampler is None:
        if not getattr(model, "has_prior", True):
            raise ValueError(f"{_label(model)} has no prior to sample from; fit a sampler with fit_latent_sampler()")
        z = torch.randn(n, model.d_z, generator=generator, dtype=torch.float64)
    else:
        if sampler is None:
            raise ValueError(f"source {source!r} needs a fitted sampler: sampler = fit_latent_sampler(model, train_images, {source!r})")
        want = getattr(sampler, "source", source)
        if want != source:
            raise ValueError(f"the given sampler is for {want!r}, not {source!r}")
        z = sampler.sample(n, generator=generator)
    return z.to(dev, dt)


@torch.no_grad()
def sample(model, n: int, source: str = "prior", sampler=None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Decode ``n`` latents from ``source`` (decoder means μθ(z), ``n×C×H×W``)."""
    z = sample_latents(model, n, source, sampler, generator)
    with eval_mode(model):
        return model.decode(z)


def generate_images(model, n: int, source: str = "prior", sampler=None, seed: int = 0,
                    batch_size: int = 500, generator: Optional[torch.Generator] = None) -> Iterator[torch.Tensor]:
    """Yield ``n`` generated images in batches of ``batch_size`` (CPU tensors), seeded."""
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        yield sample(model, b, source, sampler, g).cpu()
        done += b


def source_skip_reason(model, source: str, n_codes: int) -> str:
    """Why latents from ``source`` cannot be drawn for ``model`` fitted on ``n_codes`` training codes
    (``""`` when they can): no prior for a deterministic encoder, fewer codes than GMM components."""
    if source not in SOURCES and not re.fullmatch(r"gmm\d+", source):
        raise ValueError(f"unknown latent source {source!r}; expected one of {SOURCES} (or 'gmm<K>')")
    if source == "prior" and not getattr(model, "has_prior", True):
        return "no prior (deterministic encoder)"
    m = re.fullmatch(r"gmm(\d+)", source)
    if m and n_codes < int(m.group(1)):
        return f"{source} needs at least {m.group(1)} training codes, {n_codes} were given"
    return ""


def _few_threads(n_values: int):
    """One BLAS/OpenMP thread for small scikit-learn fits (their thread pools spin badly on a busy CPU)."""
    return threadpool_limits(1) if n_values <= 2_000_000 else contextlib.nullcontext()


def fit_sampler(model, source: str, latents: torch.Tensor, seed: int = 0, second_stage: Optional[dict] = None,
                gmm_max_iter: int = 100):
    """The ex-post density of ``source`` fitted to the training codes ``latents`` (``None`` for the prior).

    ``"2nd-vae"``: a :class:`SecondStageVAE` on the model's device, its initialisation seeded by ``seed``
    (without touching the global RNG); ``second_stage``: its sizes and fit settings (``width``, ``depth``,
    ``epochs``, ``batch_size``, ``max_steps``, ``lr``). ``"gmm<K>"``: :class:`GMMSampler` with ``K``
    components, ``gmm_max_iter`` EM iterations, on the CPU.
    """
    if source == "prior":
        return fit_latent_sampler(model, None, "prior")
    if source == "2nd-vae":
        kw = dict(second_stage or {})
        arch = {k: kw.pop(k) for k in ("width", "depth", "d_u", "standardize", "init_log_gamma") if k in kw}
        if "batch_size_2nd" in kw:
            kw["batch_size"] = kw.pop("batch_size_2nd")
        with torch.random.fork_rng(devices=[]):  # the initialisation draws on the CPU generator only
            torch.manual_seed(int(seed))
            vae2 = SecondStageVAE(latents.shape[1], **arch)
        vae2 = vae2.to(model_device(model))
        return vae2.fit(latents, seed=int(seed), **kw)
    with _few_threads(latents.numel()):
        return fit_latent_sampler(model, None, source, latents=latents.detach().cpu(), seed=int(seed),
                                  max_iter=int(gmm_max_iter))


def keep_first(batches: Iterable[torch.Tensor], n: int, store: list) -> Iterator[torch.Tensor]:
    """Pass image batches through unchanged, appending (CPU copies of) the first ``n`` images to ``store``
    (figures from the FID samples, so nothing is decoded twice)."""
    kept = 0
    for b in batches:
        if kept < n:
            store.append(b[: n - kept].detach().cpu())
            kept += store[-1].shape[0]
        yield b
