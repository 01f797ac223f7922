"""What a Section-6 page's claims read (the status page): the row families and the cells of a comparison
table."""
from __future__ import annotations

import pandas as pd


def is_ae_type(row: str) -> bool:
    """AE, WAE and the RAE variants (the autoencoder-type baselines of Tables 4-6)."""
    return row == "ae" or row.startswith(("wae-", "rae"))


def is_vae(row: str) -> bool:
    """The VAE rows: the baselines with a likelihood (σx² = 1, Bernoulli, MoL), trainable Σx and MLE Σx."""
    return row.startswith(("vae-", "trainable-", "mle-"))


def cells(df: pd.DataFrame, dataset: str, metric: str, col: str = "ours") -> dict:
    """``{row: value}`` of one (dataset, metric) column of a comparison table (missing values left out)."""
    if df is None or df.empty:
        return {}
    d = df[(df["dataset"] == dataset) & (df["metric"] == metric)]
    return {r: float(v) for r, v in zip(d["row"], d[col]) if not pd.isna(v)}


def both(df: pd.DataFrame, dataset: str, metric: str) -> tuple:
    """(ours, paper) ``{row: value}`` of one column over the rows where both have a value."""
    o, p = cells(df, dataset, metric, "ours"), cells(df, dataset, metric, "paper")
    keep = [r for r in o if r in p]
    return {r: o[r] for r in keep}, {r: p[r] for r in keep}


__all__ = ["is_ae_type", "is_vae", "cells", "both"]
