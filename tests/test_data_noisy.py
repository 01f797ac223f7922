"""Noisy MNIST (Sec. 5.3): partitions, patterns, injected-noise statistics."""
import pytest
import torch

from vaebook.data import (NOISE_PATTERNS, load_dataset, make_noisy_mnist, noise_mask, noisy_pattern_partitions,
                          partition_masks)

# Sec. 5.3, written out independently of the module's table
PAPER_PATTERNS = {
    "uniform": {"SU", "SL", "BU", "BL"},
    "spatial": {"SU", "BU"},
    "conditional": {"SU", "SL"},
    "spatial-conditional": {"SU"},
}


def test_patterns_match_section_5_3():
    assert set(NOISE_PATTERNS) == set(PAPER_PATTERNS)
    for p, parts in PAPER_PATTERNS.items():
        assert set(noisy_pattern_partitions(p)) == parts


def test_unknown_pattern_lists_allowed():
    with pytest.raises(ValueError) as e:
        noisy_pattern_partitions("diagonal")
    for p in ["diagonal", *PAPER_PATTERNS]:
        assert repr(p) in str(e.value)


def test_partition_masks_closed_form():
    labels = torch.arange(10)
    m = partition_masks(labels)
    assert set(m) == {"SU", "SL", "BU", "BL"}
    for k in m:
        assert m[k].dtype == torch.bool and m[k].shape == (10, 1, 28, 28)
    total = sum(v.int() for v in m.values())
    assert torch.equal(total, torch.ones(10, 1, 28, 28, dtype=torch.int))  # disjoint and covering
    for d in range(10):
        small, big = d <= 4, d >= 5
        for r in range(28):
            upper = r < 14
            exp = {"SU": small and upper, "SL": small and not upper, "BU": big and upper, "BL": big and not upper}
            for k, v in exp.items():
                assert bool(m[k][d, 0, r].all()) == v and bool(m[k][d, 0, r].any()) == v


@pytest.mark.parametrize("s2", [0.01, 0.1])
@pytest.mark.parametrize("pattern", list(PAPER_PATTERNS))
def test_noise_statistics(pattern, s2):
    n = 1000
    labels = torch.arange(n) % 10
    clean = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    noisy = make_noisy_mnist(clean, labels, pattern, s2, seed=11)
    assert noisy.shape == clean.shape and noisy.dtype == clean.dtype
    diff = (noisy - clean).double()
    masks = partition_masks(labels)
    for part, mask in masks.items():
        d = diff[mask]
        if part in PAPER_PATTERNS[pattern]:
            assert abs(d.var().item() - s2) < 0.05 * s2
            assert abs(d.mean().item()) < 4 * (s2 / d.numel()) ** 0.5 + 1e-3
        else:
            assert torch.count_nonzero(d) == 0  # clean partitions untouched, bit for bit


def test_noise_is_seeded_shared_across_patterns_and_not_clipped():
    labels = torch.arange(20) % 10
    clean = torch.zeros(20, 1, 28, 28)
    a = make_noisy_mnist(clean, labels, "uniform", 0.1, seed=5)
    b = make_noisy_mnist(clean, labels, "uniform", 0.1, seed=5)
    c = make_noisy_mnist(clean, labels, "uniform", 0.1, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    su = make_noisy_mnist(clean, labels, "spatial-conditional", 0.1, seed=5)
    mask = noise_mask(labels, "spatial-conditional")
    assert torch.equal(su[mask], a[mask])  # same draw, restricted to SU
    assert (a < 0).any()  # zero background + noise goes negative: no clipping to [0, 1]


def test_bad_inputs():
    labels = torch.arange(4)
    with pytest.raises(TypeError, match="as_float"):
        make_noisy_mnist(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), labels, "uniform", 0.1, 0)
    with pytest.raises(ValueError, match="s2"):
        make_noisy_mnist(torch.zeros(4, 1, 28, 28), labels, "uniform", -1.0, 0)
    with pytest.raises(ValueError, match="N×1×28×28"):
        make_noisy_mnist(torch.zeros(4, 28, 28), labels, "uniform", 0.1, 0)


def test_load_dataset_noisy_mnist(tiny_mnist):
    root, arrays = tiny_mnist
    tr = load_dataset("noisy-mnist", "train", root, pattern="spatial", s2=0.1, seed=2, download=False)
    te = load_dataset("noisy-mnist", "test", root, pattern="spatial", s2=0.1, seed=2, download=False)
    assert tr.name == "noisy-mnist" and tr.meta["pattern"] == "spatial" and tr.meta["s2"] == 0.1
    clean = torch.from_numpy(arrays["train"][0]).float()[:, None] / 255
    diff = tr.images - clean
    assert torch.count_nonzero(diff[:, :, 14:]) == 0 and torch.count_nonzero(diff[:, :, :14]) == diff[:, :, :14].numel()
    assert torch.equal(tr.labels, torch.from_numpy(arrays["train"][1]).long())
    # train and test draw independent noise (not the same stream restarted)
    clean_t = torch.from_numpy(arrays["test"][0]).float()[:, None] / 255
    assert not torch.allclose((te.images - clean_t)[:, :, :14], diff[: len(clean_t), :, :14])
    with pytest.raises(ValueError, match="'uniform'"):
        load_dataset("noisy-mnist", "train", root, pattern="checkerboard")
