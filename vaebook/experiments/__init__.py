"""Section drivers (one per notebook) and the shared results/parameters machinery (:mod:`.common`).

Each ``vaebook.experiments.<notebook>`` module exposes ``PARAMS`` (the notebook's parameter spec) and
``run(params) -> Run``; notebooks call them in compute mode and read ``results/`` in report mode.
"""
from vaebook.experiments.common import (COMMON_PARAMS, NOTEBOOKS, ParameterError, ParamSpec, Run, latest_results,
                                        provenance_label, validate_params, verdict)

__all__ = ["COMMON_PARAMS", "NOTEBOOKS", "ParameterError", "ParamSpec", "Run", "latest_results", "provenance_label",
           "validate_params", "verdict"]
