"""CelebA-64: crop geometry, splits on a partial folder, on-disk cache, bad inputs, real subset."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_celeba
from vaebook.data import (CorruptFileError, EmptyImageFolderError, MissingDataError, celeba_split_counts,
                          center_crop_box, load_celeba, load_dataset)
from vaebook.data import cache as cache_mod
from vaebook.data.celeba_files import official_partition_text
from vaebook.data import images as images_mod

W, H, CROP, OUT = 178, 218, 140, 64


def _smooth(seed):
    """A 218x178 RGB image with smooth content (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    chans = [127 + 100 * np.sin(xx / rng.uniform(5, 30) + yy / rng.uniform(5, 30) + rng.uniform(0, 6)) for _ in range(3)]
    return np.stack(chans, -1).astype(np.uint8)


@pytest.fixture
def tiny_celeba(tmp_path):
    """6 present images (4 train, 2 test), a split file that also lists absent images, one unlisted file."""
    present = {"000001.jpg": 0, "000002.jpg": 0, "000005.jpg": 0, "000007.jpg": 0, "182638.jpg": 2, "182640.jpg": 2}
    partition = dict(present, **{"000003.jpg": 0, "162771.jpg": 1, "182639.jpg": 2})
    imgs = {n: _smooth(i) for i, n in enumerate(present)}
    imgs["999999.jpg"] = _smooth(99)  # not in the split file: ignored
    write_celeba(tmp_path, imgs, partition)
    return tmp_path, imgs, present


def test_crop_box_formula():
    left, top = (W - CROP) // 2, (H - CROP) // 2
    assert (left, top) == (19, 39)
    assert center_crop_box(W, H) == (left, top, left + CROP, top + CROP)
    with pytest.raises(CorruptFileError, match="178×218"):
        center_crop_box(100, 100)


def test_marker_lands_where_crop_resize_math_says(tmp_path, isolated_cache):
    # scale 140/64 = 35/16: a 35-pixel-wide source block maps onto exactly 16 output pixels
    scale = CROP / OUT
    left, top = (W - CROP) // 2, (H - CROP) // 2
    c0, r0 = left + 35, top + 70  # source block cols [54, 89), rows [109, 144)
    img = np.zeros((H, W, 3), np.uint8)
    img[r0:r0 + 35, c0:c0 + 35] = 255
    write_celeba(tmp_path, {"000001.jpg": img}, {"000001.jpg": 0}, quality=98)
    out = load_celeba("train", tmp_path)[0, 0].double()
    rows = np.arange((r0 - top) / scale, (r0 + 35 - top) / scale).astype(int)  # 32..47
    cols = np.arange((c0 - left) / scale, (c0 + 35 - left) / scale).astype(int)  # 16..31
    bright = (out > 128).nonzero()
    assert set(bright[:, 0].tolist()) == set(rows.tolist()) and set(bright[:, 1].tolist()) == set(cols.tolist())
    assert bright.shape[0] == 16 * 16
    # intensity centre of mass = block centre mapped through the same affine map (pixel centres at j + 0.5)
    w = out / out.sum()
    com_r = (w.sum(1) * torch.arange(OUT)).sum().item()
    com_c = (w.sum(0) * torch.arange(OUT)).sum().item()
    assert abs(com_r - ((r0 + 17.5 - top) / scale - 0.5)) < 0.1
    assert abs(com_c - ((c0 + 17.5 - left) / scale - 0.5)) < 0.1


def test_splits_shapes_and_pil_recipe(tiny_celeba, isolated_cache):
    root, imgs, present = tiny_celeba
    assert celeba_split_counts(root) == {"train": 4, "val": 0, "test": 2}
    tr, te = load_celeba("train", root), load_celeba("test", root)
    assert tr.shape == (4, 3, 64, 64) and te.shape == (2, 3, 64, 64) and tr.dtype == torch.uint8
    allx = load_celeba("all", root)
    assert allx.shape == (6, 3, 64, 64)
    # the documented recipe, done by hand with Pillow: crop (19, 39, 159, 179), LANCZOS resize
    d = root / "celeba" / "img_align_celeba"
    for name, x in zip(["182638.jpg", "182640.jpg"], te):
        with Image.open(d / name) as im:
            ref = np.asarray(im.convert("RGB").crop((19, 39, 159, 179)).resize((64, 64), Image.LANCZOS))
        assert np.array_equal(x.permute(1, 2, 0).numpy(), ref)
    xf = load_celeba("test", root, as_float=True)
    assert xf.dtype == torch.float32 and torch.allclose(xf * 255, te.float(), atol=1e-4)
    ds = load_dataset("celeba64", "test", root)
    assert ds.labels is None and ds.meta["counts"]["test"] == 2 and torch.equal(ds.images, te)


def test_empty_split_is_reported_with_counts(tiny_celeba, isolated_cache):
    with pytest.raises(EmptyImageFolderError) as e:
        load_celeba("val", tiny_celeba[0])
    assert "'val'" in str(e.value) and "'train': 4" in str(e.value)
    with pytest.raises(ValueError, match="'train', 'val', 'test', 'all'"):
        load_celeba("valid", tiny_celeba[0])


def test_cache_hit_skips_decoding(tiny_celeba, isolated_cache, monkeypatch):
    root = tiny_celeba[0]
    first = load_celeba("train", root)
    files = list(isolated_cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"

    def no_decode(*a, **k):
        raise AssertionError("decoded despite a cache hit")

    monkeypatch.setattr(images_mod, "decode_stack", no_decode)
    assert torch.equal(load_celeba("train", root), first)
    assert torch.equal(load_celeba("test", root), load_celeba("all", root)[4:])  # one entry serves every split
    # the key is the files' content: a new mtime alone is a hit, new content or another filter is a miss
    p = root / "celeba" / "img_align_celeba" / "000002.jpg"
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert torch.equal(load_celeba("train", root), first)
    Image.fromarray(_smooth(42)).save(p, quality=95)
    with pytest.raises(AssertionError, match="decoded"):
        load_celeba("train", root)
    with pytest.raises(AssertionError, match="decoded"):
        load_celeba("train", tiny_celeba[0], resample="bicubic")


def test_cache_keeps_one_entry_per_recipe(tiny_celeba, isolated_cache):
    """A data folder re-copied with new mtimes keeps its entry (the key is the content); changed content
    supersedes the old entry; another filter is another recipe."""
    root = tiny_celeba[0]
    load_celeba("train", root)
    (first,) = isolated_cache.iterdir()
    for p in sorted((root / "celeba" / "img_align_celeba").iterdir()):
        st = os.stat(p)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    load_celeba("train", root)
    assert [e.name for e in isolated_cache.iterdir()] == [first.name]
    Image.fromarray(_smooth(42)).save(root / "celeba" / "img_align_celeba" / "000002.jpg", quality=95)
    x = load_celeba("train", root)
    (second,) = isolated_cache.iterdir()
    assert second.name != first.name
    assert torch.equal(load_celeba("train", root), x)
    load_celeba("train", root, resample="bicubic")
    assert len(list(isolated_cache.iterdir())) == 2


def test_cache_write_is_atomic(tiny_celeba, isolated_cache, monkeypatch):
    root = tiny_celeba[0]
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.torch, "save", failing_save)
    x = load_celeba("train", root)  # the failed write costs only time
    assert x.shape == (4, 3, 64, 64)
    assert list(isolated_cache.iterdir()) == []  # neither a partial entry nor a temporary file
    monkeypatch.setattr(cache_mod.torch, "save", real_save)
    assert torch.equal(load_celeba("train", root), x)
    assert len(list(isolated_cache.iterdir())) == 1


def test_corrupt_cache_entry_is_recomputed(tiny_celeba, isolated_cache):
    root = tiny_celeba[0]
    x = load_celeba("test", root)
    (entry,) = isolated_cache.iterdir()
    entry.write_bytes(b"garbage")
    assert torch.equal(load_celeba("test", root), x)


def test_truncated_jpeg_names_file_and_writes_nothing(tiny_celeba, isolated_cache):
    root = tiny_celeba[0]
    p = root / "celeba" / "img_align_celeba" / "000005.jpg"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError) as e:
        load_celeba("test", root)
    assert "000005.jpg" in str(e.value) and "truncated" in str(e.value)
    assert not isolated_cache.exists() or list(isolated_cache.iterdir()) == []


