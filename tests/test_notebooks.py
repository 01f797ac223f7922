"""The notebooks' parameters and the book's configuration (no execution: `make test` runs the smoke notebooks).

* every notebook's first code cell is tagged ``parameters`` and holds the shared parameters, and its
  defaults pass the section's validation;
* bad values (unknown preset, negative epochs, unknown model/pattern/claim) raise ParameterError naming
  the parameter and the allowed values;
* ``_toc.yml`` lists every notebook, ``_config.yml`` never executes notebooks itself.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

from vaebook.experiments.common import NOTEBOOKS, ParameterError

REPO = Path(__file__).resolve().parents[1]
MINE = ("theory", "smoothness", "noise_variance")
SHARED_PARAMS = {"preset", "mode", "device", "seed", "data_root", "results_dir"}


def _parameters_cell(name: str) -> dict:
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name}.ipynb has no code cell"
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), f"{name}.ipynb: first code cell is not tagged 'parameters'"
    ns: dict = {}
    exec(first.source, {}, ns)  # plain assignments only
    return ns


def _section(name: str):
    import importlib

    mod = importlib.import_module(f"vaebook.experiments.{name}")
    return mod


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if (REPO / "notebooks" / f"{n}.ipynb").is_file()])
def test_parameters_cell_holds_shared_parameters(name):
    ns = _parameters_cell(name)
    assert SHARED_PARAMS <= set(ns), f"{name}: missing {SHARED_PARAMS - set(ns)}"
    assert ns["mode"] == "report", "the default mode must be report (make book must not train)"


@pytest.mark.parametrize("name", MINE)
def test_papermill_sees_every_parameter(name):
    """papermill can only override what it parses (a '=' inside a trailing comment hides a parameter)."""
    import papermill as pm

    assert set(pm.inspect_notebook(str(REPO / "notebooks" / f"{name}.ipynb"))) == set(_parameters_cell(name))


@pytest.mark.parametrize("name", MINE)
def test_default_parameters_validate(name):
    p = _section(name).resolve(_parameters_cell(name))
    assert p["preset"] == "smoke" and p["mode"] == "report"


@pytest.mark.parametrize("name", MINE)
@pytest.mark.parametrize("bad, param, allowed", [
    ({"preset": "large"}, "'preset'", "'smoke', 'medium', 'full'"),
    ({"epochs": -3}, "'epochs'", ">= 1"),
    ({"mode": "train"}, "'mode'", "'report', 'compute'"),
])
def test_bad_shared_parameters(name, bad, param, allowed):
    params = {**_parameters_cell(name), **bad}
    with pytest.raises(ParameterError) as e:
        _section(name).resolve(params)
    assert param in str(e.value) and allowed in str(e.value)


def test_section_specific_parameters():
    nv, sm, th = _section("noise_variance"), _section("smoothness"), _section("theory")
    base = {"preset": "smoke"}
    with pytest.raises(ParameterError, match=r"'models\[0\]'.*'iso-i', 'diag-i', 'iso-d', 'diag-d'"):
        nv.resolve({**base, "models": ["iso-x"]})
    with pytest.raises(ParameterError, match=r"'patterns\[0\]'.*'spatial-conditional'"):
        nv.resolve({**base, "patterns": ["diagonal"]})
    with pytest.raises(ParameterError, match=r"'s_x2\[0\]'.*> 0.0"):
        nv.resolve({**base, "s_x2": [0.0]})
    with pytest.raises(ParameterError, match=r"'encodings\[0\]'.*'stochastic', 'deterministic'"):
        sm.resolve({**base, "encodings": ["random"]})
    with pytest.raises(ParameterError, match=r"'sigma_x2_log10\[0\]'"):
        sm.resolve({**base, "sigma_x2_log10": [5.0]})
    with pytest.raises(ParameterError, match=r"'claims\[0\]'.*theorem2_small_sigma_x"):
        th.resolve({**base, "claims": ["theorem9"]})
    with pytest.raises(ParameterError, match="unknown parameter"):
        sm.resolve({**base, "sigma_x": [0.0]})


def test_preset_knobs_filled_and_overridable():
    sm, nv = _section("smoothness"), _section("noise_variance")
    med = sm.resolve({"preset": "medium"})
    # medium: every other σx² of Table 1's grid (both ends kept), both encodings
    assert med["sigma_x2_log10"] == list(sm.SIGMA_X2_GRID[::2]) and med["encodings"] == ["stochastic", "deterministic"]
    assert med["sigma_x2_log10"][0] == 0.0 and med["sigma_x2_log10"][-1] == -1.0
    full = sm.resolve({"preset": "full"})
    assert full["sigma_z2_log10"] == list(sm.SIGMA_Z2_GRID) and full["sigma_z2_lr_factor"] == 1.0
    assert full["n_train"] is None  # the whole training set
    assert sm.resolve({"preset": "medium", "sigma_x2_log10": [0.0, -1.0]})["sigma_x2_log10"] == [0.0, -1.0]
    assert nv.resolve({"preset": "full"})["patterns"] == list(nv.PATTERNS)
    assert sm._config(sm.resolve({"preset": "full"})).epochs == 200  # Section 4: 200 epochs
    assert sm._config(sm.resolve({"preset": "full"})).lr == 1e-3  # the paper's lr at full
    assert nv._config(nv.resolve({"preset": "full"})).lr == 1e-3
    assert nv._config(nv.resolve({"preset": "full"})).epochs == 100  # Section 6 MNIST: 100 epochs
    assert sm._config(sm.resolve({"preset": "medium", "epochs": 5})).epochs == 5


def test_run_all_rejects_unknown_notebook():
    from vaebook.experiments.run_all import parse_only

    assert parse_only("theory, nll") == ["theory", "nll"]
    assert parse_only(None) == list(NOTEBOOKS)
    with pytest.raises(ParameterError, match="'smoothnes'"):
        parse_only("smoothnes")


def test_book_configuration():
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["only_build_toc_files"] is True
    assert {".venv", "results", "_build"} <= set(cfg["exclude_patterns"])
    from vaebook.experiments.build_book import _toc_files

    files = _toc_files(yaml.safe_load((REPO / "_toc.yml").read_text()))
    assert {f"notebooks/{n}" for n in NOTEBOOKS} <= set(files)
    for f in files:
        if f.startswith("book/"):
            assert any((REPO / f"{f}{ext}").is_file() for ext in (".md", ".ipynb")), f


def test_drop_from_toc():
    from vaebook.experiments.build_book import _drop_from_toc, _toc_files

    toc = {"format": "jb-book", "root": "book/intro",
           "parts": [{"caption": "A", "chapters": [{"file": "notebooks/a"}, {"file": "notebooks/b"}]},
                     {"caption": "B", "chapters": [{"file": "notebooks/c"}]}]}
    out = _drop_from_toc(toc, {"notebooks/b", "notebooks/c"})
    assert _toc_files(out) == ["book/intro", "notebooks/a"]
    assert [p["caption"] for p in out["parts"]] == ["A"]
