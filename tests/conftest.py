"""Shared fixtures: the real data root (skipped when absent) and tiny generated data sets."""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vaebook.models import Posterior

REPO = Path(__file__).resolve().parents[1]


def _real_root() -> Path:
    env = os.environ.get("VAEBOOK_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data folder ($VAEBOOK_DATA or ../shared/data); skips the test when it is absent."""
    root = _real_root()
    if not root.is_dir():
        pytest.skip(f"real data folder {root} absent (set VAEBOOK_DATA)")
    return root


def write_idx_gz(path: Path, arr: np.ndarray) -> str:
    """Write ``arr`` (uint8) as a gzip idx file (magic 0x0803 for 3-D, 0x0801 for 1-D); return its MD5."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = (0x0800 + arr.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """A root with MNIST/raw holding 12 train and 5 test random images; MD5 table patched to match."""
    from vaebook.data import mnist

    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    arrays, md5 = {}, {}
    for split, n in (("train", 12), ("test", 5)):
        img_name, lab_name = mnist.MNIST_SPLITS[split]
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        md5[img_name] = write_idx_gz(raw / img_name, x)
        md5[lab_name] = write_idx_gz(raw / lab_name, y)
        arrays[split] = (x, y)
    monkeypatch.setattr(mnist, "MNIST_MD5", md5)
    return tmp_path, arrays


def write_celeba(root: Path, images: dict, partition: dict, quality: int = 95, manifest: bool = False) -> Path:
    """Write ``{name: HxWx3 uint8}`` JPEGs into root/celeba/img_align_celeba and the official split file
    (CRLF, 202,599 lines, as released); ``partition`` ({name: 0|1|2}) must agree with it. With ``manifest``,
    also a SUBSET_MANIFEST.tsv (name, partition, bytes, md5) of the written images."""
    from PIL import Image

    from vaebook.data.celeba_files import official_partition, official_partition_text

    for n, part in partition.items():
        assert official_partition(int(n[:6])) == part, f"{n} is in partition {official_partition(int(n[:6]))}"
    img_dir = root / "celeba" / "img_align_celeba"
    img_dir.mkdir(parents=True, exist_ok=True)
    for name, arr in images.items():
        Image.fromarray(arr).save(img_dir / name, quality=quality)
    (root / "celeba" / "list_eval_partition.txt").write_bytes(official_partition_text().encode())
    if manifest:
        lines = ["# file\tpartition(0=train,1=val,2=test)\tbytes\tmd5"]
        for n in sorted(n for n in images if n in partition):
            data = (img_dir / n).read_bytes()
            lines.append(f"{n}\t{partition[n]}\t{len(data)}\t{hashlib.md5(data).hexdigest()}")
        (root / "celeba" / "SUBSET_MANIFEST.tsv").write_text("\n".join(lines) + "\n")
    return img_dir


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Point VAEBOOK_CACHE at an empty temporary folder."""
    c = tmp_path / "cache"
    monkeypatch.setenv("VAEBOOK_CACHE", str(c))
    return c


@pytest.fixture(autouse=True)
def _default_dtype_is_restored():
    """Guard: no test may leave torch's default dtype changed for the tests after it."""
    import torch

    before = torch.get_default_dtype()
    yield
    assert torch.get_default_dtype() == before, "a test changed torch's default dtype without restoring it"


@pytest.fixture
def float64():
    """float64 as torch's default dtype for one test, restored afterwards (a module opts in with
    ``pytestmark = pytest.mark.usefixtures("float64")``; a module-level switch would leak into later files)."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)



class ConstantModel(torch.nn.Module):
    """A model whose encoder is deterministic and whose decoder returns one fixed image: every residual is
    x − image, known exactly (for closed-form checks of the residual statistics)."""

    def __init__(self, image):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.image = image

    def encode(self, x):
        return Posterior(torch.zeros(x.shape[0], 2), None)

    def decode(self, z):
        return self.image.expand(z.shape[0], *self.image.shape)