def test_missing_and_empty_inputs(tmp_path, isolated_cache):
    with pytest.raises(MissingDataError, match="VAEBOOK_DATA"):
        load_celeba("train", tmp_path / "nowhere")
    (tmp_path / "celeba").mkdir()
    with pytest.raises(MissingDataError, match="img_align_celeba"):
        load_celeba("train", tmp_path)
    (tmp_path / "celeba" / "img_align_celeba").mkdir()
    with pytest.raises(MissingDataError, match="list_eval_partition.txt"):
        load_celeba("train", tmp_path)
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text(official_partition_text())
    with pytest.raises(EmptyImageFolderError, match="img_align_celeba"):
        load_celeba("train", tmp_path)
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(CorruptFileError, match="line 1"):
        celeba_split_counts(tmp_path)


def test_default_cache_avoids_read_only_root(tmp_path, monkeypatch):
    monkeypatch.delenv("VAEBOOK_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    writable = tmp_path / "rw"
    writable.mkdir()
    assert cache_mod.cache_dir(writable) == writable / ".cache" / "vaebook"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert cache_mod.cache_dir(ro) == tmp_path / "home" / ".cache" / "vaebook"
        assert not (ro / ".cache").exists()
    finally:
        ro.chmod(0o755)


# --- the real subset (skipped without the data folder); decoded once, then served from the cache ---

@pytest.fixture(scope="session")
def celeba_real(data_root, tmp_path_factory):
    if not (data_root / "celeba" / "img_align_celeba").is_dir():
        pytest.skip("no celeba/img_align_celeba under the data root")
    mp = pytest.MonkeyPatch()
    if not os.environ.get("VAEBOOK_CACHE"):
        try:  # the library's default: <root>/.cache when writable, else ~/.cache/vaebook (kept across runs)
            cache_mod.cache_dir(data_root)
        except OSError:
            mp.setenv("VAEBOOK_CACHE", str(tmp_path_factory.mktemp("vaebook-cache")))
    try:
        yield {s: load_celeba(s, data_root) for s in ("train", "test")}
    finally:
        mp.undo()


@pytest.mark.realdata
def test_real_celeba_counts_match_manifest(data_root, celeba_real):
    manifest = data_root / "celeba" / "SUBSET_MANIFEST.tsv"
    expected = {"train": 0, "val": 0, "test": 0}
    names = {0: "train", 1: "val", 2: "test"}
    for line in manifest.read_text().splitlines():
        if line and not line.startswith("#"):
            expected[names[int(line.split("\t")[1])]] += 1
    assert expected == {"train": 9028, "val": 0, "test": 4640}
    assert celeba_split_counts(data_root) == expected
    assert celeba_real["train"].shape == (9028, 3, 64, 64) and celeba_real["test"].shape == (4640, 3, 64, 64)
    assert celeba_real["test"].dtype == torch.uint8


@pytest.mark.realdata
def test_real_celeba_content_matches_recipe(data_root, celeba_real):
    d = data_root / "celeba" / "img_align_celeba"
    test_names = sorted(n for n, p in (l.split()[:2] for l in
                        (data_root / "celeba" / "list_eval_partition.txt").read_text().splitlines() if l.strip())
                        if p == "2" and (d / n).is_file())
    for i in (0, len(test_names) - 1):
        with Image.open(d / test_names[i]) as im:
            assert im.size == (178, 218)
            ref = np.asarray(im.convert("RGB").crop((19, 39, 159, 179)).resize((64, 64), Image.LANCZOS))
        assert np.array_equal(celeba_real["test"][i].permute(1, 2, 0).numpy(), ref)
    with pytest.raises(EmptyImageFolderError, match="'val'"):
        load_celeba("val", data_root)
