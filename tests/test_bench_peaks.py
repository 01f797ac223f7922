"""``benchmarks/peaks.py --quick``: every stage runs at tiny sizes and the CSV is well-formed (a code check, not a
measurement: the numbers of a quick run mean nothing)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def _peaks():
    spec = importlib.util.spec_from_file_location("peaks", REPO / "benchmarks" / "peaks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_run_writes_every_row(tmp_path):
    peaks = _peaks()
    assert peaks.main(["--quick", "--device", "cpu", "--repeats", "1", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "cpu" / "peaks.csv")
    assert list(df.columns) == peaks.COLUMNS
    prov = json.loads((tmp_path / "cpu" / "peaks_provenance.json").read_text())
    assert not [s for s in prov["skipped"] if s["why"].startswith("failed")], prov["skipped"]
    assert set(prov["bf16_is_fast"]) == {"value", "reason"}
    for dt in ("fp32", "bf16"):
        assert {"matmul", "conv3x3"} <= set(df[(df["kind"] == "peak") & (df["dtype"] == dt)]["name"])
        w = df[(df["kind"] == "workload") & (df["dtype"] == dt)]
        assert any(w["name"].str.startswith("train step")) and any(w["name"].str.startswith("IWAE"))
        assert any(w["name"].str.startswith("ELS")) and any(w["name"].str.startswith("FID"))
        best = df[(df["kind"] == "peak") & (df["dtype"] == dt)]["tflops"].max()
        assert (df.loc[df["dtype"] == dt, "peak_tflops"] == best).all()  # the peak of the row's own dtype
    assert len(df[df["name"].str.startswith("FID")]) == 3  # fp32 NCHW, fp32 channels-last, bf16 + channels-last
    w = df[df["kind"] == "workload"]
    assert all(math.isclose(f, t / p, rel_tol=1e-4) for f, t, p in zip(w["fraction_of_peak"], w["tflops"],
                                                                       w["peak_tflops"]))
    assert (w["images_per_s"] > 0).all() and (w["gflop_per_call"] > 0).all()
