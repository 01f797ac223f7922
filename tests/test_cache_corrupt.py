"""Damaged or planted cache files (issue #30): one clear "corrupt cache entry" message, then a rebuild."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from vaebook import lab
from vaebook.io import CorruptCacheError, load_torch_file
from vaebook.lab.zoo import Job, Zoo


class Planted:
    """Any non-tensor class: a weights-only load must refuse to build it."""

    def __reduce__(self):
        return (print, ("code ran while loading",))


def _truncated(path, obj=None):
    torch.save(obj if obj is not None else {"w": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_load_torch_file_names_the_file_and_the_fix(tmp_path):
    p = tmp_path / "entry.pt"
    _truncated(p)
    with pytest.raises(CorruptCacheError, match=r"corrupt cache entry .*entry\.pt: it is truncated.*Delete it or re-run"):
        load_torch_file(p, fix="re-run")
    torch.save(Planted(), p)
    with pytest.raises(CorruptCacheError, match="weights-only load refuses.*planted") as e:
        load_torch_file(p, fix="re-run")
    assert e.value.__cause__ is None and "Unpickl" not in type(e.value).__name__
    with pytest.raises(FileNotFoundError):
        load_torch_file(tmp_path / "absent.pt", fix="re-run")


def _data(job):
    return torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))


JOB = Job.make("mle-iso-i", "mnist", dict(epochs=1, batch_size=16, lr=1e-3, max_steps=1))


def test_truncated_checkpoint_is_discarded_and_the_model_trains(tmp_path):
    logs = []
    zoo = Zoo(tmp_path, _data, "cpu", log=logs.append)
    d, _ = zoo._entry(JOB)
    (d / "checkpoint").mkdir(parents=True)
    _truncated(d / "checkpoint" / "checkpoint.pt")
    tm = zoo.train([JOB])[JOB]
    assert tm.ok and not tm.from_cache
    assert any("corrupt cache entry" in m and "checkpoint.pt" in m for m in logs)


@pytest.mark.parametrize("damage", ["planted", "truncated"])
def test_damaged_cached_model_is_reported_discarded_and_retrained(tmp_path, damage):
    logs = []
    zoo = Zoo(tmp_path, _data, "cpu", log=logs.append)
    zoo.train([JOB])
    d, _ = zoo._entry(JOB)
    if damage == "planted":
        torch.save(Planted(), d / "model.pt")
    else:
        _truncated(d / "model.pt", torch.load(d / "model.pt", weights_only=True))
    assert zoo.load(JOB) is None
    assert any(m.startswith(f"corrupt cache entry {d / 'model.pt'}") for m in logs)
    assert not (d / "model.pt").exists() and not zoo.cached(JOB)
    again = zoo.train([JOB])[JOB]
    assert again.ok and not again.from_cache and zoo.load(JOB) is not None


class _Exp(lab.Experiment):
    name = "corrupt_eval"
    presets = {"smoke": {}}
    calls = 0

    def plan(self, ctx):
        return [lab.Unit.make("u")]

    def evaluate(self, unit, ctx):
        type(self).calls += 1
        return {"rows": [{"x": 1.0}]}

    def report(self, ctx, results, run):
        run.write_table("table1", pd.DataFrame(results["u"]["rows"]))


@pytest.mark.parametrize("damage", ["planted", "truncated"])
def test_damaged_cached_evaluation_is_reported_and_evaluated_again(tmp_path, damage):
    params = {"preset": "smoke", "results_dir": str(tmp_path), "device": "cpu"}
    n0 = _Exp.calls
    lab.run(_Exp(), params, log=lambda s: None)
    f = tmp_path / "smoke" / "evals" / "corrupt_eval" / "u.pt"
    assert f.is_file() and _Exp.calls == n0 + 1
    if damage == "planted":
        torch.save({"key": "x", "result": Planted()}, f)
    else:
        _truncated(f)
    logs = []
    lab.run(_Exp(), params, log=logs.append)
    assert _Exp.calls == n0 + 2
    assert any(f"corrupt cache entry {f}" in m and "evaluating again" in m for m in logs)
    assert load_torch_file(f, fix="-")["result"]["rows"] == [{"x": 1.0}]  # rebuilt
