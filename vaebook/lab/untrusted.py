"""Results are untrusted input to the book: checks a results folder must pass before a page reads it.

A results folder (``<results_dir>/<preset>/<experiment>/``) may have been copied in, edited by hand, cut by
a full disk or planted. Before a page uses it, :func:`read_results_files` checks

* **links**: a folder or file under the results root that is a symbolic link pointing outside the repository
  and outside the results root is refused (:func:`check_link`); a run never replaces or deletes a link
  (:func:`check_run_folder`);
* **provenance.json**: JSON, an object, the documented fields with their types (:data:`PROVENANCE_FIELDS`,
  ``device`` / ``git`` sub-fields, ISO times, a hex commit), and its ``preset`` and ``notebook`` (experiment)
  agree with the folder it sits in;
* **metrics.json**: JSON, an object; the sections pages read as mappings (:data:`METRICS_OBJECTS`) are objects;
* **tables** (``*.csv``): parse, have unique column names, and a ``verdict`` column holds only known verdicts;
* **every string** in them (keys, values, cells) holds no HTML markup (``<tag``, ``</``, ``<!``, ``<?``), so
  no string from a results file can reach a page as HTML, whatever the page does with it. Strings that
  pages render are also escaped at render time (:mod:`vaebook.lab.display`).

A failed check raises :class:`ResultsFileError` naming the file, the field, what was expected and the fix.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import re
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from vaebook.lab.compare import VERDICTS

REPO = Path(__file__).resolve().parents[2]
PROVENANCE = "provenance.json"
METRICS = "metrics.json"
#: top-level provenance fields: name -> allowed JSON types (``None`` = null); others may hold any JSON
PROVENANCE_FIELDS = {
    "notebook": (str,), "preset": (str,), "parameters": (dict,), "device": (dict,), "versions": (dict,),
    "git": (dict,), "host": (str,), "start_time": (str,), "end_time": (str,), "wall_s": (int, float, type(None)),
    "preset_independent": (bool,),
}
DEVICE_FIELDS = {"device": (str,), "name": (str,), "threads": (int,), "error": (str,)}
GIT_FIELDS = {"commit": (str, type(None)), "dirty": (bool, type(None))}
#: metrics.json sections that pages read as mappings (``.get``/``.items``)
METRICS_OBJECTS = ("settings", "values", "verdicts", "did_not_train", "train_config", "theory", "claims")
_MARKUP = re.compile(r"<[A-Za-z/!?]")
_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", dict: "an object",
               list: "a list", type(None): "null"}


class ResultsFileError(ValueError):
    """A results file or folder is damaged, hostile or inconsistent; the message names it and the fix."""


def _rel(path) -> str:
    """``path`` relative to the repository when inside it, else as given (the user must find the file)."""
    p = Path(os.path.abspath(os.path.expanduser(str(path))))
    try:
        return p.relative_to(REPO).as_posix()
    except ValueError:
        return str(p)


def _fail(path, field: Optional[str], problem: str, expected: str) -> ResultsFileError:
    where = f"{_rel(path)}" + (f", field {field!r}" if field else "")
    return ResultsFileError(
        f"{where}: {problem}; expected {expected}. The results folder is damaged or was not written by vaebook: "
        f"re-run its experiment (python -m vaebook.lab run <experiment> --preset <preset>) or delete "
        f"{_rel(Path(path).parent)}.")


# -- links ----------------------------------------------------------------------------------------------
def allowed_roots(results_root) -> list:
    """Where a link under ``results_root`` may point: the repository and the results root itself (resolved)."""
    return [REPO.resolve(), Path(os.path.abspath(os.path.expanduser(str(results_root)))).resolve()]


def check_link(path, roots: Iterable[Path]) -> None:
    """Refuse ``path`` when it is a symbolic link whose target lies outside every one of ``roots``."""
    p = Path(path)
    if not p.is_symlink():
        return
    target = p.resolve()
    if not any(target == r or r in target.parents for r in roots):
        raise ResultsFileError(
            f"{_rel(p)} is a symbolic link to {target}, outside the repository and the results folder; results "
            f"must not be read from or written to elsewhere. Remove the link (rm {p}) and copy the files in, or "
            "point results_dir / --results-dir at that folder.")


def check_run_folder(root: Path, final_dir: Path, results_dir) -> None:
    """Before a run writes: the preset folder must not link outside, and the folders it replaces (``final``,
    ``final.old``) must be real folders, not links (a run renames and deletes them)."""
    check_link(root, allowed_roots(results_dir))
    for d in (final_dir, final_dir.with_name(final_dir.name + ".old")):
        if d.is_symlink():
            raise ResultsFileError(
                f"{_rel(d)} is a symbolic link (to {Path(d).resolve()}); a run replaces this folder and must not "
                f"follow or delete a link. Remove the link (rm {d}) or use that folder as results_dir.")


# -- strings --------------------------------------------------------------------------------------------
def check_strings(obj, path, field: str = "") -> None:
    """Refuse HTML markup in any string (keys included) of a JSON value; ``field`` is the dotted path so far."""
    if isinstance(obj, str):
        if _MARKUP.search(obj):
            raise _fail(path, field or None, f"holds HTML markup ({obj[:60]!r})", "plain text")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            sub = f"{field}.{k}" if field else str(k)
            check_strings(str(k), path, sub)
            check_strings(v, path, sub)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            check_strings(v, path, f"{field}[{i}]")


def read_json(path, what: str):
    """The parsed JSON of ``path`` (a clear :class:`ResultsFileError` when unreadable or not JSON)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        return json.loads(text)
    except UnicodeDecodeError as e:
        raise _fail(path, None, f"is not UTF-8 text ({e.reason} at byte {e.start})", f"the JSON {what}") from None
    except json.JSONDecodeError as e:
        raise _fail(path, None, f"is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
                    f"the JSON {what}") from None


