"""Execute the book's notebooks with papermill.

    python -m vaebook.lab.run_all --preset smoke --mode compute --results-dir R --executed-dir E \\
        --device cpu [--only theory,smoothness] [--data-root D] [--timeout S]

Each ``notebooks/<name>.ipynb`` runs with the parameters ``preset``, ``mode``, ``device``, ``seed``,
``results_dir`` (absolute) and ``data_root``, in the kernel ``python3`` of the interpreter running this
command (the venv's). Executed copies go to ``--executed-dir`` (default: a ``executed`` folder next to
the results). A page whose experiment has no such preset (e.g. ``medium`` on a page sized only for ``cpu``) is
skipped with a line saying so, not failed. Exits non-zero when any notebook fails, after running the others.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from vaebook.lab.params import ParameterError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
KERNEL = "python3"
MODES = ("report", "compute")


def notebooks(toc: Optional[Path] = None) -> list[str]:
    """The experiment notebooks, in book order: the ``notebooks/<name>`` entries of ``_toc.yml`` (the one list)."""
    import yaml

    out: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            f = node.get("file")
            if isinstance(f, str) and f.startswith("notebooks/"):
                out.append(f.split("/", 1)[1].removesuffix(".ipynb"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load((toc or REPO / "_toc.yml").read_text()))
    return out


def check_parameters(name: str, parameters: dict) -> None:
    """Refuse parameters the notebook's parameters cell does not declare (papermill would only warn)."""
    import papermill as pm

    declared = set(pm.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb")))
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise ParameterError(f"notebook {name!r}: unknown parameter(s) {unknown}; it declares {sorted(declared)}.")


def ensure_kernel() -> str:
    """Make sure a ``python3`` kernelspec runs *this* interpreter (install one into sys.prefix if needed)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        exe = spec.argv[0]
        if exe in ("python", "python3") or Path(exe).resolve() == Path(sys.executable).resolve():
            return KERNEL  # jupyter_client maps "python" to sys.executable for the native kernel
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(prefix=sys.prefix, kernel_name=KERNEL)
    return KERNEL


def parse_only(only: Optional[str]) -> list[str]:
    known = notebooks()
    if not only:
        return known
    names = [n.strip() for n in only.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise ParameterError(f"--only: unknown notebook(s) {bad or only!r}; expected names from {known}.")
    return names


def run_notebook(name: str, out_path: Path, parameters: dict, timeout: Optional[int] = None,
                 cwd: Optional[Path] = None, log_output: bool = False) -> float:
    """Execute ``notebooks/<name>.ipynb`` into ``out_path``; returns the wall time in seconds."""
    import papermill as pm

    src = NOTEBOOK_DIR / f"{name}.ipynb"
    if not src.is_file():
        raise FileNotFoundError(f"notebook notebooks/{name}.ipynb is missing (_toc.yml lists it)")
    check_parameters(name, parameters)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    pm.execute_notebook(str(src), str(out_path), parameters=parameters, kernel_name=ensure_kernel(),
                        cwd=str(cwd or REPO), execution_timeout=timeout, log_output=log_output,
                        progress_bar=False)
    return time.perf_counter() - t


def lacks_preset(name: str, preset: str) -> Optional[list]:
    """The presets of experiment ``name`` when ``preset`` is not one of them (the page is skipped); None when it
    is, or when no experiment has the notebook's name."""
    from vaebook.lab.page import get_experiment

    try:
        exp = get_experiment(name)
    except ParameterError:
        return None
    return None if preset in exp.presets else list(exp.presets)


def check_preset(preset: str, names: Sequence[str]) -> None:
    """Refuse a preset that no experiment defines (a typo such as ``smok``), or that none of the pages ``names``
    has (every page would be skipped and nothing run), as the single-experiment CLI refuses it."""
    from vaebook.lab.page import experiments

    exps = experiments()
    every = sorted({p for e in exps.values() for p in e.presets})
    if preset not in every:
        raise ParameterError(f"--preset {preset!r}: no experiment has this preset; expected one of {every}.")
    pages = {n: list(exps[n].presets) for n in names if n in exps}
    if pages and not any(preset in ps for ps in pages.values()):
        raise ParameterError(f"--preset {preset!r}: none of the selected pages has this preset, so nothing would "
                             f"run (their presets: {pages}); choose one of them or other pages (--only).")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vaebook.lab.run_all", description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--mode", default="compute", choices=MODES)
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--executed-dir", default=None, help="where executed notebooks go (default: <results-dir>/../executed)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=None, help="data folder (default: $VAEBOOK_DATA or ./data)")
    ap.add_argument("--only", default=None, help="comma-separated notebook names (default: every notebook of _toc.yml)")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    ap.add_argument("--log-output", action="store_true", help="stream the notebooks' output to the console")
    a = ap.parse_args(argv)
    try:
        names = parse_only(a.only)
        check_preset(a.preset, names)
    except ParameterError as e:
        ap.error(str(e))
    results = Path(a.results_dir).resolve()
    executed = Path(a.executed_dir).resolve() if a.executed_dir else results.parent / "executed"
    params = {"preset": a.preset, "mode": a.mode, "device": a.device, "seed": a.seed, "results_dir": str(results),
              "data_root": a.data_root}
    failures, skipped = [], []
    t_all = time.perf_counter()
    for name in names:
        has = lacks_preset(name, a.preset)
        if has is not None:
            skipped.append(name)
            print(f"[run_all] {name}: skipped, its experiment has no {a.preset!r} preset (it has {has})", flush=True)
            continue
        print(f"[run_all] {name}: preset={a.preset} mode={a.mode} device={a.device}", flush=True)
        try:
            dt = run_notebook(name, executed / f"{name}.ipynb", params, a.timeout, log_output=a.log_output)
            print(f"[run_all] {name}: ok in {dt:.1f} s", flush=True)
        except Exception as e:  # noqa: BLE001 - report every notebook, fail at the end
            failures.append(name)
            print(f"[run_all] {name}: FAILED: {type(e).__name__}: {str(e)[-2000:]}", file=sys.stderr, flush=True)
    ran = len(names) - len(skipped)
    print(f"[run_all] {ran - len(failures)}/{ran} notebooks ok"
          + (f" ({len(skipped)} skipped: {', '.join(skipped)})" if skipped else "") + f" in {time.perf_counter() - t_all:.1f} s; "
          f"executed notebooks in {executed}", flush=True)
    if failures:
        print(f"[run_all] failed: {', '.join(failures)} (the executed copies show the failing cell)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    sys.exit(main())
