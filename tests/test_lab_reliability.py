"""Reliability of the experiment layer, one test per case a careful user hit with the old drivers."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch

from vaebook import lab
from vaebook.lab.params import ParameterError, check_device, common_params, validate_params
from vaebook.lab.results import PROVENANCE, REPO, Run, RunInProgressError, find_results
from vaebook.lab.zoo import Job, Zoo

COMMON = common_params(("smoke", "medium"))


def _p(tmp_path, **kw):
    return validate_params({"preset": "smoke", "device": "cpu", "results_dir": str(tmp_path), **kw}, COMMON)


# -- two runs into one folder ----------------------------------------------------------------------------
def test_second_concurrent_run_is_refused_and_first_publishes(tmp_path):
    first = Run("exp", _p(tmp_path))
    first.write_table("table1", pd.DataFrame({"a": [1]}))
    with pytest.raises(RunInProgressError, match="another run"):
        Run("exp", _p(tmp_path))
    first.finish()
    assert (tmp_path / "smoke" / "exp" / "table1.csv").is_file()


def test_concurrent_processes_leave_one_complete_folder_with_its_tables(tmp_path):
    """Two processes started together: one publishes a complete folder with its table, the other is refused."""
    code = textwrap.dedent(f"""
        import sys, time, pandas as pd
        from vaebook.lab.results import Run, RunInProgressError
        try:
            r = Run("exp", {{"preset": "smoke", "device": "cpu", "results_dir": {str(tmp_path)!r}}})
        except RunInProgressError:
            sys.exit(3)
        time.sleep(1.5)
        r.write_table("table1", pd.DataFrame({{"a": [1]}}))
        r.finish()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    codes = sorted(p.wait(timeout=120) for p in procs)
    assert codes == [0, 3]
    assert (tmp_path / "smoke" / "exp" / "table1.csv").is_file()
    assert (tmp_path / "smoke" / "exp" / PROVENANCE).is_file()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "exp.lock").write_text("999999999\n")  # no such process
    Run("exp", _p(tmp_path)).finish()


def test_vanished_partial_folder_is_not_recreated(tmp_path):
    import shutil

    r = Run("exp", _p(tmp_path))
    shutil.rmtree(r.partial_dir)
    with pytest.raises(RuntimeError, match="vanished"):
        r.write_table("table1", pd.DataFrame({"a": [1]}))
    with pytest.raises(RuntimeError, match="vanished"):
        r.finish()
    assert not (tmp_path / "smoke" / "exp").exists() and not r.partial_dir.exists()


def test_crash_between_the_two_renames_is_repaired(tmp_path):
    with Run("exp", _p(tmp_path)) as r:
        r.write_table("table1", pd.DataFrame({"a": [1]}))
    final = tmp_path / "smoke" / "exp"
    os.replace(final, final.with_name("exp.old"))  # as if the process died after final -> .old
    res = find_results(tmp_path, "exp", ("medium", "smoke"))
    assert res is not None and int(res.tables["table1"]["a"].iloc[0]) == 1
    assert final.is_dir() and not final.with_name("exp.old").exists()


# -- provenance holds no machine path ------------------------------------------------------------------------
def test_provenance_paths_are_repository_relative(tmp_path):
    inside = REPO / "results" / "_test_tmp_provenance"
    try:
        with Run("exp", _p(inside)) as r:
            pass
        prov = (r.final_dir / PROVENANCE).read_text()
        assert str(REPO) not in prov and json.loads(prov)["parameters"]["results_dir"] == "results/_test_tmp_provenance"
    finally:
        import shutil

        shutil.rmtree(inside, ignore_errors=True)
    with Run("exp", _p(tmp_path)) as r:
        pass
    prov = (r.final_dir / PROVENANCE).read_text()
    assert str(tmp_path) not in prov


# -- validation before anything is written ------------------------------------------------------------------
@pytest.mark.parametrize("bad, name", [
    ({"seed": 2**63}, "seed"), ({"seed": 2**31}, "seed"), ({"data_root": ""}, "data_root"),
    ({"epochs": 10**9}, "epochs"),
])
def test_bad_values_refused(tmp_path, bad, name):
    with pytest.raises(ParameterError, match=name):
        _p(tmp_path, **bad)


def test_results_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ParameterError, match="results_dir.*file"):
        _p(f)


def test_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _p("~/res")["results_dir"] == str(tmp_path / "res")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device_is_refused():
    for d in ("cuda", "cuda:0", "mps"):
        with pytest.raises(ParameterError, match="not available"):
            check_device(d)


def test_unknown_page_parameter_is_an_error_not_a_warning():
    from vaebook.lab.page import page_params

    spec = {**COMMON}
    with pytest.raises(ParameterError, match="epoch"):
        page_params({"preset": "smoke", "epoch": 3, "os": os, "_hidden": 1}, spec)
    assert page_params({"preset": "smoke", "os": os, "In": [], "_x": 1}, spec) == {"preset": "smoke"}


