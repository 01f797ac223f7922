"""Verification of the CelebA files: the official split file, the subset manifest, every image.

* ``list_eval_partition.txt`` must be the official file: 202,599 lines ``NNNNNN.jpg P`` for 000001.jpg …
  202599.jpg in order, with the official split (1–162,770 train, 162,771–182,637 val, the rest test). This is
  checked line by line (CRLF or LF), so a file cut at a line boundary, a line naming another image, an image
  listed twice (e.g. in train and in test) or a changed partition is reported with its line number.
* ``SUBSET_MANIFEST.tsv`` (optional; shipped with a subset): one line ``name<TAB>partition<TAB>bytes<TAB>md5``
  per image of the subset. When present, the images used are exactly the manifest's: each must exist, have
  the manifest's size and MD5 and the split file's partition; an image in the folder and the split file but
  not in the manifest is an error, not silently used or skipped.
* Every image is hashed (MD5) whenever it is used: the decode cache is keyed by these content hashes, so a
  file changed after caching (even with its size and mtime restored) is never served from the stale cache.
  Hashes are remembered per process under (path, size, mtime, ctime, inode); writing a file changes its ctime.

Every error names the file, what was expected and how to fix it.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

from .errors import ChecksumError, CorruptFileError, MissingDataError

N_IMAGES = 202_599
LAST_TRAIN, LAST_VAL = 162_770, 182_637
PARTITION_MD5 = "d32c9cbf5e040fd4025c592c306e6668"  # torchvision's MD5 of the official file (CRLF)
MANIFEST_FILE = "SUBSET_MANIFEST.tsv"
REFETCH_SPLIT = ("Replace it with the official list_eval_partition.txt (CelebA release, Google Drive 'Eval' folder; "
                 f"202,599 lines, MD5 {PARTITION_MD5} with CRLF line ends; see shared/data/SOURCES.md).")
REFETCH_IMAGE = ("re-fetch the original file(s) into img_align_celeba/ (img_align_celeba.zip of the CelebA release, "
                 "or the source named in shared/data/SOURCES.md)")
_NAME = re.compile(r"^\d{6}\.jpg$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_SPLITS: dict = {}  # stat key -> {name: partition} (the last split file verified)
_HASHES: dict = {}  # stat key -> md5 of an image


def official_partition(number: int) -> int:
    """The official partition of image ``number`` (1-based): 0 train, 1 val, 2 test."""
    return 0 if number <= LAST_TRAIN else (1 if number <= LAST_VAL else 2)


def official_partition_text(newline: str = "\r\n") -> str:
    """The content of the official ``list_eval_partition.txt`` (CRLF, as released; MD5 :data:`PARTITION_MD5`)."""
    return "".join(f"{i:06d}.jpg {official_partition(i)}{newline}" for i in range(1, N_IMAGES + 1))


@functools.lru_cache(maxsize=1)
def _official_tokens() -> list:
    return official_partition_text("\n").split()


def stat_key(path) -> tuple:
    """(path, size, mtime_ns, ctime_ns, inode): changes whenever the file's content is written."""
    st = os.stat(path)
    return (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _split_fault(path: Path, lines: list) -> CorruptFileError:
    """The first way ``lines`` differ from the official split file, as an error naming the line."""
    seen: dict = {}
    for i, line in enumerate(lines, 1):
        fields = line.split()
        if fields and len(fields) == 2 and fields[0] in seen:
            return CorruptFileError(
                f"{str(path)!r} lists {fields[0]} twice (lines {seen[fields[0]]} and {i}); every image must appear "
                f"once, in one partition. {REFETCH_SPLIT}")
        if fields:
            seen[fields[0]] = i
    for i, line in enumerate(lines, 1):
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            return CorruptFileError(f"{str(path)!r} line {i}: {line.strip()!r}; expected '<name>.jpg <0|1|2>'. "
                                    f"{REFETCH_SPLIT}")
        if i > N_IMAGES:
            return CorruptFileError(f"{str(path)!r} has more than {N_IMAGES:,} lines (line {i}: {line.strip()!r}); "
                                    f"the official file ends at 202599.jpg. {REFETCH_SPLIT}")
        want = f"{i:06d}.jpg"
        if fields[0] != want:
            return CorruptFileError(f"{str(path)!r} line {i} names {fields[0]!r}; expected {want} (the official file "
                                    f"lists 000001.jpg … 202599.jpg in order). {REFETCH_SPLIT}")
        if int(fields[1]) != official_partition(i):
            return CorruptFileError(f"{str(path)!r} line {i} puts {want} in partition {fields[1]}; the official split "
                                    f"has {official_partition(i)}. {REFETCH_SPLIT}")
    return CorruptFileError(f"{str(path)!r} has {len(lines):,} lines; the official file has {N_IMAGES:,} (it is cut "
                            f"short after {lines[-1].split()[0] if lines else 'nothing'}). {REFETCH_SPLIT}")


def read_partition(path: Path) -> dict:
    """``{image name: partition}`` from ``list_eval_partition.txt``, verified to be the official file."""
    if not path.is_file():
        raise MissingDataError(
            f"CelebA split file missing: {str(path)!r}. Expected the official list_eval_partition.txt "
            "(202,599 lines 'NNNNNN.jpg P', P = 0 train / 1 val / 2 test) from the CelebA release "
            "(Google Drive 'Eval' folder) next to img_align_celeba/. Pass root=... or set VAEBOOK_DATA.")
    key = stat_key(path)
    if key not in _SPLITS:
        text = path.read_bytes().decode("ascii", "replace")
        tokens = text.split()
        names, parts = tokens[0::2], tokens[1::2]
        if tokens != _official_tokens():
            raise _split_fault(path, [ln for ln in text.splitlines() if ln.strip()])
        _SPLITS.clear()
        _SPLITS[key] = dict(zip(names, map(int, parts)))
    return _SPLITS[key]


def read_manifest(path: Path, partition: dict, split_path: Path):
    """``{name: (partition, bytes, md5)}`` of ``SUBSET_MANIFEST.tsv``, or None when the folder has none; each line
    checked (format, no duplicate) and its partition against the split file's."""
    if not path.is_file():
        return None
    fix = (f"Restore {MANIFEST_FILE} from the data source (shared/data/SOURCES.md), or delete it to use the images "
           "unverified.")
    out: dict = {}
    for i, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.rstrip("\r").split("\t")
        if (len(f) != 4 or not _NAME.match(f[0]) or f[1] not in ("0", "1", "2") or not f[2].isdigit()
                or not _MD5.match(f[3])):
            raise CorruptFileError(f"{str(path)!r} line {i}: {line.strip()[:80]!r}; expected 'NNNNNN.jpg<TAB>0|1|2"
                                   f"<TAB>bytes<TAB>32-hex md5'. {fix}")
        if f[0] in out:
            raise CorruptFileError(f"{str(path)!r} lists {f[0]} twice (line {i} repeats it). {fix}")
        if partition.get(f[0]) != int(f[1]):
            raise CorruptFileError(
                f"{str(path)!r} line {i} puts {f[0]} in partition {f[1]} but {str(split_path)!r} has "
                f"{partition.get(f[0], 'no such image')}. {fix}")
        out[f[0]] = (int(f[1]), int(f[2]), f[3])
    return out


def md5_of(path) -> tuple:
    """``(size, MD5)`` of an image file, the MD5 remembered under its :func:`stat_key`."""
    key = stat_key(path)
    if key not in _HASHES:
        with open(path, "rb") as fh:
            _HASHES[key] = hashlib.md5(fh.read()).hexdigest()
    return key[1], _HASHES[key]


def _listing(names: list) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5:,} more" if len(names) > 5 else "")


