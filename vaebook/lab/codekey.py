"""Code versions that mean what they say: the source files a trained model or an evaluation depends on.

* A model (:func:`model_files`): the files that define the classes of the built model object and of its submodules
  and their attributes (``type(obj).__mro__``: the model class, its Σx class and rescue, ...), the file of its
  architecture's net builder, the training package, and the files of the names that the model class's own
  files and the trainer import from vaebook (one level: e.g. a penalty function of :mod:`vaebook.metrics` that a
  baseline's loss calls; not what a Σx registry's ``__init__`` imports, so a new Σx file changes no other model).
* An evaluation (:func:`module_files`): the experiment's module and, transitively, the module that *defines* each
  name it imports from vaebook (``from vaebook.lab import Unit`` is ``vaebook/lab/experiment.py``, not the whole
  package).

So adding a file (a new Σx, a new dataset) changes no existing key, and editing a model's own Σx class changes
that model's key. Files are hashed with their path relative to the package's parent, so a copy of the package
gives the same keys.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import sys
import types
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

from vaebook.nets import ARCHITECTURES

ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the vaebook package
PACKAGE = "vaebook"
#: every file of this package trains every model (the trainer, its loops, its checkpoints)
TRAIN_PACKAGE = "vaebook.train"


def _own_file(obj) -> Optional[Path]:
    """The source file of a vaebook module, class or function (None for anything else)."""
    mod = obj if isinstance(obj, types.ModuleType) else sys.modules.get(getattr(obj, "__module__", "") or "")
    if mod is None or not (mod.__name__ == PACKAGE or mod.__name__.startswith(PACKAGE + ".")):
        return None
    try:
        f = inspect.getsourcefile(obj if isinstance(obj, types.ModuleType) else mod)
    except TypeError:
        return None
    return Path(f).resolve() if f else None


def _module_name(path: Path) -> str:
    rel = path.resolve().relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=None)
def imported_files(path: Path) -> tuple:
    """The files that define the names ``path`` imports from vaebook, anywhere in its code (module level or in a
    function): for ``from M import n``, the module of ``M.n`` when it is a module, class or function, else ``M``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            mod = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else (node.module or "")
            if not (mod == PACKAGE or mod.startswith(PACKAGE + ".")):
                continue
            m = importlib.import_module(mod)
            for alias in node.names:
                obj = getattr(m, alias.name, None)
                if obj is None:
                    try:
                        obj = importlib.import_module(f"{mod}.{alias.name}")
                    except ImportError:
                        obj = m
                out.add(_own_file(obj) or _own_file(m))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    out.add(_own_file(importlib.import_module(alias.name)))
    out.discard(None)
    out.discard(path)
    return tuple(sorted(out))


def module_files(modules: Iterable) -> list:
    """The files of ``modules`` (module objects or dotted names) and, transitively, of what they import from vaebook
    (:func:`imported_files`); sorted, each once."""
    todo = [_own_file(importlib.import_module(m) if isinstance(m, str) else m) for m in modules]
    seen: set = set()
    while todo:
        f = todo.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        todo += imported_files(f)
    return sorted(seen)


def _train_files() -> list:
    pkg = importlib.import_module(TRAIN_PACKAGE)
    return sorted(Path(pkg.__file__).resolve().parent.rglob("*.py"))


def model_files(model) -> list:
    """The source files that define ``model`` (see the module docstring); sorted, each once."""
    def mro_files(obj) -> set:
        return {f for f in (_own_file(c) for c in type(obj).__mro__) if f is not None}

    objs = list(model.modules()) if hasattr(model, "modules") else [model]
    for m in list(objs):  # plain attributes of vaebook classes (a Σx's rescue, ...), one level down
        objs += [v for v in vars(m).values() if not isinstance(v, (type, types.ModuleType)) and _own_file(type(v))]
    top = mro_files(model) | set(_train_files())  # the model class's files and the trainer: with what they import
    files = set(top).union(*(mro_files(o) for o in objs))
    arch = ARCHITECTURES.get(getattr(model, "arch", None))
    if arch is not None and _own_file(arch.builder):
        files.add(_own_file(arch.builder))
    for f in top:
        files.update(imported_files(f))
    return sorted(files)


def files_hash(files: Iterable[Path]) -> str:
    """BLAKE2b of each file's path (relative to the package's parent) and bytes."""
    h = hashlib.blake2b(digest_size=8)
    for f in sorted(Path(x).resolve() for x in files):
        h.update(f.relative_to(ROOT).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


__all__ = ["imported_files", "module_files", "model_files", "files_hash"]
