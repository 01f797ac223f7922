"""One page at a time: run one experiment at a preset, execute its notebook, build the book and check only that page.

    python -m vaebook.lab.one_page lowrank --preset smoke [--device cpu] [--out _build/page-lowrank] [--dry-run]
    make page NAME=lowrank PRESET=smoke

Four steps, each the project's own command (``--dry-run`` prints them):

1. ``python -m vaebook.lab run <name> --preset <preset> --results-dir <out>/results``: trains and evaluates (models
   and per-unit evaluations are cached under ``<out>/results/<preset>/``);
2. ``python -m vaebook.lab.run_all --only <name> --mode compute ...``: executes ``notebooks/<name>.ipynb`` with
   papermill against the same results folder (the caches of step 1 make it quick) into ``<out>/executed``;
3. ``python -m vaebook.lab.build_book --executed-dir <out>/executed --results-dir <out>/results --out <out>/site
   --allow-missing``: the whole book, with this page as executed (the other pages read ``<out>/results``, which has
   only this run, so they say "no results");
4. ``python -m vaebook.lab.site_check <out>/site/html --only notebooks/<name>``: only this page is checked.

The page is then ``<out>/site/html/notebooks/<name>.html``. An experiment that is a section of another page (its
``page`` attribute, e.g. ``noise_maps`` on ``noise_variance``) runs in step 1, and its host page is executed, built
and checked in steps 2–4. A name that is not an experiment with a page in ``_toc.yml`` is refused before anything
runs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from vaebook.lab.page import experiments
from vaebook.lab.run_all import REPO, notebooks


def steps(name: str, preset: str = "smoke", out: Optional[Path] = None, device: str = "auto",
          data_root: Optional[str] = None) -> list:
    """The four commands (argument lists) that run ``name`` at ``preset`` and build and check its page."""
    page = _page(name)  # a section (e.g. noise_maps) is built and checked on its host page
    out = Path(out if out is not None else REPO / "_build" / f"page-{name}")
    res, executed, site = out / "results", out / "executed", out / "site"
    data = ["--data-root", str(data_root)] if data_root else []
    py = sys.executable
    return [
        [py, "-m", "vaebook.lab", "run", name, "--preset", preset, "--device", device, "--results-dir", str(res), *data],
        [py, "-m", "vaebook.lab.run_all", "--only", page, "--preset", preset, "--mode", "compute", "--device", device,
         "--results-dir", str(res), "--executed-dir", str(executed), *data],
        [py, "-m", "vaebook.lab.build_book", "--executed-dir", str(executed), "--results-dir", str(res),
         "--out", str(site), "--allow-missing"],
        [py, "-m", "vaebook.lab.site_check", str(site / "html"), "--only", f"notebooks/{page}"],
    ]


def _page(name: str) -> str:
    """The notebook that shows experiment ``name``: its own, or the page it is a section of."""
    from vaebook.lab.status import host_page

    exps = experiments()
    return host_page(exps[name]) if name in exps else name


def check_name(name: str) -> None:
    """Refuse a name that is not a registered experiment with a page listed in ``_toc.yml``."""
    if name not in experiments():
        raise ValueError(f"no experiment {name!r}; the experiments are {sorted(experiments())}.")
    if _page(name) not in notebooks():
        raise ValueError(f"experiment {name!r} has no page in _toc.yml: add notebooks/{name}.ipynb to _toc.yml "
                         "(every experiment must have a page).")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vaebook.lab.one_page", description=__doc__.split("\n")[0])
    ap.add_argument("name", help="the experiment (its page is notebooks/<name>.ipynb)")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default=None, help="data folder (default: $VAEBOOK_DATA or ./data)")
    ap.add_argument("--out", default=None, help="working folder (default: _build/page-<name>)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    a = ap.parse_args(argv)
    try:
        check_name(a.name)
    except ValueError as e:
        print(f"[one_page] error: {e}", file=sys.stderr)
        return 2
    cmds = steps(a.name, a.preset, Path(a.out) if a.out else None, a.device, a.data_root)
    t0 = time.perf_counter()
    for cmd in cmds:
        print("[one_page] " + " ".join(cmd), flush=True)
        if a.dry_run:
            continue
        rc = subprocess.run(cmd, cwd=str(REPO)).returncode
        if rc != 0:
            print(f"[one_page] FAILED (exit {rc}): {cmd[2]}", file=sys.stderr)
            return rc
    if not a.dry_run:
        page = Path(cmds[-1][3]) / "notebooks" / f"{_page(a.name)}.html"
        print(f"[one_page] {a.name} at {a.preset}: page built and checked in {time.perf_counter() - t0:.0f} s: {page}")
    return 0


__all__ = ["steps", "check_name", "main"]


if __name__ == "__main__":
    sys.exit(main())
