"""Row naming of Tables 4–7: a unit's id, a paper row's key, a row's display name and group (from the model
registry), the requested models and the rows run on a dataset, and the display order."""
from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd

from vaebook.lab.params import ParameterError
from vaebook.models import MODEL_REGISTRY


def unit_id(dataset: str, model: str) -> str:
    return f"{dataset}--{model}"


def registry_name(label: str, group: str) -> Optional[str]:
    """The registered model with the paper's row ``label`` in ``group`` (None when there is none)."""

    return next((n for n, s in MODEL_REGISTRY.items() if s.label == label and s.group == group), None)


def paper_row_key(r) -> str:
    """Our key of a paper table row (``model`` label, ``group``): the registered model with that label and
    group, else the label itself (so a paper row without a model still shows, as not run)."""
    return registry_name(r["model"], r["group"]) or f"{r['group']}: {r['model']}"


def paper_extra(r) -> dict:
    """Display columns of a paper row (for :func:`vaebook.lab.paper.long_rows`)."""
    return {"model": display(paper_row_key(r)), "group": r["group"]}


def display(name: str) -> str:
    """A row's name for tables and figures, from the registry: label (σx² spelled out) + the group."""

    spec = MODEL_REGISTRY.get(name)
    if spec is None:
        return name
    pretty = spec.label.replace("sigma_x^2", "σx²")
    return pretty + {"trainable_Sigma_x": " (trainable Σx)", "proposed_MLE": " (MLE, ours)"}.get(spec.group, "")


def group(name: str) -> str:
    return MODEL_REGISTRY[name].group if name in MODEL_REGISTRY else ""


def row_info(name: str) -> dict:
    return {"model": display(name), "group": group(name)}


def check_models(p: dict) -> None:
    """Requested models: registered, and each registered for at least one selected dataset."""

    req = p.get("models")
    if not isinstance(req, list):
        return
    bad = [m for m in req if m not in MODEL_REGISTRY]
    if bad:
        raise ParameterError(f"parameter 'models': unknown model(s) {bad}; the registered models are "
                             f"{sorted(MODEL_REGISTRY)}.")
    unused = [m for m in req if not any(MODEL_REGISTRY[m].fits(d) for d in p["datasets"])]
    if unused:
        raise ParameterError(f"parameter 'models': {unused} fit none of the selected datasets {p['datasets']} ("
                             + "; ".join(f"{m}: {MODEL_REGISTRY[m].misfit(p['datasets'][0])}; it fits "
                                         f"{list(MODEL_REGISTRY[m].datasets)}" for m in unused)
                             + "). Fix: select a dataset it fits, or drop it.")


def models_for(p: dict, dataset: str, paper_rows: Sequence[str]) -> list:
    """The rows to run on ``dataset``: the requested models that fit it, or (none requested) the default rows
    for it (:func:`~vaebook.experiments._datasets6.rows_for`), restricted to the preset's subset where it has one."""
    req = p.get("models")
    if isinstance(req, list):
        return [m for m in dict.fromkeys(req) if MODEL_REGISTRY[m].fits(dataset)]
    subset = (req or {}).get(dataset)
    return [m for m in paper_rows if m in MODEL_REGISTRY and (subset is None or m in subset)]



def order(paper: pd.DataFrame, ours: pd.DataFrame) -> list:
    """Row keys in display order: the paper's rows, then ours in registry order."""

    rows = list(dict.fromkeys(paper["row"])) if len(paper) else []
    extra = set(ours["row"]) if len(ours) else set()
    return rows + [n for n in MODEL_REGISTRY if n in extra and n not in rows]


__all__ = ["unit_id", "registry_name", "paper_row_key", "paper_extra", "display", "group", "row_info",
           "check_models", "models_for", "order"]
