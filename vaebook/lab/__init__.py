"""The experiment runtime: table-agnostic (it knows no dataset or table name).

* :mod:`~vaebook.lab.params` — one parameter spec type and its validation;
* :mod:`~vaebook.lab.results` — the atomic, locked run folder, provenance, finding the largest-scale results;
* :mod:`~vaebook.lab.data` — a registered dataset's images at a scale;
* :mod:`~vaebook.lab.zoo` — trained models cached by configuration, data hash, seed and code version;
* :mod:`~vaebook.lab.paper` — the paper's tables as long rows;
* :mod:`~vaebook.lab.compare` — verdict rules and comparison rows (with "ours only" rows);
* :mod:`~vaebook.lab.display` — tables, figures, glue;
* :mod:`~vaebook.lab.experiment` — the experiment protocol and the one run loop;
* :mod:`~vaebook.lab.page`, :mod:`~vaebook.lab.run_all`, :mod:`~vaebook.lab.build_book` — notebooks and the book.
"""
from vaebook.lab.compare import pairwise_trend, spearman, verdict, verdict_counts
from vaebook.lab.experiment import Context, Experiment, Unit, rows_frame, run
from vaebook.lab.params import ParameterError, ParamSpec, validate_params
from vaebook.lab.results import Results, Run, find_results, load_results
from vaebook.lab.zoo import Job, TrainedModel, Zoo

__all__ = ["pairwise_trend", "spearman", "verdict", "verdict_counts", "Context", "Experiment", "Unit",
           "rows_frame", "run", "ParameterError", "ParamSpec", "validate_params", "Results", "Run", "find_results",
           "load_results", "Job", "TrainedModel", "Zoo"]
