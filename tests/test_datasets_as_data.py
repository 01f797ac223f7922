"""Datasets are data (issue #27): a dataset is one discovered file, every Section-6 table takes it by name at the sizes
it declares (a preset without one is an error), models declare what they need, every registry refuses a duplicate,
and cache keys depend on the code of the model or evaluation they key, so adding a file retrains nothing."""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vaebook.data import DATASETS, DatasetSpec, InvalidArgumentError, register_dataset, unregister_dataset
from vaebook.experiments import _datasets6 as ds
from vaebook.experiments import _section6 as scale
from vaebook.experiments.generation import EXPERIMENT as GEN
from vaebook.experiments.nll import EXPERIMENT as NLL
from vaebook.lab import ParameterError
from vaebook.models import MODEL_REGISTRY, Needs, register_model
from vaebook.models.vae import GaussianVAE
from vaebook.variance import VARIANCES, IsoI, register_variance

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "vaebook"


def readme_dataset_block():
    """(path, source) of the README's example dataset file: the python block whose first line names its path."""
    blocks = re.findall(r"```python\n(# (vaebook/data/\S+\.py)\n.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "README.md must hold exactly one example dataset file under vaebook/data/"
    return blocks[0][1], blocks[0][0]


@pytest.fixture
def toy_dataset():
    def load(split, root=None):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        return (torch.rand(300 if split == "train" else 80, 1, 28, 28, generator=g) * 255).to(torch.uint8), None

    register_dataset(DatasetSpec("toy-grey", "toy grey", "mnist", (1, 28, 28), load,
                                 dict(epochs=100, lr=1e-3, batch_size=64), sizes={"smoke": (256, 64)}))
    yield "toy-grey"
    unregister_dataset("toy-grey")


def test_a_new_dataset_resolves_at_its_own_smoke_size_with_every_fitting_row_and_column(toy_dataset):
    p = GEN.resolve({"preset": "smoke", "datasets": [toy_dataset]})
    assert (p["n_train"][toy_dataset], p["n_test"][toy_dataset]) == (256, 64)
    assert scale.job("mle-iso-i", toy_dataset, p).train_dict == {"epochs": 1, "max_steps": 1, "batch_size": 32,
                                                                 "lr": 1e-3}
    assert GEN.sources_for(p, toy_dataset) == ["prior", "2nd-vae", "gmm10", "gmm100"]  # no FID column missing
    rows = ds.rows_for(GEN.paper_frame(), toy_dataset)
    assert "vae-bernoulli" in rows and "vae-mol" not in rows and len(rows) == 14  # MoL needs 3 channels
    assert ds.rows_for(NLL.paper_frame(), toy_dataset) == ["vae-gaussian", "mle-iso-i", "mle-diag-i", "mle-iso-d",
                                                           "mle-diag-d"]


def test_a_preset_without_a_size_is_an_error_naming_preset_dataset_and_fix(toy_dataset):
    for exp in (GEN, NLL):
        with pytest.raises(ParameterError) as e:
            exp.resolve({"preset": "medium", "datasets": [toy_dataset]})
        msg = str(e.value)
        assert "'medium'" in msg and repr(toy_dataset) in msg and "Fix: add 'medium': (n_train, n_test)" in msg
    # both sizes given as parameters: no preset size needed
    p = GEN.resolve({"preset": "medium", "datasets": [toy_dataset], "n_train": 100, "n_test": 20})
    assert ds.per_dataset(p, "n_train", toy_dataset) == 100


def test_a_missing_per_dataset_setting_names_it_instead_of_int_none():
    with pytest.raises(ParameterError, match="'fid_samples' has no value for dataset 'x'"):
        ds.required({"preset": "smoke", "fid_samples": {"mnist": 8}}, "fid_samples", "x")
    assert ds.required({"fid_samples": {"mnist": 8, ds.ANY: 5}}, "fid_samples", "x") == 5


def test_a_bad_spec_is_refused_at_registration():
    load = lambda split, root=None: (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), None)  # noqa: E731
    train = dict(epochs=1, lr=1e-3, batch_size=2)
    with pytest.raises(InvalidArgumentError, match="arch 'nope' is not registered"):
        register_dataset(DatasetSpec("bad-a", "bad", "nope", (1, 28, 28), load, train))
    with pytest.raises(InvalidArgumentError, match="x_shape"):
        register_dataset(DatasetSpec("bad-b", "bad", "mnist", (3, 28, 28), load, train))
    with pytest.raises(InvalidArgumentError, match=r"sizes\['smoke'\]"):
        register_dataset(DatasetSpec("bad-c", "bad", "mnist", (1, 28, 28), load, train, sizes={"smoke": 256}))
    with pytest.raises(InvalidArgumentError, match="lacks"):
        register_dataset(DatasetSpec("bad-d", "bad", "mnist", (1, 28, 28), load, dict(lr=1e-3)))
    assert not {"bad-a", "bad-b", "bad-c", "bad-d"} & set(DATASETS)


