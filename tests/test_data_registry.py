"""load_dataset registry, data-root resolution, error hierarchy."""
from pathlib import Path

import numpy as np
import pytest
import torch

import vaebook.data as data
from vaebook.data import DataError, Dataset, MissingDataError, UnknownNameError, load_dataset, resolve_data_root


def test_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("VAEBOOK_DATA", raising=False)
    assert resolve_data_root() == Path("data")
    monkeypatch.setenv("VAEBOOK_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"


def test_env_root_is_used_by_loaders(tiny_mnist, monkeypatch):
    root, arrays = tiny_mnist
    monkeypatch.setenv("VAEBOOK_DATA", str(root))
    ds = load_dataset("mnist", "test", download=False)
    assert isinstance(ds, Dataset) and ds.name == "mnist" and ds.split == "test" and len(ds) == 5
    assert np.array_equal(ds.images[:, 0].numpy(), arrays["test"][0])
    assert ds.labels.dtype == torch.int64


def test_unknown_dataset_lists_names():
    with pytest.raises(UnknownNameError) as e:
        load_dataset("cifar10", "train")
    for name in ["cifar10", "mnist", "noisy-mnist", "celeba64", "celebahq128"]:
        assert repr(name) in str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, DataError)


def test_missing_root_is_a_data_error(tmp_path):
    with pytest.raises(MissingDataError) as e:
        load_dataset("mnist", "train", tmp_path / "absent", download=False)
    assert isinstance(e.value, DataError) and str(tmp_path / "absent") in str(e.value)


def test_every_error_class_is_a_data_error():
    for name in ["MissingDataError", "ChecksumError", "CorruptFileError", "EmptyImageFolderError", "UnknownNameError"]:
        assert issubclass(getattr(data, name), DataError)
