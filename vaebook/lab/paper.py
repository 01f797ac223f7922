"""The paper's tables as long rows: ``row, dataset, metric, paper, printed`` (one printed cell each)."""
from __future__ import annotations

import math
from typing import Callable, Mapping, Optional

import pandas as pd


def long_rows(table: str, row_key: Callable[[pd.Series], Optional[str]], columns: Mapping[str, tuple],
              extra: Optional[Callable[[pd.Series], dict]] = None) -> pd.DataFrame:
    """Melt the paper's ``table`` (:func:`vaebook.paper.paper_table`): ``row_key(paper_row)`` gives our key
    (None skips the row); ``columns`` maps a paper column to ``(dataset, metric)``; ``extra(paper_row)`` adds
    display columns. Cells the paper prints as "-" are left out."""
    from vaebook.paper import paper_table

    num, printed = paper_table(table), paper_table(table, as_printed=True)
    out = []
    for i, r in num.iterrows():
        key = row_key(r)
        if key is None:
            continue
        for col, (dataset, metric) in columns.items():
            if col not in num.columns:
                raise KeyError(f"paper table {table!r} has no column {col!r}; it has {list(num.columns)}")
            v = r[col]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            out.append({"row": key, "dataset": dataset, "metric": metric, "paper": float(v),
                        "printed": str(printed.at[i, col]), **(extra(r) if extra else {})})
    return pd.DataFrame(out, columns=None if out else ["row", "dataset", "metric", "paper", "printed"])


__all__ = ["long_rows"]
