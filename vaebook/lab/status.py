"""The status page's table: one row per comparison table of each experiment's largest-scale results."""
from __future__ import annotations

import pandas as pd

from vaebook.lab.compare import verdict_counts


def status_table(results_dir) -> pd.DataFrame:
    """Experiment, table, preset, provenance, cells compared (paper cells we did not run are counted apart, as
    ``not run``) and verdict counts, and a note (smoke = not a result), in book order (``_toc.yml``)."""
    from vaebook.lab.page import experiments
    from vaebook.lab.run_all import notebooks

    exps = experiments()
    rows = []
    for name in [n for n in notebooks() if n in exps]:
        res = exps[name].find(results_dir)
        if res is None:
            rows.append({"notebook": name, "table": "–", "preset": "none", "provenance": "no results yet", "cells": 0,
                         **verdict_counts(None), "note": "run the page in compute mode"})
            continue
        tabs = {k: t for k, t in res.tables.items() if k.startswith("table") and "verdict" in t.columns}
        note = "SMOKE TEST - not a result" if res.is_smoke else ("same at every preset" if res.preset_independent
                                                                 else "")
        if not tabs:
            rows.append({"notebook": name, "table": "–", "preset": res.preset, "provenance": res.label, "cells": 0,
                         **verdict_counts(None), "note": note or "no comparison table"})
        for tname, t in tabs.items():
            c = verdict_counts(t)
            rows.append({"notebook": name, "table": tname, "preset": res.preset, "provenance": res.label,
                         "cells": len(t) - c["not run"], **c, "note": note})
    return pd.DataFrame(rows)


__all__ = ["status_table"]
