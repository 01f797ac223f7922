"""MNIST from the original gzip idx files (torchvision layout ``<root>/MNIST/raw``).

The files are read with ``gzip`` + ``numpy`` (no per-image work) and checked against
torchvision's published MD5s.  A file's MD5 is computed once per process and remembered
under (path, size, mtime), so repeated loads skip it; the decoded arrays are memoised the
same way.  When files are missing and the network is reachable, they are downloaded with
``torchvision.datasets.MNIST(root, download=True)``.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import socket
from pathlib import Path

import numpy as np
import torch

from .errors import ENV_HINT, ChecksumError, CorruptFileError, InvalidArgumentError, MissingDataError, unknown
from .root import resolve_data_root

# split -> (images file, labels file); name -> (md5, number of items) as published by torchvision.
MNIST_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRROR_HOST = ("ossci-datasets.s3.amazonaws.com", 443)  # torchvision's first mirror

_MD5_OK: set = set()  # (path, size, mtime_ns, md5) whose MD5 matched
_ARRAYS: dict = {}  # (path, size, mtime_ns) -> decoded numpy array


def mnist_raw_dir(root=None) -> Path:
    return resolve_data_root(root) / "MNIST" / "raw"


def _stat_key(path: Path):
    st = os.stat(path)
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_md5(path: Path) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has its published MD5 (memoised)."""
    expected = MNIST_MD5[path.name]
    key = (*_stat_key(path), expected)
    if key in _MD5_OK:
        return
    got = md5_file(path)
    if got != expected:
        raise ChecksumError(
            f"{str(path)!r}: MD5 is {got}, expected {expected} (torchvision's published value; "
            f"file size {key[1]} bytes). The file is corrupt or not the original LeCun gzip: delete it "
            "and re-download (load_mnist(..., download=True) or torchvision.datasets.MNIST(root, "
            "download=True)), or copy the verified files from shared/data/MNIST/raw."
        )
    _MD5_OK.add(key)


def _parse_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise CorruptFileError(f"{str(path)!r} is not a readable gzip file ({e}); delete and re-download it.") from e
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptFileError(f"{str(path)!r}: {len(raw)} bytes, too short for an idx header of {header} bytes.")
    got_magic = int.from_bytes(raw[:4], "big")
    if got_magic != magic:
        raise CorruptFileError(f"{str(path)!r}: idx magic number {got_magic:#010x}, expected {magic:#010x}.")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    n = int(np.prod(dims))
    if len(raw) - header != n:
        raise CorruptFileError(
            f"{str(path)!r}: header says {dims} = {n} bytes of data, found {len(raw) - header}; "
            "the file is truncated or corrupt, delete and re-download it."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    key = _stat_key(path)
    arr = _ARRAYS.get(key)
    if arr is None:
        arr = _parse_idx(path, magic, ndim)
        _ARRAYS[key] = arr
    return arr


def network_reachable(host=MNIST_MIRROR_HOST, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def download_mnist(root=None) -> Path:
    """Download MNIST with torchvision into ``<root>/MNIST/raw`` (torchvision checks MD5s too)."""
    from .. import _tvshim  # noqa: F401  (must precede the torchvision import)
    import torchvision

    root = resolve_data_root(root)
    torchvision.datasets.MNIST(str(root), train=True, download=True)
    return mnist_raw_dir(root)


def load_mnist(split: str = "train", root=None, as_float: bool = False, download: bool | None = None):
    """Load an MNIST split as ``(images, labels)``.

    images: uint8 ``N×1×28×28`` (or float32 in [0, 1] with ``as_float``); labels: int64 ``N``.
    ``download``: None = download only if files are missing and the network is reachable;
    False = never; True = download if missing (error if that fails).
    """
    if split not in MNIST_SPLITS:
        raise unknown("MNIST split", split, MNIST_SPLITS)
    if download not in (None, True, False):
        raise InvalidArgumentError(f"load_mnist: argument 'download' = {download!r}; expected None (download only when "
                                   "missing and online), True or False. Fix: pass one of these.")
    raw = mnist_raw_dir(root)
    files = [raw / name for name in MNIST_SPLITS[split]]
    missing = [p for p in files if not p.is_file()]
    if missing and download is not False:
        if download or network_reachable():
            download_mnist(root)
            missing = [p for p in files if not p.is_file()]
    if missing:
        raise MissingDataError(
            f"MNIST file(s) missing: {', '.join(repr(str(p)) for p in missing)}. Expected the original gzip "
            f"idx files in {str(raw)!r} (torchvision layout <root>/MNIST/raw). Fix: run with network access "
            "(load_mnist(..., download=True) uses torchvision.datasets.MNIST), or copy them there. " + ENV_HINT
        )
    for p in files:
        verify_md5(p)
    images = _read_idx(files[0], 0x00000803, 3)
    labels = _read_idx(files[1], 0x00000801, 1)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise CorruptFileError(
            f"{str(files[0])!r} holds images of shape {images.shape} and {str(files[1])!r} "
            f"{labels.shape[0]} labels; expected N×28×28 images and N labels."
        )
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    if as_float:
        x = x.float().div_(255.0)
    return x, y
