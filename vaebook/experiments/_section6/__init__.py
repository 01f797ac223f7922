"""Section 6 (Tables 4–7) in one place, one idea per file: its scale (:mod:`.presets`), its one
:class:`~vaebook.lab.Job` per (model, dataset) and its units (:mod:`.jobs`), its row naming (:mod:`.rows`), the FID
scale, reference and floor (:mod:`.fid`), its verdict rule (:mod:`.verdict`), what its claims read
(:mod:`.claims`), its run lines (:mod:`.prose`), the cost of what a CPU run leaves out (:mod:`.cost`) and the base
class of its experiments (:mod:`.base`). No experiment loop lives here.

``generation`` (Table 4), ``celebahq`` (Table 6), ``interpolation`` (Table 5) and ``nll`` (Table 7)
all build their jobs with :func:`job` from the same :data:`PRESETS`, so a model trained for one page is
the same zoo entry for the others (same dataset-spec optimiser setting, same preset overrides, same
training images, same seed).

Choices the paper does not state (ours): the preset data sizes (the first ``n`` images of a split),
the FID sample counts and feature sizes (only ``full`` uses the paper's 10,000 samples and 2048-d
features; other FIDs are marked as not comparable), the second-stage VAE sizes and GMM iterations.
"""
from __future__ import annotations

from vaebook.experiments._datasets6 import ANY, per_dataset
from vaebook.experiments._section6.base import EvalSetup, Section6Experiment
from vaebook.experiments._section6.claims import both, cells, is_ae_type, is_vae
from vaebook.experiments._section6.cost import CPU_TFLOPS, GPU_TFLOPS, INCEPTION_GFLOP, TRAIN_GFLOP, gpu_notice
from vaebook.experiments._section6.fid import (data_note, fid_batch, fid_bias, fid_comparable, fid_floors, fid_note,
                                               real_floor, reference)
from vaebook.experiments._section6.jobs import epoch_seconds, failed_rows, job, load, units, untrained_reason
from vaebook.experiments._section6.presets import (DATASETS, FAIR_TRAINABLE, FID_PARAMS, PAPER_FID_DIMS,
                                                   PAPER_FID_SAMPLES, PAPER_IWAE_K, PAPER_TRAIN_IMAGES, PRESETS,
                                                   SIZE_PARAMS, experiment_presets)
from vaebook.experiments._section6.prose import dataset_label, run_scale, training_line
from vaebook.experiments._section6.rows import (check_models, display, group, models_for, order, paper_extra,
                                                paper_row_key, registry_name, row_info, unit_id)
from vaebook.experiments._section6.verdict import (MLE_ROWS, TREND_MAX_RATIO, finish_table, judge, recount,
                                                   reference_row)

__all__ = ["ANY", "recount", "fid_bias", "fid_floors", "PRESETS", "DATASETS", "SIZE_PARAMS", "FID_PARAMS",
           "experiment_presets", "per_dataset", "job", "load", "unit_id", "registry_name", "paper_row_key",
           "paper_extra", "display", "group", "row_info", "check_models", "models_for", "units", "failed_rows",
           "untrained_reason", "fid_comparable", "fid_note", "data_note", "reference", "real_floor", "fid_batch",
           "reference_row", "judge", "finish_table", "order", "epoch_seconds", "Section6Experiment", "EvalSetup",
           "PAPER_TRAIN_IMAGES", "TRAIN_GFLOP", "gpu_notice", "is_ae_type", "is_vae", "cells", "both", "dataset_label",
           "run_scale", "training_line", "PAPER_FID_SAMPLES", "PAPER_FID_DIMS", "PAPER_IWAE_K", "FAIR_TRAINABLE",
           "MLE_ROWS", "TREND_MAX_RATIO", "INCEPTION_GFLOP", "GPU_TFLOPS", "CPU_TFLOPS"]