def test_run_all_refuses_parameters_a_notebook_does_not_declare(tmp_path):
    from vaebook.lab.run_all import check_parameters, notebooks

    name = notebooks()[0]
    with pytest.raises(ParameterError, match="epoch"):
        check_parameters(name, {"preset": "smoke", "epoch": 3})


# -- the model zoo ------------------------------------------------------------------------------------------
def _data(job):
    g = torch.Generator().manual_seed(0)
    return torch.rand(32, 1, 28, 28, generator=g)


def test_cache_key_holds_the_code_version(tmp_path, monkeypatch):
    import vaebook.lab.zoo as Z

    job = Job.make("mle-iso-i", "mnist", dict(epochs=1, batch_size=16, lr=1e-3, max_steps=1))
    zoo = Zoo(tmp_path, _data, "cpu", log=None)
    assert not next(iter(zoo.train([job]).values())).from_cache
    assert zoo.load(job) is not None
    monkeypatch.setattr(Z, "job_code_version", lambda job: "changed-objective")
    assert zoo.load(job) is None  # a model trained by other code is not reused


def test_one_diverging_model_is_recorded_and_the_others_train(tmp_path):
    from vaebook.models import MODEL_REGISTRY, register_model
    from vaebook.models.vae import GaussianVAE

    class Diverges(GaussianVAE):
        def loss(self, x, generator=None):
            out = super().loss(x, generator)
            out.total = out.total * float("nan")
            return out

    register_model("test-diverges", "diverges", "baseline")(Diverges)
    try:
        jobs = [Job.make(m, "mnist", dict(epochs=1, batch_size=16, lr=1e-3, max_steps=2))
                for m in ("test-diverges", "mle-iso-i")]
        out = Zoo(tmp_path, _data, "cpu", log=None).train(jobs)
        bad, good = out[jobs[0]], out[jobs[1]]
        assert not bad.ok and bad.reason.startswith("did not train")
        assert good.ok
        again = Zoo(tmp_path, _data, "cpu", log=None).load(jobs[0])  # the failure is cached, not retried
        assert again is not None and not again.ok
    finally:
        MODEL_REGISTRY.pop("test-diverges", None)


def test_batch_larger_than_training_set_is_refused_before_writing(tmp_path):
    class Exp(lab.Experiment):
        name = "tiny"
        presets = {"smoke": {}}

        def plan(self, ctx):
            return [lab.Unit.make("u", [Job.make("mle-iso-i", "mnist", dict(epochs=1, batch_size=64, lr=1e-3),
                                                 variant={"n_train": 8})])]

    import vaebook.lab.experiment as E

    monkey = {"job_data": lambda self, job: torch.zeros(8, 1, 28, 28)}
    orig = E.Context.job_data
    E.Context.job_data = monkey["job_data"]
    try:
        with pytest.raises(ParameterError, match="batch_size 64.*n_train"):
            lab.run(Exp(), {"preset": "smoke", "results_dir": str(tmp_path), "device": "cpu"})
    finally:
        E.Context.job_data = orig
    assert not any(tmp_path.iterdir())


def test_read_only_results_dir_is_refused(tmp_path, monkeypatch):
    """(Root can write anywhere, so the permission answer is simulated.)"""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(ro) else real(p, mode))
    with pytest.raises(ParameterError, match="results_dir.*cannot write"):
        _p(ro / "sub")


@pytest.mark.parametrize("name, bad", [("theory", {"claims": []}), ("generation", {"datasets": []}),
                                       ("smoothness", {"encodings": []}), ("generation", {"fid_samples": 10**9})])
def test_empty_lists_and_unbounded_sizes_are_refused_before_writing(tmp_path, name, bad):
    from vaebook.lab.page import get_experiment

    with pytest.raises(ParameterError, match=next(iter(bad))):
        lab.run(get_experiment(name), {"preset": "smoke", "results_dir": str(tmp_path), "device": "cpu", **bad})
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device_is_refused_before_writing(tmp_path):
    from vaebook.lab.page import get_experiment

    with pytest.raises(ParameterError, match="device"):
        lab.run(get_experiment("theory"), {"preset": "smoke", "results_dir": str(tmp_path), "device": "cuda"})
    assert not any(tmp_path.iterdir())


# -- run_all refuses what the single-experiment CLI refuses (issue #30) ----------------------------------------
@pytest.mark.parametrize("argv, match", [
    (["--preset", "smok"], r"--preset 'smok': no experiment has this preset; expected one of \[.*'smoke'"),
    (["--preset", "medium", "--only", "lowrank"], "none of the selected pages has this preset"),
    (["--only", "nosuch"], "unknown notebook"),
])
def test_run_all_refuses_an_unknown_preset_or_page_before_running(tmp_path, capsys, argv, match):
    from vaebook.lab.run_all import main

    with pytest.raises(SystemExit) as e:
        main([*argv, "--results-dir", str(tmp_path / "res"), "--executed-dir", str(tmp_path / "ex")])
    assert e.value.code == 2
    assert re.search(match, capsys.readouterr().err)
    assert not any(tmp_path.iterdir())
