"""vaebook.paper: the paper's tables load with their rows/columns, equal the shared transcription,
and satisfy the relations the transcription notes state (so a garbled copy would fail)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vaebook.paper import TABLES, paper_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "paper" / "tables"

SHAPES = {"table1": (11, 13), "table3": (8, 12), "table4": (15, 12), "table5": (15, 6), "table6": (10, 8),
          "table7": (15, 5), "tableE8": (21, 7)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shapes_and_first_columns(name):
    t = paper_table(name)
    assert t.shape == SHAPES[name]
    first = {"table1": "log10_sigma_x2", "table3": "noise_pattern", "table4": "group", "table5": "group",
             "table6": "group", "table7": "dataset", "tableE8": "log10_sigma_z2"}[name]
    assert t.columns[0] == first


@pytest.mark.parametrize("name", sorted(TABLES))
def test_equal_to_shared_csv(name):
    src = SHARED / TABLES[name][0]
    if not src.is_file():
        pytest.skip(f"{src} absent")
    pd.testing.assert_frame_equal(paper_table(name), pd.read_csv(src))
    printed = paper_table(name, as_printed=True)
    assert printed.equals(pd.read_csv(src, dtype=str, keep_default_na=False))


def test_sweep_grids():
    assert np.allclose(paper_table("table1")["log10_sigma_x2"], -0.1 * np.arange(11))
    assert np.allclose(paper_table("tableE8")["log10_sigma_z2"], 1.0 - 0.1 * np.arange(21))
    t3 = paper_table("table3")
    assert sorted(set(t3["s_x2"])) == [0.01, 0.1]
    assert list(dict.fromkeys(t3["noise_pattern"])) == ["uniform", "spatial", "conditional", "spatial-conditional"]


def test_printed_strings_kept():
    t1 = paper_table("table1", as_printed=True)
    assert t1.loc[1, "sigma_z2"] == "9.56e-2" and t1.loc[0, "kl"] == "0.00"
    t3 = paper_table("table3", as_printed=True)
    assert t3.loc[1, "isoI_SU+SL+BU+BL"] == "0.10"


def test_gap_els_relation_with_dz_normalisation():
    """Table 1 / E.8 stochastic rows: gap(1e-3) ≈ 2·d_z·1e-3·ELS with d_z = 8 (ratio 0.98–1.02)."""
    for name in ("table1", "tableE8"):
        t = paper_table(name)
        ratio = t["gap_1e-3"] / (2 * 8 * 1e-3 * t["els"])
        assert ratio.between(0.98, 1.02).all(), (name, ratio.round(3).tolist())


def test_collapsed_kl_rows():
    e8 = paper_table("tableE8")
    kl = float(e8.loc[e8["log10_sigma_z2"] == 1.0, "kl"].iloc[0])
    assert kl == pytest.approx(4 * (10 - math.log(10) - 1), abs=0.01)
    t1 = paper_table("table1")
    assert float(t1.loc[0, "kl"]) == 0.0 and float(t1.loc[0, "sigma_z2"]) == 1.0


def test_empty_cells_are_nan_and_unknown_name():
    t4 = paper_table("table4")
    ae = t4[t4["model"] == "AE"].iloc[0]
    assert math.isnan(ae["mnist_fid_prior"]) and not math.isnan(ae["mnist_mse"])
    with pytest.raises(KeyError, match="table2"):
        paper_table("table2")
