"""Build the Jupyter Book (HTML) into ``<out>/html``.

    python -m vaebook.lab.build_book --out _build                       # report mode, reads results/
    python -m vaebook.lab.build_book --executed-dir E --results-dir R --out DIR

The book's sources (``_config.yml``, ``_toc.yml``, ``book/``, ``notebooks/``) are copied into a temporary
folder. Notebooks come from ``--executed-dir`` when given (outputs kept as executed), otherwise they
are executed there in ``report`` mode (no training; they read ``--results-dir``). The status page
(``book/status.ipynb``) is always executed against ``--results-dir``. Jupyter Book never executes
anything itself (``execute_notebooks: off``), and Sphinx runs with warnings as errors (``-W -n
--keep-going``), so a broken glue reference or cross-reference fails the build.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import yaml

from vaebook.lab.run_all import REPO, ensure_kernel, notebooks

SOURCES = ("_config.yml", "_toc.yml", "book", "notebooks")
STATUS = "book/status.ipynb"


class BookBuildError(RuntimeError):
    """The book could not be built; the message says which step failed and where its log is."""


def _toc_files(toc: dict) -> list[str]:
    out = [toc["root"]] if "root" in toc else []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                out.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk({k: v for k, v in toc.items() if k != "root"})
    return out


def _drop_from_toc(node, missing: set):
    """The toc without entries whose ``file`` is in ``missing`` (and without emptied chapters)."""
    if isinstance(node, list):
        kept = [_drop_from_toc(n, missing) for n in node]
        return [n for n in kept if n is not None]
    if isinstance(node, dict):
        if node.get("file") in missing:
            return None
        out = {}
        for k, v in node.items():
            v2 = _drop_from_toc(v, missing)
            if k in ("chapters", "sections") and not v2:
                continue
            if k == "parts":
                v2 = [p for p in v2 if p.get("chapters")]
            out[k] = v2
        return out
    return node


def _copy_sources(dst: Path) -> None:
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__",
                                                                            "_build"))
        elif src.is_file():
            shutil.copy2(src, dst / name)
        else:
            raise BookBuildError(f"book source {src} is missing")


def _rel(path: Path) -> str:
    """``path`` relative to the repository (the notebooks run there) when inside it, so no machine path is
    injected into a page."""
    try:
        return Path(path).resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


def hide_parameter_cells(nb_path: Path) -> None:
    """Tag the parameters and papermill's injected cells ``remove-cell``: a reader sees results, not knobs."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    for c in nb.cells:
        tags = c.metadata.setdefault("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, nb_path)


def prepare(tmp: Path, results_dir: Path, executed_dir: Optional[Path], allow_missing: bool = False,
            log=print) -> list[str]:
    """Fill ``tmp`` with ready-to-render sources; returns the notebooks left out (``allow_missing``)."""
    from vaebook.lab.run_all import run_notebook

    _copy_sources(tmp)
    missing = []
    for name in notebooks():
        target = tmp / "notebooks" / f"{name}.ipynb"
        executed = executed_dir / f"{name}.ipynb" if executed_dir else None
        if executed is not None and executed.is_file():
            shutil.copy2(executed, target)
            continue
        if not (REPO / "notebooks" / f"{name}.ipynb").is_file():
            if allow_missing:
                missing.append(name)
                log(f"[build_book] {name}: notebook missing, left out of the book (--allow-missing)")
                continue
            raise BookBuildError(f"notebooks/{name}.ipynb is missing; add it or pass --allow-missing")
        why = "not in --executed-dir" if executed_dir else "report mode"
        log(f"[build_book] {name}: executing ({why}) against {results_dir}")
        run_notebook(name, target, {"mode": "report", "results_dir": _rel(results_dir)})
    # the status page reads the results directly
    import papermill as pm

    pm.execute_notebook(str(REPO / STATUS), str(tmp / STATUS), parameters={"results_dir": _rel(results_dir)},
                        kernel_name=ensure_kernel(), cwd=str(REPO), progress_bar=False)
    for nb in [tmp / STATUS, *(tmp / "notebooks").glob("*.ipynb")]:
        hide_parameter_cells(nb)
    if missing:
        toc_p = tmp / "_toc.yml"
        toc = yaml.safe_load(toc_p.read_text())
        toc_p.write_text(yaml.safe_dump(_drop_from_toc(toc, {f"notebooks/{m}" for m in missing}), sort_keys=False))
    return missing


def build(out: Path, results_dir: Path, executed_dir: Optional[Path] = None, allow_missing: bool = False,
          strict: bool = True, keep_tmp: bool = False, log=print) -> Path:
    """Build the HTML book into ``out/html``; returns that folder."""
    t0 = time.perf_counter()
    out = out.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="vaebook-book-"))
    try:
        prepare(tmp, results_dir.resolve(), executed_dir.resolve() if executed_dir else None, allow_missing, log)
        build_dir = tmp / "_out"
        cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(tmp), "--path-output", str(build_dir),
               "--builder", "html", "--all"]
        if strict:
            cmd += ["-W", "-n", "--keep-going"]
        log("[build_book] " + " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        log_path = out / "build.log"
        out.mkdir(parents=True, exist_ok=True)
        log_path.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise BookBuildError(f"jupyter-book build failed (exit {proc.returncode}); full log: {log_path}\n{tail}")
        html = out / "html"
        if html.exists():
            shutil.rmtree(html)
        shutil.copytree(build_dir / "_build" / "html", html)
        log(f"[build_book] ok in {time.perf_counter() - t0:.1f} s: {html / 'index.html'}")
        return html
    finally:
        if keep_tmp:
            log(f"[build_book] sources kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vaebook.lab.build_book", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="_build", help="output folder; the site goes to <out>/html")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--executed-dir", default=None, help="executed notebooks to use as they are (from run_all)")
    ap.add_argument("--allow-missing", action="store_true", help="leave out notebooks whose source is missing")
    ap.add_argument("--no-strict", action="store_true", help="do not turn Sphinx warnings into errors")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary source folder (debugging)")
    a = ap.parse_args(argv)
    try:
        build(Path(a.out), Path(a.results_dir), Path(a.executed_dir) if a.executed_dir else None, a.allow_missing,
              strict=not a.no_strict, keep_tmp=a.keep_tmp)
    except BookBuildError as e:
        print(f"[build_book] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
