"""Decode, crop and resize image files into one cached uint8 tensor (shared by CelebA and CelebA-HQ).

Resizing uses Pillow's ``Image.resize`` with the LANCZOS filter (formerly ``Image.ANTIALIAS``),
whose support widens with the downscale factor (i.e. it antialiases).  This is the filter of
the WAE/RAE CelebA pipelines the paper follows (App. I.2 cites [25] and [22]); the filter and
antialiasing change FID, so they are part of every cache key.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

from . import cache as _cache
from .errors import CorruptFileError, unknown

RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def decode_image(path, size: int, box=None, resample: str = "lanczos") -> np.ndarray:
    """RGB ``size×size×3`` uint8 array: decode ``path``, crop to ``box(w, h)`` (if given), resize.

    ``box`` is a callable ``(width, height) -> (left, top, right, bottom)``; cropping happens before
    resizing, so the filter never reads pixels outside the crop.
    """
    if resample not in RESAMPLE:
        raise unknown("resample filter", resample, RESAMPLE)
    try:
        with Image.open(path) as im:
            im.load()  # raises on truncated files (Pillow's LOAD_TRUNCATED_IMAGES stays False)
            im = im.convert("RGB")
            if box is not None:
                try:
                    im = im.crop(box(*im.size))
                except CorruptFileError as e:  # geometry the recipe cannot handle: name the file
                    raise CorruptFileError(f"{str(path)!r}: {e}") from None
            im = im.resize((size, size), resample=RESAMPLE[resample])
            return np.asarray(im, dtype=np.uint8)
    except CorruptFileError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptFileError(
            f"cannot decode image {str(path)!r}: {e}. Expected a complete JPEG/PNG file; the file is "
            "truncated or corrupt: delete it or replace it with the original download."
        ) from e


def decode_stack(paths, size: int, box=None, resample: str = "lanczos") -> torch.Tensor:
    """uint8 tensor ``N×3×size×size`` of the decoded images (one loop; ~0.6 ms per CelebA JPEG)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        out[i] = decode_image(p, size, box, resample)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def cached_decode(kind: str, root: Path, paths, size: int, box=None, resample: str = "lanczos",
                  params: dict | None = None, use_cache: bool = True, signature=None) -> torch.Tensor:
    """:func:`decode_stack` behind the on-disk cache (see :mod:`vaebook.data.cache`).

    The key covers the files' names, sizes and mtimes, ``size``, ``resample``, ``params`` (crop)
    and the Pillow version; a hit returns without decoding anything.  ``signature`` may pass the
    files' ``[name, size, mtime_ns]`` list when the caller already has it (see :func:`scan_images`).
    """
    if resample not in RESAMPLE:
        raise unknown("resample filter", resample, RESAMPLE)
    recipe = {"kind": kind, "size": size, "resample": resample, "params": params or {}, "pillow": PIL.__version__,
              "folders": sorted({os.path.dirname(os.path.abspath(p)) for p in paths})}
    key = _cache.cache_key({**recipe, "files": signature if signature is not None else _cache.file_signature(paths)})
    path = None
    if use_cache:
        # "<kind>_<size>_<recipe>_<key>.pt": an entry with the same recipe but other file signatures (a file
        # replaced or re-copied with a new mtime) is superseded and removed when this one is written
        slot = f"{kind}_{size}_{_cache.cache_key(recipe)[:8]}_"
        path = _cache.cache_dir(root) / f"{slot}{key}.pt"
        hit = _cache.load_cached(path)
        if isinstance(hit, torch.Tensor) and hit.shape == (len(paths), 3, size, size) and hit.dtype == torch.uint8:
            return hit
    images = decode_stack(paths, size, box, resample)
    if path is not None:
        try:
            _cache.save_atomic(images, path)
            _cache.prune_superseded(path, slot)
        except OSError:
            pass  # an unwritable cache only costs time
    return images


def scan_images(folder: Path) -> dict:
    """``{name: [name, size, mtime_ns]}`` for the image files (jpg/jpeg/png) directly inside ``folder``."""
    out = {}
    with os.scandir(folder) as it:
        for e in it:
            if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file():
                st = e.stat()
                out[e.name] = [e.name, st.st_size, st.st_mtime_ns]
    return out


def list_images(folder: Path):
    """Sorted image files (jpg/jpeg/png) directly inside ``folder``."""
    return sorted(scan_images(folder))
