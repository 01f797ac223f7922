"""CelebA is verified like MNIST (issue #30): split file, subset manifest, every image, the decode cache."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch

from conftest import write_celeba
from vaebook.data import ChecksumError, CorruptFileError, MissingDataError, celeba_split_counts, load_celeba
from vaebook.data.celeba_files import MANIFEST_FILE, N_IMAGES, PARTITION_MD5, official_partition_text, read_manifest, \
    read_partition

PRESENT = {"000001.jpg": 0, "000002.jpg": 0, "182638.jpg": 2, "182640.jpg": 2}


def _image(seed, w=178, h=218):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([127 + 100 * np.sin(xx / rng.uniform(5, 30) + yy / rng.uniform(5, 30)) for _ in range(3)],
                    -1).astype(np.uint8)


def _celeba(tmp_path, manifest=True):
    write_celeba(tmp_path, {n: _image(i) for i, n in enumerate(PRESENT)}, PRESENT, manifest=manifest)
    return tmp_path, tmp_path / "celeba" / "img_align_celeba", tmp_path / "celeba"


def _flip_keep_mtime(path):
    """Flip one byte in the middle of the JPEG's entropy-coded data (inside the crop; the file still decodes);
    size and mtime stay as they were."""
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


def test_generated_split_file_is_the_official_one():
    text = official_partition_text()
    assert hashlib.md5(text.encode()).hexdigest() == PARTITION_MD5 and text.count("\n") == N_IMAGES


def test_verified_folder_loads(tmp_path, isolated_cache):
    root, _, _ = _celeba(tmp_path)
    assert celeba_split_counts(root) == {"train": 2, "val": 0, "test": 2}
    assert load_celeba("test", root).shape == (2, 3, 64, 64)


# -- the eight data faults of the issue ------------------------------------------------------------------------
def test_missing_image_of_the_manifest(tmp_path, isolated_cache):
    root, img, _ = _celeba(tmp_path)
    (img / "000002.jpg").unlink()
    with pytest.raises(MissingDataError, match=r"missing .*: 000002\.jpg\. Fix: re-fetch"):
        load_celeba("train", root)
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())


def test_flipped_byte_same_size(tmp_path, isolated_cache):
    root, img, _ = _celeba(tmp_path)
    _flip_keep_mtime(img / "182640.jpg")
    with pytest.raises(ChecksumError, match=r"182640\.jpg \(\d+ bytes, MD5 [0-9a-f]{32}; manifest: .*re-fetch"):
        load_celeba("test", root)


@pytest.mark.parametrize("edit, match", [
    (lambda lines: lines[:190_000], r"has 190,000 lines; the official file has 202,599 \(it is cut short after 190000"),
    (lambda lines: lines[:2] + ["999999.jpg 0"] + lines[3:], r"line 3 names '999999\.jpg'; expected 000003\.jpg"),
    (lambda lines: lines[:1] + lines[2:], r"line 2 names '000003\.jpg'; expected 000002\.jpg"),
    (lambda lines: lines + ["000001.jpg 2"], r"lists 000001\.jpg twice \(lines 1 and 202600\)"),
    (lambda lines: lines[:182_639] + ["182640.jpg 0"] + lines[182_640:], r"line 182640 puts 182640\.jpg in partition 0"),
])
def test_damaged_split_file(tmp_path, isolated_cache, edit, match):
    root, _, base = _celeba(tmp_path, manifest=False)
    lines = official_partition_text().split("\r\n")[:-1]
    (base / "list_eval_partition.txt").write_bytes(("\r\n".join(edit(lines)) + "\r\n").encode())
    with pytest.raises(CorruptFileError, match=match) as e:
        load_celeba("train", root)
    assert "official list_eval_partition.txt" in str(e.value) and PARTITION_MD5 in str(e.value)


def _edit_manifest(base, name, field, value):
    p = base / MANIFEST_FILE
    lines = p.read_text().splitlines()
    for i, line in enumerate(lines):
        f = line.split("\t")
        if f[0] == name:
            f[field] = value
            lines[i] = "\t".join(f)
    p.write_text("\n".join(lines) + "\n")


def test_manifest_md5_that_differs(tmp_path, isolated_cache):
    root, _, base = _celeba(tmp_path)
    _edit_manifest(base, "000001.jpg", 3, "0" * 32)
    with pytest.raises(ChecksumError, match=r"000001\.jpg .*manifest: \d+ bytes, MD5 0{32}"):
        load_celeba("train", root)


def test_manifest_line_for_an_absent_image(tmp_path, isolated_cache):
    root, _, base = _celeba(tmp_path)
    with open(base / MANIFEST_FILE, "a") as f:
        f.write(f"000003.jpg\t0\t1234\t{'a' * 32}\n")
    with pytest.raises(MissingDataError, match=rf"000003\.jpg\. Fix: .*remove their lines from {MANIFEST_FILE}"):
        load_celeba("test", root)


def test_byte_flipped_after_caching_is_refused_with_a_manifest(tmp_path, isolated_cache):
    root, img, _ = _celeba(tmp_path)
    load_celeba("all", root)  # builds the decode cache
    _flip_keep_mtime(img / "000001.jpg")
    with pytest.raises(ChecksumError, match=r"000001\.jpg"):
        load_celeba("train", root)


def test_byte_flipped_after_caching_is_not_served_stale_without_a_manifest(tmp_path, isolated_cache):
    root, img, _ = _celeba(tmp_path, manifest=False)
    before = load_celeba("all", root)
    _flip_keep_mtime(img / "000001.jpg")
    after = load_celeba("all", root)
    assert not torch.equal(after[0], before[0]) and torch.equal(after[1:], before[1:])
    assert len(list(isolated_cache.iterdir())) == 1  # the stale entry was superseded


def test_valid_jpeg_of_the_wrong_size_says_what_was_expected(tmp_path, isolated_cache):
    write_celeba(tmp_path, {"000001.jpg": _image(0), "000002.jpg": _image(1, 256, 256)},
                 {"000001.jpg": 0, "000002.jpg": 0})
    with pytest.raises(CorruptFileError, match=r"000002\.jpg.*256×256 pixels; expected 178×218.*Fix: re-fetch"):
        load_celeba("train", tmp_path)


# -- beyond the list ----------------------------------------------------------------------------------
def test_image_not_in_the_manifest_is_not_used_silently(tmp_path, isolated_cache):
    root, img, _ = _celeba(tmp_path)
    (img / "000005.jpg").write_bytes((img / "000001.jpg").read_bytes())
    with pytest.raises(CorruptFileError, match=rf"000005\.jpg\. The folder and its manifest disagree"):
        load_celeba("train", root)


@pytest.mark.parametrize("field, value, match", [
    (1, "2", r"puts 000001\.jpg in partition 2 but .*list_eval_partition\.txt' has 0"),
    (2, "12x", r"expected 'NNNNNN\.jpg<TAB>0\|1\|2<TAB>bytes<TAB>32-hex md5'"),
])
def test_inconsistent_manifest_line(tmp_path, isolated_cache, field, value, match):
    root, _, base = _celeba(tmp_path)
    _edit_manifest(base, "000001.jpg", field, value)
    with pytest.raises(CorruptFileError, match=match):
        celeba_split_counts(root)


@pytest.mark.realdata
def test_real_split_file_and_manifest_verify(data_root):
    base = data_root / "celeba"
    if not (base / MANIFEST_FILE).is_file():
        pytest.skip("no CelebA subset manifest under the data root")
    table = read_partition(base / "list_eval_partition.txt")
    manifest = read_manifest(base / MANIFEST_FILE, table, base / "list_eval_partition.txt")
    assert len(table) == N_IMAGES and len(manifest) == 13_668


# -- the loaders' own arguments -------------------------------------------------------------------------------
def test_loader_arguments_are_refused_before_any_work(tmp_path, isolated_cache, tiny_mnist):
    from vaebook.data import InvalidArgumentError, load_dataset, load_mnist, make_noisy_mnist

    root, _, _ = _celeba(tmp_path)
    with pytest.raises(InvalidArgumentError, match=r"load_celeba: argument 'size' = 0; expected a positive integer"):
        load_celeba("train", root, size=0)
    with pytest.raises(InvalidArgumentError, match=r"load_dataset\('celeba64'\): unknown argument\(s\) \['pattern'\]; "
                                                   r"this dataset's loader takes \['as_float', 'resample', 'use_cache'\]"):
        load_dataset("celeba64", "train", root, pattern="uniform")
    with pytest.raises(InvalidArgumentError, match="'download' = 'yes'"):
        load_mnist("train", tiny_mnist[0], download="yes")
    x, y = load_mnist("train", tiny_mnist[0], as_float=True)
    with pytest.raises(InvalidArgumentError, match=r"'s2' = inf; expected a finite noise variance"):
        make_noisy_mnist(x, y, "uniform", float("inf"), 0)
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())