def verify_images(img_dir: Path, names: list, manifest) -> list:
    """``[name, size, md5]`` of every image in ``names`` (the decode cache's content key); with a manifest,
    every image must exist with the manifest's size and MD5 (:class:`MissingDataError`, :class:`ChecksumError`)."""
    missing = [n for n in names if not os.path.isfile(img_dir / n)]
    if missing:
        raise MissingDataError(
            f"{len(missing):,} CelebA image(s) listed in {MANIFEST_FILE} are missing from {str(img_dir)!r}: "
            f"{_listing(missing)}. Fix: {REFETCH_IMAGE}, or remove their lines from {MANIFEST_FILE}.")
    sig, bad = [], []
    for n in names:
        p = img_dir / n
        size, md5 = md5_of(p)
        if manifest is not None and (size, md5) != manifest[n][1:]:
            bad.append(f"{n} ({size} bytes, MD5 {md5}; manifest: {manifest[n][1]} bytes, MD5 {manifest[n][2]})")
        sig.append([n, size, md5])
    if bad:
        raise ChecksumError(
            f"{len(bad):,} CelebA image(s) in {str(img_dir)!r} differ from {MANIFEST_FILE}: {_listing(bad)}. The "
            f"image or its manifest line was changed: {REFETCH_IMAGE}, or restore "
            f"{MANIFEST_FILE}.")
    return sig


def select_images(img_dir: Path, present: set, partition: dict, manifest) -> list:
    """The sorted names to use: the manifest's (every one must be present; a present image of the split file
    that the manifest lacks is an error), else the present images the split file lists."""
    if manifest is None:
        return sorted(n for n in present if n in partition)
    extra = sorted(n for n in present if n in partition and n not in manifest)
    if extra:
        raise CorruptFileError(
            f"{len(extra):,} CelebA image(s) in {str(img_dir)!r} are not in {MANIFEST_FILE}: {_listing(extra)}. The "
            f"folder and its manifest disagree: remove those files, add their lines (name, partition, bytes, md5) to "
            f"the manifest, or delete {MANIFEST_FILE} to use every listed image unverified.")
    return sorted(manifest)


__all__ = ["read_partition", "read_manifest", "verify_images", "select_images", "official_partition",
           "official_partition_text", "md5_of", "stat_key", "N_IMAGES", "PARTITION_MD5", "MANIFEST_FILE"]
