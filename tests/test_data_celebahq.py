"""CelebA-HQ-128 on generated 1024x1024 images: split, resize recipe, cache, bad inputs."""
import numpy as np
import pytest
import torch
from PIL import Image

from vaebook.data import (CorruptFileError, EmptyImageFolderError, MissingDataError, celebahq_split_names,
                          celebahq_split_sizes, load_celebahq, load_dataset)
from vaebook.data import images as images_mod


def _face(seed, size=1024):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    chans = [127 + 120 * np.sin(2 * np.pi * (rng.uniform(1, 4) * xx + rng.uniform(1, 4) * yy)) for _ in range(3)]
    return np.stack(chans, -1).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_hq(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("hq")
    folder = tmp_path / "celebahq"
    folder.mkdir()
    for i in range(11):  # 0..10, mixed formats; natural order puts 10 last, lexical order would not
        Image.fromarray(_face(i)).save(folder / (f"{i}.png" if i % 3 == 0 else f"{i}.jpg"), quality=92)
    (folder / "notes.txt").write_text("not an image")
    return tmp_path


def test_split_sizes_closed_form():
    assert celebahq_split_sizes(30000) == (27000, 3000)
    assert celebahq_split_sizes(11) == (10, 1) and celebahq_split_sizes(1) == (1, 0)


def test_split_is_natural_order_last_ten_percent(tiny_hq):
    parts = celebahq_split_names(tiny_hq)
    assert parts["test"] == ["10.jpg"]
    assert parts["train"] == [f"{i}.png" if i % 3 == 0 else f"{i}.jpg" for i in range(10)]


def test_resize_recipe_shapes_and_cache(tiny_hq, isolated_cache, monkeypatch):
    tr = load_celebahq("train", tiny_hq)
    te = load_celebahq("test", tiny_hq)
    assert tr.shape == (10, 3, 128, 128) and te.shape == (1, 3, 128, 128) and tr.dtype == torch.uint8
    with Image.open(tiny_hq / "celebahq" / "10.jpg") as im:  # no crop, LANCZOS 1024 -> 128
        ref = np.asarray(im.convert("RGB").resize((128, 128), Image.LANCZOS))
    assert np.array_equal(te[0].permute(1, 2, 0).numpy(), ref)
    monkeypatch.setattr(images_mod, "decode_stack", lambda *a, **k: pytest.fail("decoded despite a cache hit"))
    ds = load_dataset("celebahq128", "train", tiny_hq, as_float=True)
    assert ds.meta["counts"] == {"train": 10, "test": 1}
    assert torch.allclose(ds.images * 255, tr.float(), atol=1e-4)


def test_bad_inputs(tmp_path, isolated_cache):
    with pytest.raises(MissingDataError) as e:
        load_celebahq("train", tmp_path)
    assert str(tmp_path / "celebahq") in str(e.value) and "1024" in str(e.value)
    (tmp_path / "celebahq").mkdir()
    with pytest.raises(EmptyImageFolderError, match="celebahq"):
        load_celebahq("train", tmp_path)
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(tmp_path / "celebahq" / "0.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "celebahq" / "1.png")
    with pytest.raises(CorruptFileError, match="0.png.*square"):
        load_celebahq("train", tmp_path)
    with pytest.raises(ValueError, match="'train', 'test', 'all'"):
        load_celebahq("val", tmp_path)
    assert list(isolated_cache.iterdir()) == [] if isolated_cache.exists() else True
