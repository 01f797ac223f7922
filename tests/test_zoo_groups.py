"""The zoo's batched path (the CUDA default) writes each vmapped group when it ends: an interrupted run keeps the
groups that finished, and a re-run trains only the rest."""
from __future__ import annotations

import pytest
import torch

import vaebook.train
from vaebook.lab.zoo import Job, Zoo

TRAIN = dict(epochs=1, batch_size=8, lr=1e-3, max_steps=2)


def _jobs():
    # two structures (d_z 8 and 4): two batched groups of two models each
    return [Job.make("section4-vae", "mnist-d1", TRAIN, seed=0, model_kwargs={"d_z": dz, "sigma_x2": s2,
                                                                             "sigma_z2": 0.3})
            for dz in (8, 4) for s2 in (0.1, 2.0)]


def test_batched_groups_are_saved_one_by_one(tmp_path, monkeypatch):
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    jobs = _jobs()
    real, calls = vaebook.train.train_many, []

    def interrupted(models, data, configs, **kw):
        calls.append(len(models))
        if len(calls) == 2:
            raise KeyboardInterrupt("cut during the second group")
        return real(models, data, configs, **kw)

    monkeypatch.setattr(vaebook.train, "train_many", interrupted)
    log: list = []
    zoo = Zoo(tmp_path, lambda j: x, "cpu", log=log.append)
    with pytest.raises(KeyboardInterrupt):
        zoo.train(jobs, batched=True)
    assert calls == [2, 2]
    done = [j for j in jobs if zoo.cached(j)]
    assert len(done) == 2 and {j.model_kwargs for j in done} == {j.model_kwargs for j in jobs[:2]}

    monkeypatch.setattr(vaebook.train, "train_many", real)
    log.clear()
    out = zoo.train(jobs, batched=True)
    assert [line for line in log if line.startswith("training ")] == [
        "training 2 model(s) on cpu: " + ", ".join(j.label for j in jobs[2:])]
    assert all(out[j].ok for j in jobs) and all(out[j].from_cache for j in jobs[:2])
    assert not any(out[j].from_cache for j in jobs[2:]) and all(zoo.cached(j) for j in jobs)


def test_single_model_groups_train_alone_with_checkpoints(tmp_path, monkeypatch):
    """A model no other shares a group with goes through the one-by-one loop (with its epoch checkpoint)."""
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    jobs = _jobs()[1:]  # d_z 8: one model; d_z 4: two
    calls: list = []
    real = vaebook.train.train_many
    monkeypatch.setattr(vaebook.train, "train_many", lambda m, d, c, **kw: calls.append(len(m)) or real(m, d, c, **kw))
    zoo = Zoo(tmp_path, lambda j: x, "cpu", log=None)
    out = zoo.train(jobs, batched=True)
    assert calls == [2] and all(out[j].ok for j in jobs) and all(zoo.cached(j) for j in jobs)


def test_cached_is_false_for_a_stale_or_partial_entry(tmp_path):
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    job = _jobs()[0]
    zoo = Zoo(tmp_path, lambda j: x, "cpu", log=None)
    assert not zoo.cached(job)
    zoo.train([job])
    assert zoo.cached(job)
    d, _ = zoo._entry(job)
    (d / "model.pt").unlink()
    assert not zoo.cached(job)
    assert not Zoo(tmp_path, lambda j: x[:24], "cpu", log=None).cached(job)  # other images: another key
