"""Build the Jupyter Book (HTML) into ``<out>/html``.

    python -m vaebook.lab.build_book --out _build                       # report mode, reads results/
    python -m vaebook.lab.build_book --executed-dir E --results-dir R --out DIR

The book's sources (``_config.yml``, ``_toc.yml``, ``book/``, ``notebooks/``) are copied into a temporary
folder. Notebooks come from ``--executed-dir`` when given (outputs kept as executed), otherwise they
are executed there in ``report`` mode (no training; they read ``--results-dir``). The status page
(``book/status.ipynb``) is always executed against ``--results-dir``. Jupyter Book never executes
anything itself (``execute_notebooks: off``), and Sphinx runs with warnings as errors (``-W -n
--keep-going``), so a broken glue reference or cross-reference fails the build.

MathJax is served from the site itself, so maths renders without internet: the one file
``es5/tex-svg-full.js`` of the npm package ``mathjax@3.2.2`` (all TeX extensions, SVG output, no font
files) is fetched once with ``npm pack`` into ``.cache/`` and copied to ``_static/mathjax/`` (``_config.yml``:
``mathjax_path``). Without npm or the registry the build says so and falls back to the CDN.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import yaml

from vaebook.lab.run_all import REPO, ensure_kernel, notebooks

SOURCES = ("_config.yml", "_toc.yml", "book", "notebooks")
STATUS = "book/status.ipynb"


MATHJAX_VERSION = "3.2.2"
MATHJAX_FILE = "tex-svg-full.js"
MATHJAX_CDN = f"https://cdn.jsdelivr.net/npm/mathjax@{MATHJAX_VERSION}/es5/{MATHJAX_FILE}"
MATHJAX_CACHE = REPO / ".cache" / f"mathjax-{MATHJAX_VERSION}"


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


def fetch_mathjax(cache: Path = MATHJAX_CACHE, log=print) -> Optional[Path]:
    """The folder holding MathJax's ``tex-svg-full.js`` (and its LICENSE), fetched once from the npm registry with
    ``npm pack mathjax@<version>`` into ``cache``; None (with a message) when npm is missing or fails."""
    if (cache / MATHJAX_FILE).is_file():
        return cache
    npm = shutil.which("npm")
    if npm is None:
        log("[build_book] npm not found: MathJax cannot be bundled (install Node.js/npm); maths will need internet")
        return None
    with tempfile.TemporaryDirectory() as td:
        try:
            proc = subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--pack-destination", td, "--silent"],
                                  capture_output=True, text=True, timeout=600, cwd=td)
        except (OSError, subprocess.SubprocessError) as e:
            log(f"[build_book] npm pack mathjax@{MATHJAX_VERSION} failed ({e}); maths will need internet")
            return None
        tgz = next(iter(sorted(Path(td).glob("mathjax-*.tgz"))), None)
        if proc.returncode != 0 or tgz is None:
            log(f"[build_book] npm pack mathjax@{MATHJAX_VERSION} failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-300:]}; maths will need internet")
            return None
        part = cache.with_name(cache.name + f".partial-{os.getpid()}")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        with tarfile.open(tgz) as tf:
            for member, out in ((f"package/es5/{MATHJAX_FILE}", MATHJAX_FILE), ("package/LICENSE", "LICENSE")):
                f = tf.extractfile(tf.getmember(member))
                (part / out).write_bytes(f.read() if f is not None else b"")
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(part, cache)
    log(f"[build_book] MathJax {MATHJAX_VERSION} fetched from the npm registry into {_rel(cache)}")
    return cache


def bundle_mathjax(tmp: Path, log=print) -> bool:
    """Copy MathJax into the book's static folder (``_config.yml``'s ``mathjax_path``); without it, point
    ``mathjax_path`` at the CDN in the build's copy of ``_config.yml``. True when bundled."""
    cfg_p = tmp / "_config.yml"
    cfg = yaml.safe_load(cfg_p.read_text())
    path = (cfg.get("sphinx", {}).get("config") or {}).get("mathjax_path", "")
    if not path or "://" in path:
        return False
    src = fetch_mathjax(log=log)
    static = (cfg["sphinx"]["config"].get("html_static_path") or ["_static"])[0]
    if src is not None:
        dst = tmp / static / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / MATHJAX_FILE, dst)
        if (src / "LICENSE").is_file():
            shutil.copy2(src / "LICENSE", dst.parent / "LICENSE")
        return True
    cfg["sphinx"]["config"]["mathjax_path"] = MATHJAX_CDN
    cfg_p.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return False


def hide_parameter_cells(nb_path: Path) -> None:
    """Ready an executed notebook for the book: a reader sees results, not knobs or machine paths.

    * the ``parameters`` cell is tagged ``remove-cell``; papermill's injected cell is dropped (it may hold the
      builder's absolute ``results_dir``), and so are papermill's input/output paths and parameters in the
      notebook's metadata (the site offers the notebook for download);
    * printed output (``stream``: the training log of a page run in compute mode) is dropped: the page shows
      results; the log stays in the executed notebook;
    * a hidden-input code cell without any other output is removed (an empty "show code" toggle tells nothing).
    """
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    cells = []
    for c in nb.cells:
        tags = c.metadata.setdefault("tags", [])
        if "injected-parameters" in tags:
            continue
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if c.cell_type == "code":
            c.outputs = [o for o in c.get("outputs", []) if o.get("output_type") != "stream"]
        if (c.cell_type == "code" and not c.get("outputs") and "hide-input" in tags and "remove-cell" not in tags):
            tags.append("remove-cell")
        cells.append(c)
    nb.cells = cells
    pm = nb.metadata.get("papermill")
    if isinstance(pm, dict):
        for k in ("input_path", "output_path", "parameters", "environment_variables"):
            pm.pop(k, None)
    nbformat.write(nb, nb_path)


def prepare(tmp: Path, results_dir: Path, executed_dir: Optional[Path], allow_missing: bool = False,
            log=print) -> list[str]:
    """Fill ``tmp`` with ready-to-render sources; returns the notebooks left out (``allow_missing``)."""
    from vaebook.lab.run_all import run_notebook

    _copy_sources(tmp)
    bundle_mathjax(tmp, log)
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
