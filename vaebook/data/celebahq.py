"""CelebA-HQ-128 (App. I.3): 1024×1024 images resized to 128×128, no crop.

Layout: the images (png/jpg/jpeg) directly inside ``<root>/celebahq/``.  No images ship with
this project (see shared/data/SOURCES.md); put them there yourself.

Split (CelebA-HQ has no official one; the paper says "default"): files in natural name order
(``2.jpg`` before ``10.jpg``), the last 10 % (rounded, at least one image when there are two
or more) are the test set, the rest train.  For the 30,000 images this is the usual
27,000 / 3,000 split.  Resize: Pillow LANCZOS with antialiasing, as CelebA-64.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .errors import ENV_HINT, CorruptFileError, EmptyImageFolderError, MissingDataError, check_size, unknown
from .images import cached_decode, list_images
from .root import resolve_data_root

CELEBAHQ_SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.1
DEFAULT_RESAMPLE = "lanczos"


def celebahq_dir(root=None) -> Path:
    return resolve_data_root(root) / "celebahq"


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def celebahq_split_names(root=None) -> dict:
    """``{"train": [...], "test": [...]}`` file names under the deterministic split above."""
    folder = celebahq_dir(root)
    if not folder.is_dir():
        raise MissingDataError(
            f"CelebA-HQ folder not found: {str(folder)!r}. Put the 30,000 CelebA-HQ 1024×1024 images "
            "(png or jpg, e.g. CelebAMask-HQ's CelebA-HQ-img/) directly in that folder. " + ENV_HINT
        )
    names = sorted(list_images(folder), key=_natural_key)
    if not names:
        raise EmptyImageFolderError(f"no png/jpg image in {str(folder)!r}; expected the CelebA-HQ 1024×1024 images there.")
    n_train, _ = celebahq_split_sizes(len(names))
    return {"train": names[:n_train], "test": names[n_train:]}


def celebahq_split_sizes(n: int) -> tuple:
    """(train, test) sizes for ``n`` images: the last ``round(0.1 n)`` (at least 1 when n >= 2) are test."""
    n_test = 0 if n < 2 else max(1, round(TEST_FRACTION * n))
    return n - n_test, n_test


def _square_box(width: int, height: int):
    if width != height:
        raise CorruptFileError(f"CelebA-HQ image of size {width}×{height}; expected square (1024×1024) images.")
    return (0, 0, width, height)


def load_celebahq(split: str = "train", root=None, size: int = 128, as_float: bool = False,
                  resample: str = DEFAULT_RESAMPLE, use_cache: bool = True) -> torch.Tensor:
    """CelebA-HQ images of ``split`` ("train"/"test"/"all") as uint8 ``N×3×size×size`` (float with ``as_float``)."""
    if split not in CELEBAHQ_SPLITS:
        raise unknown("CelebA-HQ split", split, CELEBAHQ_SPLITS)
    check_size("load_celebahq", size)
    parts = celebahq_split_names(root)
    names = parts["train"] + parts["test"]
    folder = celebahq_dir(root)
    images = cached_decode("celebahq", resolve_data_root(root), [folder / n for n in names], size,
                           box=_square_box, resample=resample, params={"test_fraction": TEST_FRACTION},
                           use_cache=use_cache)
    n_train = len(parts["train"])
    if split == "train":
        images = images[:n_train]
    elif split == "test":
        if not parts["test"]:
            raise EmptyImageFolderError(f"CelebA-HQ folder {str(folder)!r} has {len(names)} image(s): too few for a test split.")
        images = images[n_train:]
    return images.float().div_(255.0) if as_float else images