def _is(v, types: tuple) -> bool:
    """``isinstance`` where a JSON true/false is not an integer."""
    return (bool in types) if isinstance(v, bool) else isinstance(v, types)


def _check_fields(obj: dict, fields: dict, path, prefix: str = "") -> None:
    for name, types in fields.items():
        if name in obj and not _is(obj[name], types):
            got = type(obj[name]).__name__
            raise _fail(path, prefix + name, f"is {got} {obj[name]!r:.60}",
                        " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types))


# -- the three kinds of files ---------------------------------------------------------------------------
def check_provenance(prov, path, folder: Path) -> dict:
    """Validate a parsed ``provenance.json`` of results folder ``folder`` (``<preset>/<experiment>``)."""
    if not isinstance(prov, dict):
        raise _fail(path, None, f"holds a JSON {type(prov).__name__}", "a JSON object of run facts")
    _check_fields(prov, PROVENANCE_FIELDS, path)
    _check_fields(prov.get("device") or {}, DEVICE_FIELDS, path, "device.")
    _check_fields(prov.get("git") or {}, GIT_FIELDS, path, "git.")
    commit = (prov.get("git") or {}).get("commit")
    if commit is not None and not _COMMIT.match(commit):
        raise _fail(path, "git.commit", f"is {commit!r:.60}", "a hexadecimal git commit id or null")
    for t in ("start_time", "end_time"):
        if t in prov:
            try:
                _dt.datetime.fromisoformat(prov[t])
            except ValueError:
                raise _fail(path, t, f"is {prov[t]!r:.60}", "an ISO 8601 time such as 2026-11-29T09:28:31+00:00") from None
    wall = prov.get("wall_s")
    if isinstance(wall, (int, float)) and not (math.isfinite(wall) and wall >= 0):
        raise _fail(path, "wall_s", f"is {wall!r}", "a finite number of seconds >= 0")
    check_strings(prov, path)
    folder = Path(folder)
    for field, want, what in (("preset", folder.parent.name, "preset"), ("notebook", folder.name, "experiment")):
        if field in prov and prov[field] != want:
            raise ResultsFileError(
                f"{_rel(path)}: field {field!r} says {what} {prov[field]!r:.60} but the file sits in the folder of "
                f"{what} {want!r} ({_rel(folder)}); results moved or copied into another {what}'s folder are not "
                f"believed. Move the folder to <results_dir>/{prov.get('preset', '<preset>')}/"
                f"{prov.get('notebook', '<experiment>')}, or re-run the experiment at {what} {want!r}.")
    return prov


def check_metrics(metrics, path) -> dict:
    """Validate a parsed ``metrics.json``: an object whose page-read sections are objects, no markup."""
    if not isinstance(metrics, dict):
        raise _fail(path, None, f"holds a JSON {type(metrics).__name__}", "a JSON object of named results")
    for k in METRICS_OBJECTS:
        if k in metrics and not isinstance(metrics[k], dict):
            raise _fail(path, k, f"is {type(metrics[k]).__name__}", "an object (a mapping of names to values)")
    check_strings(metrics, path)
    return metrics


def read_table(path):
    """A results table (``*.csv``) as a DataFrame, checked (parses, unique columns, known verdicts, no markup)."""
    try:
        df = pd.read_csv(path)
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError, csv.Error) as e:
        raise _fail(path, None, f"cannot be read as CSV ({type(e).__name__}: {str(e).strip()[:120]})",
                    "a comma-separated table with a header line") from None
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise _fail(path, dup[0], "is a repeated column name", "unique column names")
    cols = [str(c) for c in df.columns]
    for c in cols:
        check_strings(c, path, f"column {c}")
    for c in df.columns:
        if not pd.api.types.is_numeric_dtype(df[c]):
            for i, v in df[c].items():
                if isinstance(v, str) and _MARKUP.search(v):
                    raise _fail(path, f"{c}, row {i + 1}", f"holds HTML markup ({v[:60]!r})", "plain text")
    if "verdict" in df.columns:
        bad = sorted({str(v) for v in df["verdict"].dropna()} - set(VERDICTS))
        if bad:
            raise _fail(path, "verdict", f"holds {bad[:3]}", f"one of {list(VERDICTS)} or empty (not run)")
    return df


def read_results_files(folder) -> tuple:
    """``(provenance, metrics, tables, figures)`` of results folder ``folder``, each checked (see the module
    docstring); ``figures`` maps stems to paths of checked (non-escaping) files."""
    d = Path(folder)
    roots = allowed_roots(d.parent.parent)
    for p in (d.parent, d):
        check_link(p, roots)
    files = sorted(d.iterdir())
    for f in files:
        check_link(f, roots)
    prov = check_provenance(read_json(d / PROVENANCE, "provenance (run facts) that Run.finish writes"),
                            d / PROVENANCE, d)
    metrics = {}
    if (d / METRICS).is_file():
        metrics = check_metrics(read_json(d / METRICS, "metrics (an object of named results)"), d / METRICS)
    tables = {p.stem: read_table(p) for p in files if p.suffix == ".csv"}
    figures = {p.stem: p for p in files if p.suffix == ".png"}
    return prov, metrics, tables, figures


__all__ = ["ResultsFileError", "read_results_files", "check_provenance", "check_metrics", "read_table",
           "read_json", "check_strings", "check_link", "check_run_folder", "allowed_roots", "PROVENANCE_FIELDS",
           "METRICS_OBJECTS"]
