"""The pages: every notebook of ``_toc.yml`` is a registered experiment whose parameters cell declares exactly
the experiment's parameters, opens it through ``open_page``, and validates its defaults (no execution here:
``make test`` runs every notebook at smoke). The notebook list exists once, in ``_toc.yml``."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

from vaebook.lab.params import ParameterError
from vaebook.lab.page import experiments
from vaebook.lab.run_all import notebooks, parse_only

REPO = Path(__file__).resolve().parents[1]
NAMES = notebooks()


def _nb(name):
    return nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)


def _parameters_cell(name: str) -> dict:
    code = [c for c in _nb(name).cells if c.cell_type == "code"]
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), f"{name}.ipynb: first code cell is not tagged 'parameters'"
    ns: dict = {}
    exec(first.source, {}, ns)  # plain assignments only
    return ns


def test_every_page_is_an_experiment_and_every_experiment_a_page():
    """… or a section of one (``page``: e.g. noise_maps on the Table-3 page), which has no notebook of its own."""
    exps = experiments()
    pages = {n for n, e in exps.items() if not getattr(e, "page", "")}
    sections = {n: e.page for n, e in exps.items() if getattr(e, "page", "")}
    assert NAMES and set(NAMES) == pages, (set(NAMES) ^ pages)
    assert set(sections.values()) <= set(NAMES) and not set(sections) & set(NAMES), sections
    for n in NAMES:
        assert (REPO / "notebooks" / f"{n}.ipynb").is_file()
    for n in sections:
        assert not (REPO / "notebooks" / f"{n}.ipynb").exists(), f"{n} is a section of {sections[n]}: no own page"


@pytest.mark.parametrize("name", NAMES)
def test_parameters_cell_declares_exactly_the_experiment_parameters(name):
    import papermill as pm

    exp = experiments()[name]
    ns = _parameters_cell(name)
    assert set(ns) == set(exp.spec()), f"{name}: {set(ns) ^ set(exp.spec())}"
    assert set(pm.inspect_notebook(str(REPO / "notebooks" / f"{name}.ipynb"))) == set(ns)
    assert ns["mode"] == "report", "the default mode must be report (make book must not train)"
    p = exp.resolve(ns)
    assert p["preset"] == list(exp.presets)[0]


@pytest.mark.parametrize("name", NAMES)
def test_every_cell_has_a_unique_id(name):
    """nbformat 4.5 cells carry ids (a cell added by hand without one makes nbformat warn, and will fail later)."""
    import json

    raw = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
    ids = [c.get("id") for c in raw["cells"]]
    assert None not in ids, f"{name}.ipynb: cells {[i for i, v in enumerate(ids) if v is None]} have no id"
    assert len(set(ids)) == len(ids), f"{name}.ipynb: duplicate cell ids"


@pytest.mark.parametrize("name", NAMES)
def test_page_opens_its_experiment(name):
    code = [c for c in _nb(name).cells if c.cell_type == "code"]
    assert f'open_page("{name}", globals())' in code[1].source


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad, param", [({"preset": "large"}, "'preset'"), ({"epochs": -3}, "'epochs'"),
                                        ({"mode": "train"}, "'mode'"), ({"epoch": 3}, "epoch")])
def test_bad_shared_parameters(name, bad, param):
    with pytest.raises(ParameterError) as e:
        experiments()[name].resolve({**_parameters_cell(name), **bad})
    assert param in str(e.value)


def test_run_all_rejects_unknown_notebook():
    assert parse_only(f"{NAMES[0]}, {NAMES[-1]}") == [NAMES[0], NAMES[-1]]
    assert parse_only(None) == NAMES
    with pytest.raises(ParameterError, match="'smoothnes'"):
        parse_only("smoothnes")


def test_book_configuration():
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["only_build_toc_files"] is True
    assert {".venv", "results", "_build"} <= set(cfg["exclude_patterns"])
    from vaebook.lab.build_book import _toc_files

    files = _toc_files(yaml.safe_load((REPO / "_toc.yml").read_text()))
    for f in files:
        if f.startswith("book/"):
            assert any((REPO / f"{f}{ext}").is_file() for ext in (".md", ".ipynb")), f


def test_drop_from_toc():
    from vaebook.lab.build_book import _drop_from_toc, _toc_files

    toc = {"format": "jb-book", "root": "book/intro",
           "parts": [{"caption": "A", "chapters": [{"file": "notebooks/a"}, {"file": "notebooks/b"}]},
                     {"caption": "B", "chapters": [{"file": "notebooks/c"}]}]}
    out = _drop_from_toc(toc, {"notebooks/b", "notebooks/c"})
    assert _toc_files(out) == ["book/intro", "notebooks/a"]
    assert [p["caption"] for p in out["parts"]] == ["A"]


def test_run_all_skips_a_page_without_the_preset(tmp_path, capsys):
    """`make reproduce PRESET=medium` must not fail on a page sized only for smoke/cpu: it is skipped, said so."""
    from vaebook.lab.run_all import lacks_preset, main

    no_medium = [n for n in NAMES if "medium" not in experiments()[n].presets]
    with_medium = [n for n in NAMES if "medium" in experiments()[n].presets]
    assert no_medium and with_medium
    assert lacks_preset(no_medium[0], "medium") == list(experiments()[no_medium[0]].presets)
    assert lacks_preset(with_medium[0], "medium") is None and lacks_preset("not-an-experiment", "medium") is None
    # selected alone, a page without the preset is refused before anything runs (nothing would run at all) …
    with pytest.raises(SystemExit):
        main(["--preset", "medium", "--mode", "report", "--results-dir", str(tmp_path / "r"), "--only", no_medium[0]])
    assert "none of the selected pages has this preset" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    # … among pages that have it, it is skipped and said so (the run itself is not started here)
    assert lacks_preset(no_medium[0], "medium") and not lacks_preset(with_medium[0], "medium")
