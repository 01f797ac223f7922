"""One page at a time (``make page NAME=... PRESET=...`` → :mod:`vaebook.lab.one_page`): the name and the preset
reach every step, and only that page is checked. The book itself is not built here (that takes minutes)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vaebook.lab import one_page
from vaebook.lab.run_all import REPO


def test_steps_wire_the_name_and_preset_through(tmp_path):
    run, notebook, book, check = one_page.steps("lowrank", "smoke", tmp_path, device="cpu")
    res, executed = str(tmp_path / "results"), str(tmp_path / "executed")
    assert run[1:] == ["-m", "vaebook.lab", "run", "lowrank", "--preset", "smoke", "--device", "cpu",
                       "--results-dir", res]
    assert notebook[1:3] == ["-m", "vaebook.lab.run_all"]
    assert ["--only", "lowrank"] == notebook[3:5] and "compute" in notebook and "smoke" in notebook
    assert notebook[notebook.index("--results-dir") + 1] == res
    assert notebook[notebook.index("--executed-dir") + 1] == executed
    assert book[1:3] == ["-m", "vaebook.lab.build_book"] and "--allow-missing" in book
    assert book[book.index("--executed-dir") + 1] == executed and book[book.index("--results-dir") + 1] == res
    site = book[book.index("--out") + 1]
    assert check[1:] == ["-m", "vaebook.lab.site_check", str(Path(site) / "html"), "--only", "notebooks/lowrank"]


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path, capsys):
    assert one_page.main(["nll", "--preset", "cpu", "--out", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all("nll" in lines[i] for i in (0, 1, 3)) and "--preset cpu" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing ran


def test_an_unknown_name_or_one_without_a_page_is_refused(capsys):
    assert one_page.main(["no-such-table", "--dry-run"]) == 2
    assert "no experiment 'no-such-table'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no experiment"):
        one_page.check_name("no-such-table")


def test_make_page_calls_one_page_with_name_and_preset():
    text = (REPO / "Makefile").read_text()
    assert "\npage:" in text and "vaebook.lab.one_page $(NAME)" in text
    if shutil.which("make") is None:
        pytest.skip("no make")
    out = subprocess.run(["make", "-n", "-s", "page", "NAME=lowrank", "PRESET=cpu"], cwd=REPO, capture_output=True,
                         text=True).stdout  # -n: prints the recipe, runs nothing
    assert "vaebook.lab.one_page lowrank" in out and "--preset cpu" in out
    out = subprocess.run(["make", "-n", "-s", "page", "NAME=lowrank"], cwd=REPO, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout
    assert "--preset smoke" in out  # the default here is smoke, not the Makefile's PRESET (medium)


def test_the_command_is_documented():
    assert "make page NAME=" in (REPO / "README.md").read_text()
    assert "make page NAME=" in (REPO / "book" / "how_to_rerun.md").read_text()
