"""What a notebook page calls: find the experiment by name, take the page's parameters, compute or find
its results, show where they come from and glue its summary."""
from __future__ import annotations

import importlib
import pkgutil
import types
from typing import Optional

from vaebook.lab.params import ParameterError

_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def experiments() -> dict:
    """Every experiment: the ``EXPERIMENT`` objects of the modules of :mod:`vaebook.experiments`, by name."""
    import vaebook.experiments as pkg

    out = {}
    for m in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"{pkg.__name__}.{m.name}")
        for obj in getattr(mod, "EXPERIMENTS", ()) or ((mod.EXPERIMENT,) if hasattr(mod, "EXPERIMENT") else ()):
            if obj.name in out and out[obj.name] is not obj:
                raise ValueError(f"experiment name {obj.name!r} defined twice")
            out[obj.name] = obj
    return out


def get_experiment(name: str):
    exps = experiments()
    if name not in exps:
        raise ParameterError(f"unknown experiment {name!r}; expected one of {sorted(exps)}.")
    return exps[name]


def page_params(namespace: dict, spec: dict) -> dict:
    """The page's parameters: the non-private, non-module, non-callable names of ``namespace``. A name the
    experiment does not know (a typo such as ``epoch``, injected by papermill) is an error."""
    got = {k: v for k, v in namespace.items() if not k.startswith("_") and k not in _IPYTHON_NAMES
           and not isinstance(v, types.ModuleType) and not callable(v)}
    unknown = sorted(set(got) - set(spec))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; this page takes {sorted(spec)}.")
    return got


def open_page(name: str, namespace: dict, log=print):
    """``(experiment, results or None)`` for a page: in ``compute`` mode run the experiment, else read the
    largest-scale results; display the banner and glue the summary."""
    from IPython.display import Markdown, display

    from vaebook.lab.display import banner, glue_all
    from vaebook.lab.glance import page_scale_line
    from vaebook.lab.experiment import run
    from vaebook.lab.results import load_results

    try:  # figures drawn on the page at twice the pixels, shown at their size: sharp when zoomed
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("retina")
    except ImportError:  # outside a notebook kernel's stack
        pass
    exp = get_experiment(name)
    params = page_params(namespace, exp.spec())
    p = exp.resolve(params)
    if p["mode"] == "compute":
        res: Optional[object] = load_results(run(exp, params, log=log).out_dir, exp.smoke_presets)
    else:
        res = exp.find(p["results_dir"])
    display(Markdown(banner(res, name, getattr(exp, "full_cost", "")) + "\n\n" + page_scale_line(exp, res)))
    glue_all(exp.summary(res))
    return exp, res


__all__ = ["experiments", "get_experiment", "page_params", "open_page"]
