"""Imports at module level with no hidden cycles: every module of the package imports on its own (a fresh set of
vaebook modules each time, so a cycle that only an import order exposes fails here), and the lower layers never
import the higher ones (models → metrics, posterior → metrics: the arrows that used to hide a cycle)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import vaebook

PKG = Path(vaebook.__file__).resolve().parent

#: package → the vaebook packages it must not import (anywhere in its code, module level or in a function)
FORBIDDEN = {
    "models": ("vaebook.metrics", "vaebook.posterior", "vaebook.experiments", "vaebook.lab"),
    "nets": ("vaebook.metrics", "vaebook.posterior", "vaebook.experiments", "vaebook.lab", "vaebook.models"),
    "variance": ("vaebook.metrics", "vaebook.posterior", "vaebook.experiments", "vaebook.lab"),
    "posterior": ("vaebook.metrics", "vaebook.experiments", "vaebook.lab"),
}
LOW = ("_util.py", "latent.py")  # below metrics, posterior and models: they import no other vaebook module


def _imports(path: Path) -> set:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_lower_layers_do_not_import_higher_ones():
    bad = []
    for pkg, forbidden in FORBIDDEN.items():
        for f in sorted((PKG / pkg).rglob("*.py")):
            bad += [f"{f.relative_to(PKG.parent)} imports {m}" for m in _imports(f)
                    if any(m == x or m.startswith(x + ".") for x in forbidden)]
    for name in LOW:
        bad += [f"vaebook/{name} imports {m}" for m in _imports(PKG / name) if m.startswith("vaebook")]
    assert not bad, "\n".join(bad)


SCRIPT = r"""
import importlib, pkgutil, sys, traceback
import vaebook
names = sorted(m.name for m in pkgutil.walk_packages(vaebook.__path__, "vaebook.") if not m.name.endswith("__main__"))
failed = []
for name in names:
    for k in [k for k in sys.modules if k == "vaebook" or k.startswith("vaebook.")]:
        del sys.modules[k]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print(len(names))
print("\n".join(failed))
"""


def test_every_module_imports_alone():
    """Each module first, in a fresh set of vaebook modules (one interpreter: torch is imported once)."""
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    n, *failed = r.stdout.strip().splitlines()
    assert int(n) > 50 and not [f for f in failed if f], "\n".join(failed)


def test_the_fid_posterior_cycle_is_gone():
    for mod in ("vaebook.metrics.fid", "vaebook.posterior", "vaebook.models.baselines.rae"):
        r = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