def test_every_registry_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset(DatasetSpec("mnist", "again", "mnist", (1, 28, 28), DATASETS["mnist"].load,
                                     DATASETS["mnist"].train))
    with pytest.raises(ValueError, match="registered twice"):
        register_model("mle-iso-i", "again", "proposed_MLE", variance="iso-i")(GaussianVAE)

    class Again(IsoI):
        name = "iso-i"

    with pytest.raises(ValueError, match="registered twice"):
        register_variance(Again)
    assert VARIANCES["iso-i"] is IsoI and register_variance(IsoI) is IsoI  # the same class again is harmless
    from vaebook.nets import register_arch

    with pytest.raises(ValueError, match="registered twice"):
        register_arch("mnist", (1, 28, 28), 16, "again")(lambda *a: None)


def test_models_declare_needs_not_dataset_names(toy_dataset):
    assert MODEL_REGISTRY["vae-bernoulli"].fits(toy_dataset) and not MODEL_REGISTRY["vae-mol"].fits(toy_dataset)
    assert "3 channel" in MODEL_REGISTRY["vae-mol"].misfit(toy_dataset)
    assert toy_dataset in MODEL_REGISTRY["mle-diag-d"].datasets  # a dataset registered later is included
    with pytest.raises(TypeError, match="Needs"):
        register_model("x-bad-needs", "x", "baseline", needs=("mnist",))
    with pytest.raises(ParameterError, match="fit none of the selected datasets"):
        GEN.resolve({"preset": "smoke", "datasets": [toy_dataset], "models": ["vae-mol"]})
    assert Needs(max_pixels=10).misfit(DATASETS["mnist"]).startswith("needs at most 10")


def test_experiments_tied_to_their_data_say_so():
    from vaebook.lab.page import get_experiment

    for name in ("smoothness", "collapse", "noise_variance", "lowrank", "celebahq"):
        with pytest.raises(ParameterError, match="is not taken: this experiment runs on .* Fix: drop"):
            get_experiment(name).resolve({"preset": "smoke", "datasets": ["mnist"]})


# -- in a copy of the package: the README's file, discovered; keys before and after additions ------------------
def _clone(tmp_path) -> Path:
    root = tmp_path / "clone"
    shutil.copytree(PKG, root / "vaebook", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def _py(root: Path, code: str, data_root, timeout=900) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "VAEBOOK_DATA": str(data_root)}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=root, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip(), out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


KEYS = """
import json, sys
import vaebook.data
from vaebook.experiments import _section6 as scale
from vaebook.lab.experiment import Context, _unit_key
from vaebook.lab.page import get_experiment
from vaebook.lab.zoo import Job
for extra in sys.argv[1:]:
    __import__(extra)
models = {}
for m in ("mle-iso-i", "mle-diag-d", "trainable-iso-d", "rae-gp", "vae-bernoulli", "lowrank-r4", "vae-mol"):
    d = "celeba64" if m == "vae-mol" else "mnist"
    job = Job.make(m, d, dict(epochs=1, lr=1e-3, batch_size=32), model_kwargs=None)
    models[f"{d}--{m}"] = job.key("h", 1)["code"]
evals = {}
for name in ("generation", "nll", "lowrank"):
    exp = get_experiment(name)
    p = exp.resolve({"preset": "smoke", **({"datasets": ["mnist"]} if name != "lowrank" else {})})
    ctx = Context(exp, p, log=lambda *a: None)
    for u in exp.plan(ctx):
        evals[f"{name}/{u.id}"] = _unit_key(exp, u, p, ctx)
print(json.dumps({"models": models, "evals": evals, "datasets": list(vaebook.data.DATASETS)}))
"""

