"""MNIST loader: idx parsing, MD5 checks and memoisation, download control flow, real-file statistics."""
import gzip
import os

import numpy as np
import pytest
import torch

from conftest import write_idx_gz
from vaebook.data import ChecksumError, CorruptFileError, MissingDataError, load_mnist
from vaebook.data import mnist


def test_tiny_files_round_trip(tiny_mnist):
    root, arrays = tiny_mnist
    for split in ("train", "test"):
        x, y = load_mnist(split, root, download=False)
        ex, ey = arrays[split]
        assert x.dtype == torch.uint8 and x.shape == (len(ex), 1, 28, 28)
        assert y.dtype == torch.int64 and y.shape == (len(ey),)
        assert np.array_equal(x[:, 0].numpy(), ex) and np.array_equal(y.numpy(), ey)
        xf, _ = load_mnist(split, root, as_float=True, download=False)
        assert xf.dtype == torch.float32
        assert torch.allclose(xf, torch.from_numpy(ex).float()[:, None] / 255.0, atol=0, rtol=0)


def test_returned_tensor_is_a_copy(tiny_mnist):
    root, arrays = tiny_mnist
    x, _ = load_mnist("train", root, download=False)
    x.zero_()
    x2, _ = load_mnist("train", root, download=False)
    assert np.array_equal(x2[:, 0].numpy(), arrays["train"][0])


def test_checksum_mismatch_names_file_and_expected_md5(tiny_mnist, monkeypatch):
    root, _ = tiny_mnist
    name = mnist.MNIST_SPLITS["test"][0]
    monkeypatch.setitem(mnist.MNIST_MD5, name, "0" * 32)
    with pytest.raises(ChecksumError) as e:
        load_mnist("test", root, download=False)
    msg = str(e.value)
    assert name in msg and "0" * 32 in msg and "download" in msg


def test_md5_is_memoised_by_path_size_mtime(tiny_mnist, monkeypatch):
    root, _ = tiny_mnist
    load_mnist("train", root, download=False)  # verifies and remembers

    def boom(path, chunk=0):
        raise AssertionError(f"md5 recomputed for {path}")

    monkeypatch.setattr(mnist, "md5_file", boom)
    load_mnist("train", root, download=False)  # no recomputation
    p = root / "MNIST" / "raw" / mnist.MNIST_SPLITS["train"][1]
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file "changed"
    with pytest.raises(AssertionError, match="md5 recomputed"):
        load_mnist("train", root, download=False)


def test_missing_files_without_download(tmp_path):
    with pytest.raises(MissingDataError) as e:
        load_mnist("train", tmp_path, download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "VAEBOOK_DATA" in msg and "download" in msg


def test_missing_files_offline_auto_download(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "network_reachable", lambda *a, **k: False)
    monkeypatch.setattr(mnist, "download_mnist", lambda root=None: pytest.fail("must not download offline"))
    with pytest.raises(MissingDataError):
        load_mnist("test", tmp_path)


def test_missing_files_online_downloads_then_verifies(tmp_path, monkeypatch):
    """download=None + reachable network -> the torchvision download is called, then MD5s are checked."""
    rng = np.random.default_rng(1)
    calls = []

    def fake_download(root=None):
        calls.append(root)
        raw = tmp_path / "MNIST" / "raw"
        md5 = {}
        for split, n in (("train", 3), ("test", 2)):
            a, b = mnist.MNIST_SPLITS[split]
            md5[a] = write_idx_gz(raw / a, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
            md5[b] = write_idx_gz(raw / b, rng.integers(0, 10, n, dtype=np.uint8))
        monkeypatch.setattr(mnist, "MNIST_MD5", md5)
        return raw

    monkeypatch.setattr(mnist, "network_reachable", lambda *a, **k: True)
    monkeypatch.setattr(mnist, "download_mnist", fake_download)
    x, y = load_mnist("test", tmp_path)
    assert calls == [tmp_path] and x.shape == (2, 1, 28, 28) and y.shape == (2,)


@pytest.mark.parametrize("damage", ["truncate", "magic"])
def test_corrupt_idx_file(tiny_mnist, monkeypatch, damage):
    root, arrays = tiny_mnist
    name = mnist.MNIST_SPLITS["test"][0]
    p = root / "MNIST" / "raw" / name
    raw = gzip.decompress(p.read_bytes())
    raw = raw[:-100] if damage == "truncate" else (0x0804).to_bytes(4, "big") + raw[4:]
    p.write_bytes(gzip.compress(raw))
    import hashlib
    monkeypatch.setitem(mnist.MNIST_MD5, name, hashlib.md5(p.read_bytes()).hexdigest())  # reach the parser
    with pytest.raises(CorruptFileError) as e:
        load_mnist("test", root, download=False)
    assert name in str(e.value)


def test_unknown_split(tiny_mnist):
    with pytest.raises(ValueError, match="'train', 'test'"):
        load_mnist("validation", tiny_mnist[0])


@pytest.mark.realdata
def test_real_mnist_counts_and_statistics(data_root):
    if not (data_root / "MNIST" / "raw").is_dir():
        pytest.skip("no MNIST/raw under the data root")
    x, y = load_mnist("train", data_root, download=False)
    xt, yt = load_mnist("test", data_root, download=False)
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert y.shape == (60000,) and yt.shape == (10000,)
    assert set(y.unique().tolist()) == set(range(10))
    v = x.double() / 255.0
    assert abs(v.mean().item() - 0.1307) < 1e-4
    assert abs(v.std(unbiased=False).item() - 0.3081) < 1e-4
    # the published per-class counts of the MNIST test set
    assert yt.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
