"""CelebA-64 (App. I.2): aligned 178×218 JPEGs, center crop 140×140, resize to 64×64.

Crop geometry (as torchvision's ``CenterCrop`` and the WAE/RAE code): ``left = (W-140)//2``,
``top = (H-140)//2``, i.e. box (19, 39, 159, 179) for 178×218 images.  Resize: Pillow
LANCZOS with antialiasing (see :mod:`vaebook.data.images`).

Layout: ``<root>/celeba/img_align_celeba/NNNNNN.jpg`` and ``<root>/celeba/list_eval_partition.txt``
(0 = train, 1 = val, 2 = test).  A partial folder is fine: the images that exist are used and
:func:`celeba_split_counts` reports how many each split has.  The decoded uint8 tensor of all
present images is cached on disk (one decode for every split).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import ENV_HINT, CorruptFileError, EmptyImageFolderError, MissingDataError, unknown
from .images import cached_decode, scan_images
from .root import require_dir, resolve_data_root

CELEBA_SPLITS = {"train": 0, "val": 1, "test": 2}
CROP = 140
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
DEFAULT_RESAMPLE = "lanczos"
_PARTITIONS: dict = {}  # (path, size, mtime_ns) -> parsed split file (the last one read)


def center_crop_box(width: int, height: int, crop: int = CROP):
    """(left, top, right, bottom) of the centred ``crop×crop`` square: top = (H-crop)//2, left = (W-crop)//2."""
    if width < crop or height < crop:
        raise CorruptFileError(f"image of size {width}×{height} is smaller than the {crop}×{crop} crop; "
                               "expected aligned CelebA images (178×218).")
    left, top = (width - crop) // 2, (height - crop) // 2
    return (left, top, left + crop, top + crop)


def celeba_dir(root=None) -> Path:
    return resolve_data_root(root) / "celeba"


def read_partition(path: Path) -> dict:
    """``{image name: partition}`` from ``list_eval_partition.txt`` (CRLF or LF)."""
    if not path.is_file():
        raise MissingDataError(
            f"CelebA split file missing: {str(path)!r}. Expected the official list_eval_partition.txt "
            "(202,599 lines 'NNNNNN.jpg P', P = 0 train / 1 val / 2 test) from the CelebA release "
            f"(Google Drive 'Eval' folder) next to {IMAGE_DIR}/. " + ENV_HINT
        )
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _PARTITIONS:
        tokens = path.read_bytes().decode("ascii", "replace").split()
        names, parts = tokens[0::2], tokens[1::2]
        if len(names) != len(parts) or not set(parts) <= {"0", "1", "2"}:
            _raise_bad_line(path)
        _PARTITIONS.clear()
        _PARTITIONS[key] = dict(zip(names, map(int, parts)))
    return _PARTITIONS[key]


def _raise_bad_line(path: Path):
    with open(path, "r", encoding="ascii", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if fields and (len(fields) != 2 or fields[1] not in ("0", "1", "2")):
                break
    raise CorruptFileError(f"{str(path)!r} line {lineno}: {line.strip()!r}; expected "
                           "'<name>.jpg <0|1|2>'. Replace the file with the official one.")


def _present(root=None):
    """(image folder, sorted names present and listed in the split file, their partitions, their
    [name, size, mtime_ns] signatures)."""
    base = require_dir(celeba_dir(root), "CelebA folder")
    img_dir = base / IMAGE_DIR
    if not img_dir.is_dir():
        raise MissingDataError(f"CelebA image folder missing: {str(img_dir)!r}. Expected the aligned JPEGs "
                               f"(img_align_celeba.zip from the CelebA release) unpacked there. " + ENV_HINT)
    table = read_partition(base / PARTITION_FILE)
    scan = scan_images(img_dir)
    names = sorted(n for n in scan if n in table)
    if not names:
        raise EmptyImageFolderError(
            f"no CelebA image listed in {PARTITION_FILE} found in {str(img_dir)!r}; expected files named "
            "like 000001.jpg. Unpack img_align_celeba.zip there."
        )
    return img_dir, names, torch.tensor([table[n] for n in names], dtype=torch.int8), [scan[n] for n in names]


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
                           box=center_crop_box, resample=resample, params={"crop": CROP}, use_cache=use_cache,
                           signature=signature)
    if split != "all":
        images = images[sel]
    return images.float().div_(255.0) if as_float else images
