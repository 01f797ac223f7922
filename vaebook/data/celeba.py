"""CelebA-64 (App. I.2): aligned 178×218 JPEGs, center crop 140×140, resize to 64×64.

Crop geometry (as torchvision's ``CenterCrop`` and the WAE/RAE code): ``left = (W-140)//2``,
``top = (H-140)//2``, i.e. box (19, 39, 159, 179) for 178×218 images.  Resize: Pillow
LANCZOS with antialiasing (see :mod:`vaebook.data.images`).

Layout: ``<root>/celeba/img_align_celeba/NNNNNN.jpg``, ``<root>/celeba/list_eval_partition.txt``
(0 = train, 1 = val, 2 = test) and, for a subset, ``<root>/celeba/SUBSET_MANIFEST.tsv`` (name, partition,
bytes, MD5 of each image).  Everything is verified before use (:mod:`.celeba_files`): the split file must be
the official one; with a manifest, exactly its images are used, each present with its size and MD5; without
one (the full release), the images that exist and are listed are used and :func:`celeba_split_counts` reports
how many each split has.  The decoded uint8 tensor of those images is cached on disk, keyed by their MD5s
(one decode for every split; a file changed after caching is decoded again, never served stale).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .celeba_files import MANIFEST_FILE, REFETCH_IMAGE, read_manifest, read_partition, select_images, verify_images
from .errors import ENV_HINT, CorruptFileError, EmptyImageFolderError, MissingDataError, check_size, unknown
from .images import cached_decode, scan_images
from .root import require_dir, resolve_data_root

CELEBA_SPLITS = {"train": 0, "val": 1, "test": 2}
CROP = 140
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
DEFAULT_RESAMPLE = "lanczos"
ALIGNED_SIZE = (178, 218)


def center_crop_box(width: int, height: int, crop: int = CROP):
    """(left, top, right, bottom) of the centred ``crop×crop`` square: top = (H-crop)//2, left = (W-crop)//2."""
    if width < crop or height < crop:
        raise CorruptFileError(f"image of size {width}×{height} is smaller than the {crop}×{crop} crop; "
                               "expected aligned CelebA images (178×218). Fix: replace it with the original file.")
    left, top = (width - crop) // 2, (height - crop) // 2
    return (left, top, left + crop, top + crop)


def celeba_dir(root=None) -> Path:
    return resolve_data_root(root) / "celeba"


def celeba_box(width: int, height: int):
    """The crop box of an aligned CelebA image, which must be 178×218 (every image of img_align_celeba is)."""
    if (width, height) != ALIGNED_SIZE:
        raise CorruptFileError(
            f"image is {width}×{height} pixels; expected {ALIGNED_SIZE[0]}×{ALIGNED_SIZE[1]} (an aligned CelebA image "
            f"of {IMAGE_DIR}). Fix: {REFETCH_IMAGE}, or remove it and its line from {MANIFEST_FILE}.")
    return center_crop_box(width, height)


def _present(root=None):
    """(image folder, sorted names to use, their partitions, their [name, size, md5] content signatures), after
    verifying the split file, the manifest (when there is one) and every image (see :mod:`.celeba_files`)."""
    base = require_dir(celeba_dir(root), "CelebA folder")
    img_dir = base / IMAGE_DIR
    if not img_dir.is_dir():
        raise MissingDataError(f"CelebA image folder missing: {str(img_dir)!r}. Expected the aligned JPEGs "
                               f"(img_align_celeba.zip from the CelebA release) unpacked there. " + ENV_HINT)
    table = read_partition(base / PARTITION_FILE)
    manifest = read_manifest(base / MANIFEST_FILE, table, base / PARTITION_FILE)
    names = select_images(img_dir, set(scan_images(img_dir)), table, manifest)
    if not names:
        raise EmptyImageFolderError(
            f"no CelebA image listed in {PARTITION_FILE} found in {str(img_dir)!r}; expected files named "
            "like 000001.jpg. Unpack img_align_celeba.zip there."
        )
    signature = verify_images(img_dir, names, manifest)
    return img_dir, names, torch.tensor([table[n] for n in names], dtype=torch.int8), signature


def celeba_split_counts(root=None) -> dict:
    """Number of present images per split, e.g. ``{"train": 9028, "val": 0, "test": 4640}``."""
    part = _present(root)[2]
    return {s: int((part == p).sum()) for s, p in CELEBA_SPLITS.items()}


def load_celeba(split: str = "train", root=None, size: int = 64, as_float: bool = False,
                resample: str = DEFAULT_RESAMPLE, use_cache: bool = True) -> torch.Tensor:
    """CelebA-64 images of ``split`` ("train"/"val"/"test"/"all") as uint8 ``N×3×size×size``
    (float32 in [0, 1] with ``as_float``), in file-name order."""
    if split not in CELEBA_SPLITS and split != "all":
        raise unknown("CelebA split", split, [*CELEBA_SPLITS, "all"])
    check_size("load_celeba", size)
    img_dir, names, part, signature = _present(root)
    if split != "all":
        sel = part == CELEBA_SPLITS[split]
        if not bool(sel.any()):
            counts = {s: int((part == p).sum()) for s, p in CELEBA_SPLITS.items()}
            raise EmptyImageFolderError(
                f"CelebA split {split!r} has no image in {str(img_dir)!r} (counts per split: {counts}); "
                f"add that split's JPEGs (see {PARTITION_FILE}) or use another split."
            )
    images = cached_decode("celeba", resolve_data_root(root), [os.path.join(img_dir, n) for n in names], size,
                           box=celeba_box, resample=resample, params={"crop": CROP}, use_cache=use_cache,
                           signature=signature)
    if split != "all":
        images = images[sel]
    return images.float().div_(255.0) if as_float else images
