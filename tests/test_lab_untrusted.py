"""Results are untrusted input (issue #30): links, schema, markup, escaping at render time."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from vaebook.lab import display as D
from vaebook.lab.results import PROVENANCE, Results, Run, find_results, load_results
from vaebook.lab.untrusted import ResultsFileError


def _publish(results_dir, name="exp", preset="smoke", table=True):
    """A complete results folder written by a real :class:`Run`; returns its path."""
    with Run(name, {"preset": preset, "device": "cpu", "results_dir": str(results_dir)}) as r:
        if table:
            r.write_table("table1", pd.DataFrame({"row": ["a"], "verdict": ["match"], "reason": ["x > y"]}))
        r.write_metrics({"settings": {"mnist": {"n": 3}}, "note": "σ² < 1e-3"})
    return r.final_dir


def _edit_json(path, **changes):
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


# -- links -------------------------------------------------------------------------------------------------
def test_results_folder_linking_outside_is_refused_by_a_run_before_writing(tmp_path):
    res = tmp_path / "res"
    final = _publish(res)
    outside = tmp_path / "outside"
    os.replace(final, outside)
    os.symlink(outside, final)
    before = sorted(p.name for p in outside.iterdir())
    with pytest.raises(ResultsFileError, match=r"symbolic link.*Remove the link"):
        Run("exp", {"preset": "smoke", "device": "cpu", "results_dir": str(res)})
    assert sorted(p.name for p in outside.iterdir()) == before and final.is_symlink()
    assert sorted(p.name for p in (res / "smoke").iterdir()) == ["exp"]  # no lock, no partial folder


def test_results_folder_linking_outside_is_refused_when_read(tmp_path):
    res = tmp_path / "res"
    final = _publish(res)
    outside = tmp_path / "outside"
    os.replace(final, outside)
    os.symlink(outside, final)
    with pytest.raises(ResultsFileError, match="outside the repository"):
        load_results(final)
    with pytest.raises(ResultsFileError, match="outside the repository"):
        find_results(res, "exp", ("smoke",))


def test_table_linking_to_a_file_outside_is_refused(tmp_path):
    final = _publish(tmp_path / "res")
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    os.symlink(secret, final / "table2.csv")
    with pytest.raises(ResultsFileError, match=r"table2\.csv is a symbolic link"):
        load_results(final)


def test_link_inside_the_results_folder_is_read(tmp_path):
    final = _publish(tmp_path / "res")
    os.symlink(final / "table1.csv", final / "table_alias.csv")
    assert list(load_results(final).tables["table_alias"]["row"]) == ["a"]


# -- schema ------------------------------------------------------------------------------------------------
def test_provenance_that_is_not_json_names_the_file(tmp_path):
    final = _publish(tmp_path / "res")
    (final / PROVENANCE).write_text('{"preset": "smoke", ')
    with pytest.raises(ResultsFileError, match=r"provenance\.json: is not valid JSON.*re-run"):
        load_results(final)


@pytest.mark.parametrize("field, value, match", [
    ("device", "cpu", "field 'device'.*an object"),
    ("wall_s", "long", "field 'wall_s'.*a number"),
    ("git", {"commit": 123}, "field 'git.commit'"),
    ("git", {"commit": "not a sha"}, "field 'git.commit'.*hexadecimal"),
    ("end_time", "yesterday", "field 'end_time'.*ISO 8601"),
    ("device", {"device": "cpu", "threads": True}, "field 'device.threads'.*an integer"),
])
def test_provenance_with_wrong_types_names_the_field(tmp_path, field, value, match):
    final = _publish(tmp_path / "res")
    _edit_json(final / PROVENANCE, **{field: value})
    with pytest.raises(ResultsFileError, match=match):
        load_results(final)


@pytest.mark.parametrize("content, match", [
    ("[1, 2]", "metrics.json: holds a JSON list"),
    ('{"settings": [1]}', "field 'settings'.*an object"),
    ("NaN]", "metrics.json: is not valid JSON"),
])
def test_metrics_with_wrong_types_names_file_and_field(tmp_path, content, match):
    final = _publish(tmp_path / "res")
    (final / "metrics.json").write_text(content)
    with pytest.raises(ResultsFileError, match=match):
        load_results(final)


@pytest.mark.parametrize("field, value, what", [("preset", "medium", "preset"), ("notebook", "other", "experiment")])
def test_provenance_disagreeing_with_its_folder_is_an_error(tmp_path, field, value, what):
    final = _publish(tmp_path / "res")
    _edit_json(final / PROVENANCE, **{field: value})
    with pytest.raises(ResultsFileError, match=f"says {what} '{value}'.*folder of {what}"):
        load_results(final)


def test_table_that_is_not_a_table_or_has_unknown_verdicts(tmp_path):
    final = _publish(tmp_path / "res")
    (final / "table1.csv").write_bytes(b"\xff\xfe\x00garbage\x00")
    with pytest.raises(ResultsFileError, match=r"table1\.csv: cannot be read as CSV"):
        load_results(final)
    (final / "table1.csv").write_text("row,verdict\na,great\n")
    with pytest.raises(ResultsFileError, match="field 'verdict'.*great"):
        load_results(final)
    (final / "table1.csv").write_text("row,row\na,b\n")
    with pytest.raises(ResultsFileError, match="repeated column"):
        load_results(final)


# -- markup ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["provenance", "metrics", "table"])
def test_html_in_a_results_file_is_refused(tmp_path, where):
    final = _publish(tmp_path / "res")
    evil = "x<script>alert(1)</script>"
    if where == "provenance":
        _edit_json(final / PROVENANCE, device={"device": "cpu", "threads": 2, "name": evil})
    elif where == "metrics":
        _edit_json(final / "metrics.json", settings={"mnist": {"note": evil}})
    else:
        pd.DataFrame({"row": ["a"], "reason": [evil]}).to_csv(final / "table1.csv", index=False)
    with pytest.raises(ResultsFileError, match="HTML markup"):
        load_results(final)


def test_comparisons_in_text_are_not_markup(tmp_path):
    res = load_results(_publish(tmp_path / "res"))
    assert res.metrics["note"] == "σ² < 1e-3" and res.tables["table1"]["reason"][0] == "x > y"


def _rendered(markdown: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").render(markdown)


def test_banner_and_figure_caption_escape_provenance_strings(tmp_path, monkeypatch):
    """Render-time escaping holds even for a Results that bypassed the checks (built in code)."""
    evil = "x` <script>alert(1)</script> `"
    prov = {"preset": "medium", "device": {"device": "cuda:0", "name": evil}}
    res = Results("medium", tmp_path, prov, {}, {}, {"fig": tmp_path / "fig.png"})
    html = _rendered(D.banner(res, "exp"))
    assert "<script>" not in html and "&lt;script&gt;" in html
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    monkeypatch.setattr("IPython.display.Image", lambda filename: filename)
    D.show_figure(res, "fig", "Caption")
    html = _rendered(shown[-1].data)
    assert "<script>" not in html and "&lt;script&gt;" in html
