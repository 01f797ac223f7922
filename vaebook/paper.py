"""The paper's numbers (Takida et al. 2022), as printed, for comparison with our results.

The CSVs in ``vaebook/paper_data/`` are copies of the project's transcription of the paper's
tables (see ``paper_data/SOURCE.md``). :func:`paper_table` returns them as DataFrames: numeric
columns as floats (``NaN`` where the paper prints "-"), or, with ``as_printed=True``, every cell as
the printed string (keeps "0.10", "9.56e-2" for display).
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

#: name -> (file, the paper's caption in short)
TABLES: dict[str, tuple[str, str]] = {
    "table1": ("table1_sigma_x_sweep.csv", "Table 1: σx² sweep (Section 4.2, MNIST, d_z = 8)"),
    "table3": ("table3_noise_variance.csv", "Table 3: estimated decoder variances on noisy MNIST (Section 5.3)"),
    "table4": ("table4_generation.csv", "Table 4: reconstruction MSE and generation FID (MNIST, CelebA)"),
    "table5": ("table5_interpolation.csv", "Table 5: FID of interpolations (MNIST, CelebA)"),
    "table6": ("table6_celebahq.csv", "Table 6: CelebA-HQ 128×128"),
    "table7": ("table7_nll.csv", "Table 7: NLL upper bounds (nats)"),
    "tableE8": ("tableE8_sigma_z_sweep.csv", "Table E.8: σz² sweep with σx² by MLE (Appendix E, MNIST)"),
}

#: Units/normalisation facts that comparisons need (see shared/paper/tables/README.md).
D_Z_SECTION4 = 8
#: The clean-MNIST decoder variance the caption of Table 3 quotes.
CLEAN_MNIST_VARIANCE = 0.007
#: Eq. (D.1) with a batch of N can not exceed ln N; the paper's batch is 10,000.
MI_EVAL_BATCH = 10_000


def _path(name: str):
    if name not in TABLES:
        raise KeyError(f"unknown paper table {name!r}; choose one of {sorted(TABLES)}")
    return resources.files("vaebook.paper_data").joinpath(TABLES[name][0])


def paper_table(name: str, as_printed: bool = False) -> pd.DataFrame:
    """The paper's table ``name`` (``table1``, ``table3``, ``table4``, ``table5``, ``table6``, ``table7``,
    ``tableE8``), one row per printed row, columns as in the CSV (described in tables/README.md)."""
    with resources.as_file(_path(name)) as p:
        if as_printed:
            return pd.read_csv(p, dtype=str, keep_default_na=False)
        return pd.read_csv(p)


def caption(name: str) -> str:
    """A one-line description of the table (for headings)."""
    _path(name)
    return TABLES[name][1]


__all__ = ["TABLES", "paper_table", "caption", "D_Z_SECTION4", "CLEAN_MNIST_VARIANCE", "MI_EVAL_BATCH"]