BLOCK_DIAG = '''
"""A test-only Σx file: a 2×2-block shape added beside the others (never imported by the package)."""
from vaebook.variance import IsoI, register_variance


@register_variance
class TestBlock(IsoI):
    name = "test-block-2x2"
'''


def test_adding_a_sigma_and_a_dataset_file_keeps_every_key_and_editing_a_sigma_changes_its_own(tmp_path, data_root):
    if not (Path(data_root) / "MNIST" / "raw").is_dir():
        pytest.skip("MNIST not installed")
    root = _clone(tmp_path)
    code = lambda *extra: f"import sys; sys.argv += {list(extra)!r}\n" + KEYS  # noqa: E731
    before = _py(root, code(), data_root)
    assert before["evals"] and len(before["models"]) == 7
    path, block = readme_dataset_block()
    (root / path).write_text(block)
    (root / "vaebook" / "variance" / "test_block.py").write_text(BLOCK_DIAG)
    after = _py(root, code("vaebook.variance.test_block"), data_root)
    assert "mnist-inverted" in after["datasets"] and "mnist-inverted" not in before["datasets"]
    assert after["models"] == before["models"] and after["evals"] == before["evals"]
    # editing a Σx class's own file changes the keys of the models built on it, and no other model's
    f = root / "vaebook" / "variance" / "lowrank.py"
    f.write_text(f.read_text() + "\n# edited\n")
    edited = _py(root, code(), data_root)
    assert {k for k in before["models"] if edited["models"][k] != before["models"][k]} == {"mnist--lowrank-r4"}
    assert edited["evals"]["lowrank/mnist--lowrank-r4"] != before["evals"]["lowrank/mnist--lowrank-r4"]
    # the paper's Σx classes share vaebook/variance/__init__.py with DecoderVariance: editing it retrains them all
    f = root / "vaebook" / "variance" / "__init__.py"
    f.write_text(f.read_text().replace('    name = "iso-i"\n', '    name = "iso-i"  # edited\n', 1))
    edited = _py(root, code(), data_root)
    assert all(edited["models"][k] != before["models"][k] for k in ("mnist--mle-iso-i", "mnist--trainable-iso-d"))
    gaussian = [k for k in before["evals"] if k.split("--")[-1].startswith(("mle-", "trainable-", "vae-gaussian"))]
    assert gaussian and all(edited["evals"][k] != before["evals"][k] for k in gaussian)


RUN = """
import json
from vaebook import lab
from vaebook.lab.page import get_experiment
out = {}
for name, table in (("generation", "table4"), ("nll", "table7")):
    exp = get_experiment(name)
    r = lab.run(exp, {"preset": "smoke", "mode": "compute", "device": "cpu", "results_dir": %r,
                      "datasets": ["mnist-inverted"]}, log=lambda *a: None)
    res = lab.load_results(r.final_dir)
    t = res.tables[table]
    st = res.metrics["settings"]["mnist-inverted"]
    out[name] = {"rows": int((t["dataset"] == "mnist-inverted").sum()),
                 "scored": int(t.loc[t["dataset"] == "mnist-inverted", "ours"].notna().sum()),
                 "metrics": sorted(set(t.loc[t["dataset"] == "mnist-inverted", "metric"])),
                 "n_train": st.get("n_train"), "n_test": st.get("n_test"), "data": st.get("data")}
print(json.dumps(out))
"""


def test_the_readme_dataset_file_runs_through_tables_4_and_7_at_smoke(tmp_path, data_root):
    if not (Path(data_root) / "MNIST" / "raw").is_dir():
        pytest.skip("MNIST not installed")
    path, block = readme_dataset_block()
    assert path == "vaebook/data/mnist_inverted.py"
    root = _clone(tmp_path)
    (root / path).write_text(block)  # the one new file, copied as it is
    out = _py(root, RUN % str(tmp_path / "results"), data_root, timeout=1500)
    gen, nll = out["generation"], out["nll"]
    assert "256 training / 64 test images" in gen["data"] and gen["data"].startswith("inverted MNIST")
    assert gen["scored"] >= 14 and {"mse", "fid_prior", "fid_2nd_vae", "fid_gmm10"} <= set(gen["metrics"])
    assert nll["n_test"] == 64 and nll["scored"] >= 5 and {"nll", "nll_valid"} <= set(nll["metrics"])
