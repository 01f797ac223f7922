"""BatchIterator: epochs are permutations, seeded, resumable mid-epoch."""
import pytest
import torch

from vaebook.data import BatchIterator, mix_seed, to_device_dataset


@pytest.mark.parametrize("n,bs,drop_last", [(10, 3, True), (10, 3, False), (64, 8, True), (7, 7, False)])
def test_epoch_is_a_permutation(n, bs, drop_last):
    it = BatchIterator(n, bs, seed=4, drop_last=drop_last)
    expected_steps = n // bs if drop_last else -(-n // bs)
    assert it.steps_per_epoch == len(it) == expected_steps
    batches = list(it)
    assert len(batches) == expected_steps
    assert all(b.dtype == torch.int64 and b.ndim == 1 for b in batches)
    flat = torch.cat(batches)
    assert flat.unique().numel() == flat.numel()  # no repeats within an epoch
    if drop_last:
        assert all(b.numel() == bs for b in batches)
    else:
        assert torch.equal(flat.sort().values, torch.arange(n))  # every item exactly once
    assert it.state_dict()["epoch"] == 1 and it.state_dict()["position"] == 0


def test_permutation_is_randperm_of_mixed_seed():
    it = BatchIterator(50, 10, seed=123, drop_last=False)
    for e in range(3):
        ref = torch.randperm(50, generator=torch.Generator().manual_seed(mix_seed(123, e)))
        assert torch.equal(torch.cat(list(it)), ref)
    assert mix_seed(1, 2) != mix_seed(2, 1) and mix_seed(1, 2) == mix_seed(1, 2)


def test_epochs_differ_and_seeds_reproduce():
    a, b, c = BatchIterator(100, 10, 1), BatchIterator(100, 10, 1), BatchIterator(100, 10, 2)
    ea = [torch.cat(list(a)) for _ in range(2)]
    eb = [torch.cat(list(b)) for _ in range(2)]
    ec = torch.cat(list(c))
    assert torch.equal(ea[0], eb[0]) and torch.equal(ea[1], eb[1])
    assert not torch.equal(ea[0], ea[1]) and not torch.equal(ea[0], ec)


def test_resume_mid_epoch_matches_uninterrupted_run():
    total = 5 * 7 + 3  # steps crossing epoch boundaries
    ref = BatchIterator(30, 4, seed=9)  # 7 steps per epoch
    ref_batches = [ref.next_batch() for _ in range(total)]

    first = BatchIterator(30, 4, seed=9)
    got = []
    for _ in range(2):  # two full epochs through the for-loop protocol ...
        got += list(first)
    g = iter(first)
    got += [next(g) for _ in range(3)]  # ... then 3 steps into the third
    state = first.state_dict()
    assert (state["epoch"], state["position"]) == (2, 3)

    resumed = BatchIterator(30, 4, seed=9)
    resumed.load_state_dict(state)
    got += list(resumed)  # the rest of epoch 2
    got += [resumed.next_batch() for _ in range(total - len(got))]
    assert len(got) == total
    assert all(torch.equal(x, y) for x, y in zip(got, ref_batches))


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator(5, 8, seed=0, drop_last=True)
    with pytest.raises(ValueError):
        BatchIterator(0, 1)
    it = BatchIterator(10, 2, seed=0)
    with pytest.raises(ValueError, match="seed"):
        it.load_state_dict(BatchIterator(10, 2, seed=1).state_dict())


def test_to_device_dataset_and_indexing():
    x = torch.randint(0, 256, (12, 1, 4, 4), dtype=torch.uint8)
    xd = to_device_dataset(x, "cpu")
    assert xd.dtype == torch.float32 and torch.allclose(xd * 255, x.float(), atol=1e-4)
    it = BatchIterator(12, 5, seed=0, device="cpu")
    idx = next(iter(it))
    assert torch.equal(xd[idx], x[idx].float() / 255)
